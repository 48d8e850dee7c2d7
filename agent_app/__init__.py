"""Reference agentic service deployed by the agent-platform stack."""
