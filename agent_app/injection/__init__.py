"""Prompt-injection screening of submitted tasks: the text in the forms an attack hides in
(`normalise`), the built-in multilingual rules (`rules`), and the detector a deployment
chooses, rules alone or with a classifier (`detector`)."""
