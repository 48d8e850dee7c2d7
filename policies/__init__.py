"""The agent-platform CrossGuard policy pack.

Rules are pure functions over `ResourceView`s; `__main__` adapts them to
`pulumi_policy` for the engine, and `harness` runs them over a stack under mocks.
"""
