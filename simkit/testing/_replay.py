"""A failing example as one scenario file: everything drawn, faults included.

:func:`scenario_toml` writes a scenario mapping (as :func:`~simkit.testing.scenarios`
draws it, or your own) and a fault schedule as a single TOML scenario file:
the faults become ``[[faults.events]]`` tables, so ``simkit run FILE``
replays the example exactly with no other file or flag. :func:`note_replay`
attaches that file to the failing Hypothesis example (and, given a
directory, saves it there), so the shrunk failure is reported ready to run.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from simkit.faults import FaultSchedule, fault_to_dict
from simkit.testing._record import ReplayRecord, record_lines

__all__ = ["note_replay", "replay_file", "scenario_toml", "toml_document"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")


def scenario_toml(
    scenario: Mapping[str, Any],
    faults: FaultSchedule | None = None,
    *,
    protocol: str | None = None,
    file_name: str = "example.toml",
    record: ReplayRecord | None = None,
) -> str:
    """The scenario and its faults as one TOML scenario file.

    Args:
        scenario: A scenario mapping (every drawn value is in it).
        faults: Faults to append to the scenario's ``faults.events``.
        protocol: Replace ``protocol.name`` (a buggy variant under test is
            best named ``"package.module:OBJECT"``, which ``simkit run`` loads).
        file_name: The name the header's ``simkit run`` line uses.
        record: The failure to reproduce (what failed, the check, the
            failing run's digests): written as ``#:`` comment lines that
            ``simkit replay`` reads and ``simkit run`` ignores.

    Returns:
        A TOML document: a comment with the command that replays it, then the
        scenario. ``None`` values are left out (TOML has no null; a key left
        out takes its default).
    """
    data = _merged(scenario, faults, protocol)
    header = f"# Replays exactly with:\n#   simkit run {file_name}\n"
    if record is not None:
        header += (
            f"# Reproduces the failure (and re-checks it) with:\n#   simkit replay {file_name}\n"
        )
        header += "\n".join(record_lines(record)) + "\n"
    name = str(data.get("protocol", {}).get("name", "fedavg"))
    if protocol is not None and ":" not in name:
        header += (
            f"# (protocol.name {name!r} is the registered plugin: if the failing run used\n"
            "#  another plugin object, name it 'package.module:OBJECT' here to replay it)\n"
        )
    return header + toml_document(data)


def replay_file(
    path: str | os.PathLike[str],
    scenario: Mapping[str, Any],
    faults: FaultSchedule | None = None,
    *,
    protocol: str | None = None,
    record: ReplayRecord | None = None,
) -> Path:
    """Write :func:`scenario_toml` to ``path`` (parents created); return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = scenario_toml(scenario, faults, protocol=protocol, file_name=str(target), record=record)
    target.write_text(text, encoding="utf-8")
    return target


def note_replay(
    scenario: Mapping[str, Any],
    faults: FaultSchedule | None = None,
    *,
    protocol: str | None = None,
    directory: str | os.PathLike[str] | None = None,
    name: str | None = None,
    record: ReplayRecord | None = None,
) -> None:
    """Attach the example's replay file to the failing Hypothesis example.

    Hypothesis prints notes of the final (shrunk) failing example only; with
    ``directory``, that example's file is also saved there, as ``name``
    plus ``.toml`` (default: the running pytest test's name, else the
    scenario's). Call it inside the test, after the run (with a ``record``
    of its failure, which ``simkit replay`` re-checks) or before it.
    """
    from hypothesis import note
    from hypothesis.control import current_build_context

    file_name = f"{name or _test_name() or scenario.get('name') or 'example'}.toml"
    target = Path(directory) / file_name if directory is not None else Path(file_name)
    if directory is not None and current_build_context().is_final:
        replay_file(target, scenario, faults, protocol=protocol, record=record)
        note(f"replay file written: {target}")
    text = scenario_toml(scenario, faults, protocol=protocol, file_name=str(target), record=record)
    note(text)


def _test_name() -> str | None:
    """The running pytest test's name, as a file name (``test_x-case_1``)."""
    current = os.environ.get("PYTEST_CURRENT_TEST")
    if not current:
        return None
    test = current.split("::")[-1].split(" ")[0]
    return _UNSAFE.sub("-", test).strip("-") or None


# ----------------------------------------------------------------------------- TOML


def _merged(
    scenario: Mapping[str, Any], faults: FaultSchedule | None, protocol: str | None
) -> dict[str, Any]:
    data = copy.deepcopy(dict(scenario))
    if protocol is not None:
        data.setdefault("protocol", {})["name"] = protocol
    if faults is not None and len(faults):
        table = data.setdefault("faults", {})
        table["events"] = list(table.get("events", [])) + [fault_to_dict(f) for f in faults]
    return data


def toml_document(data: Mapping[str, Any]) -> str:
    """A mapping of TOML-able values as a TOML document (keys in their order).

    Scalars first, then ``[table]`` sections, then ``[[arrays.of.tables]]``.

    Raises:
        TypeError: A value TOML cannot hold.
    """
    lines: list[str] = []
    _section(lines, [], data)
    return "\n".join(lines).lstrip("\n") + "\n"


def _section(
    lines: list[str], path: list[str], table: Mapping[str, Any], *, inline: bool = False
) -> None:
    """``table``'s keys under ``path``; with ``inline``, sub-tables as inline tables."""
    if inline:
        lines += [f"{_key(k)} = {_value(v)}" for k, v in table.items() if v is not None]
        return
    scalars = [(k, v) for k, v in table.items() if v is not None and not _is_table(v)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    arrays = [(k, v) for k, v in table.items() if _is_table_array(v)]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in scalars]
    for key, sub in tables:
        inner = [*path, key]
        if any(not _is_table(v) and v is not None for v in sub.values()) or not sub:
            lines += ["", f"[{'.'.join(_key(p) for p in inner)}]"]
        _section(lines, inner, sub)
    for key, items in arrays:
        inner = [*path, key]
        for item in items:
            lines += ["", f"[[{'.'.join(_key(p) for p in inner)}]]"]
            _section(lines, inner, item, inline=True)


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping) or _is_table_array(value)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as TOML")
