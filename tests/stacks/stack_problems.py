"""The committed prod stack file with some sections replaced, and the config problems
that reports: shared by the config tests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.config import ConfigError, load_stack_config
from stacks.simulate import stack_file_config


def prod_problems(**sections: Any) -> list[str]:
    """Each keyword is a section of prod's stack file (camelCase), replaced whole."""
    raw, secret_keys = stack_file_config("prod")
    for key, value in sections.items():
        raw[f"agent-platform:{key}"] = json.dumps(value)
    with pytest.raises(ConfigError) as caught:
        load_stack_config(raw, secret_keys)
    return caught.value.problems
