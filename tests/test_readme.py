"""The README's Python example runs as printed."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import simkit

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_python_examples_run() -> None:
    blocks = python_blocks()
    assert blocks, "the README has no Python example"
    for i, code in enumerate(blocks):
        module = types.ModuleType(f"readme_example_{i}")
        sys.modules[module.__name__] = module  # dataclasses look their module up
        try:
            exec(compile(code, str(README), "exec"), module.__dict__)
        finally:
            del sys.modules[module.__name__]


def test_public_names_resolve() -> None:
    for name in simkit.__all__:
        assert getattr(simkit, name) is not None
    assert "Simulation" in dir(simkit)
