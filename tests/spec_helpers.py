"""Checking how a study file is refused: one line, naming the file first."""

from __future__ import annotations

import pytest
import tomllib

from scalelab.errors import InputError
from scalelab.spec import parse_spec


def spec_refusal(text: str, *, source: str) -> str:
    """The message ``parse_spec`` refuses the TOML ``text`` with, checked to be one line
    that starts with ``source``."""
    with pytest.raises(InputError) as info:
        parse_spec(tomllib.loads(text), source=source)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{source}: "), message
    return message
