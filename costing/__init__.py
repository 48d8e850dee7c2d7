"""The stack's monthly cost: the price table, the pricing of billable parts, and the
model that reads those parts out of resource properties.

The program's cost output prices the parts its components declare (`pricing`); the
pack's budget rule and the cost command price the parts `model` reads from the
resources. One pricing for all three, so this package imports none of theirs: `stacks/`
and `policies/` depend on it, never the reverse.
"""
