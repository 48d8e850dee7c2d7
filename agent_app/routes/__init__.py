"""The HTTP routes, thin: each reads its request and answers with what a service returns."""
