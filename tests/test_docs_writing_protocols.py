"""docs/writing-protocols.md: every code block runs, in order, and its tests pass.

The Python blocks are one module, ``first_protocol`` (the name the guide's
scenarios use); a TOML block is written to the file its first line names;
each ``simkit`` line of a shell block runs through the CLI, in the same
directory.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from simkit.cli import main

DOC = Path(__file__).parents[1] / "docs" / "writing-protocols.md"
BLOCK = re.compile(r"^```(python|toml|sh)\n(.*?)^```", re.DOTALL | re.MULTILINE)


@pytest.fixture(scope="module")
def guide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[types.ModuleType]:
    here = tmp_path_factory.mktemp("guide")
    module = types.ModuleType("first_protocol")
    module.__file__ = str(DOC)
    sys.modules["first_protocol"] = module
    before = Path.cwd()
    os.chdir(here)
    try:
        for i, (language, text) in enumerate(BLOCK.findall(DOC.read_text(encoding="utf-8"))):
            if language == "python":
                exec(compile(text, f"{DOC}:block{i}", "exec"), module.__dict__)
            elif language == "toml":
                name = text.splitlines()[0].removeprefix("# ").strip()
                (here / name).write_text(text, encoding="utf-8")
            else:
                for line in text.splitlines():
                    if line.startswith("simkit "):
                        assert main(shlex.split(line)[1:]) == 0, line
        module.__dict__["directory"] = here
        yield module
    finally:
        os.chdir(before)
        del sys.modules["first_protocol"]


def test_every_block_runs_and_the_report_is_written(guide: types.ModuleType) -> None:
    assert guide.PLUGIN.name == "first_protocol:PLUGIN"
    assert (guide.directory / "first.toml").is_file()
    assert (guide.directory / "out" / "index.html").is_file()


def test_the_core_test_passes(guide: types.ModuleType) -> None:
    guide.test_the_core_averages_this_rounds_updates_by_samples()


def test_the_property_test_passes(guide: types.ModuleType) -> None:
    guide.test_clients_that_never_crash_take_part_in_every_round()


def test_the_guide_is_linked_from_the_readme() -> None:
    readme = (DOC.parents[1] / "README.md").read_text(encoding="utf-8")
    assert "docs/writing-protocols.md" in readme
