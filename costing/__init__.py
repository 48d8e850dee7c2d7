"""The stack's monthly cost: the model, its price table, and the resource view it reads.

The program's cost output, the pack's budget rule and the cost command all price a stack
with this package, so it imports none of theirs: `stacks/` and `policies/` depend on it,
never the reverse.
"""
