"""Helpers of real-time runs: client command lines and the overrides they carry."""

from __future__ import annotations

import os
import sys

import pytest

from simkit._realtime import ClientLaunch, set_strings
from simkit.scenario import parse_override


def test_mapping_overrides_become_set_strings_that_parse_back() -> None:
    overrides = {
        "rounds": 3,
        "optimizer.client.lr": 0.05,
        "run.fail_fast": True,
        "name": 'say "hi"\n',
        "clients.speeds.values": [1.0, 0.5],
        "data.partition": {"kind": "dirichlet", "alpha": 0.3},
        "run.max_time": float("inf"),
    }
    texts = set_strings(overrides)
    assert len(texts) == len(overrides)
    for text, (key, value) in zip(texts, overrides.items(), strict=True):
        path, parsed = parse_override(text)
        assert ".".join(path) == key
        assert parsed == value
    assert set_strings(["a=1", "b=x"]) == ["a=1", "b=x"]
    assert set_strings(None) == []
    with pytest.raises(TypeError, match="cannot pass None"):
        set_strings({"a": None})


def test_client_command_line_and_environment() -> None:
    launch = ClientLaunch("s.toml", 7, ["rounds=2"], ["c000"], token="t0k")
    argv = launch.argv("c000", "127.0.0.1:5000")
    assert argv[:4] == [sys.executable, "-m", "simkit", "client"]
    assert argv[4:] == [
        "s.toml",
        *("--name", "c000", "--server", "127.0.0.1:5000", "--seed", "7", "--quiet"),
        *("--set", "rounds=2"),
    ]
    assert "t0k" not in argv  # the token travels in the environment, not in `ps`
    env = launch.env()
    assert env["SIMKIT_TOKEN"] == "t0k"
    assert env["PYTHONPATH"].split(os.pathsep) == [p for p in sys.path if p]
