"""SecAggSettings: the [secagg] table, its errors, and the defaults of a round's config."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from protocols.secagg import SecAggSettings, effective_degree
from simkit.rng import SeedTree
from simkit.secagg import NeighbourGraph, SecAggServer, default_degree


def test_mode_off_is_none_and_is_the_default() -> None:
    assert SecAggSettings.from_table({}, "x.toml") is None
    assert SecAggSettings.from_table({"mode": "off"}, "x.toml") is None


def test_off_accepts_the_rest_of_a_secagg_plus_table() -> None:
    table = {"mode": "off", "neighbours": 8, "threshold": 0.6, "clip": 2.0, "bits": 24}
    assert SecAggSettings.from_table(table, "x.toml") is None


def test_a_dumped_table_with_nones_gives_the_defaults() -> None:
    table = {"mode": "secagg", "threshold": None, "clip": None, "bits": None, "neighbours": None}
    assert SecAggSettings.from_table(table, "x.toml") == SecAggSettings()


def test_values_are_read_and_normalized() -> None:
    table = {"mode": "secagg+", "threshold": 0.6, "clip": 2, "bits": 24, "neighbours": 6}
    settings = SecAggSettings.from_table(table, "x.toml")
    assert settings == SecAggSettings("secagg+", 0.6, 2.0, 24, 6)
    assert settings is not None
    assert isinstance(settings.clip, float)
    more = SecAggSettings.from_table(
        {"mode": "secagg", "prg": "aes-ctr", "stage_timeout": 5}, "x.toml"
    )
    assert more is not None
    assert more.prg == "aes-ctr"
    assert more.stage_timeout == 5.0


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"mode": "on"}, "secagg.mode: must be 'off', 'secagg' or 'secagg+', got 'on'"),
        ({"mode": "secagg", "treshold": 3}, "secagg.treshold: unknown key"),
        ({"mode": "secagg", "threshold": 1}, "secagg.threshold: must be a count >= 2"),
        ({"mode": "secagg", "threshold": 1.5}, "secagg.threshold: must be a count >= 2 or a"),
        ({"mode": "secagg", "threshold": 0.0}, "secagg.threshold"),
        ({"mode": "secagg", "threshold": True}, "secagg.threshold"),
        ({"mode": "secagg", "clip": -1.0}, "secagg.clip: must be a finite number > 0"),
        ({"mode": "secagg", "clip": float("inf")}, "secagg.clip"),
        ({"mode": "secagg", "bits": 63}, "secagg.bits: must be an integer in [2, 62], got 63"),
        ({"mode": "secagg", "bits": 16.0}, "secagg.bits"),
        ({"mode": "secagg+", "neighbours": 0}, "secagg.neighbours: must be an integer >= 1"),
        ({"mode": "secagg", "neighbours": 4}, "secagg.neighbours: only used with mode = 'secagg+'"),
        ({"mode": "secagg", "prg": "mt19937"}, "secagg.prg: must be 'philox' or 'pcg64'"),
        ({"mode": "secagg", "stage_timeout": 0}, "secagg.stage_timeout: must be a finite number"),
        ({"mode": "off", "bits": 1}, "secagg.bits"),
    ],
)
def test_errors_name_the_source_and_key(table: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=r"^x\.toml: secagg\.") as info:
        SecAggSettings.from_table(table, "x.toml")
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ValueError, match=r"SecAggSettings\.mode"):
        SecAggSettings(mode="off")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"SecAggSettings\.bits"):
        SecAggSettings(bits=70)


@pytest.mark.parametrize(("n", "t"), [(2, 2), (3, 2), (4, 3), (9, 5), (10, 6), (100, 51)])
def test_default_threshold_is_a_strict_majority_of_the_cohort(n: int, t: int) -> None:
    assert SecAggSettings().config(n, 10, 1).threshold == t


def test_fractions_round_up_and_stay_in_range() -> None:
    assert SecAggSettings(threshold=2 / 3).threshold_for(9) == 6
    assert SecAggSettings(threshold=0.5).threshold_for(9) == 5
    assert SecAggSettings(threshold=1.0).threshold_for(9) == 9
    assert SecAggSettings(threshold=0.01, allow_weak_threshold=True).threshold_for(9) == 2


@pytest.mark.parametrize(
    ("settings", "n", "least"),
    [
        (SecAggSettings(threshold=4), 10, 6),
        (SecAggSettings(threshold=5), 10, 6),
        (SecAggSettings(threshold=0.5), 10, 6),
        (SecAggSettings(mode="secagg+", neighbours=4, threshold=2), 30, 3),
        (SecAggSettings(mode="secagg+", neighbours=8, threshold=0.4), 30, 5),
    ],
)
def test_a_threshold_below_a_strict_majority_is_refused(
    settings: SecAggSettings, n: int, least: int
) -> None:
    with pytest.raises(ValueError, match=rf"^secagg\.threshold: .*needs >= {least}\)") as info:
        settings.check_cohort(n)
    assert "allow_weak_threshold" in str(info.value)
    assert "\n" not in str(info.value)
    allowed = dataclasses.replace(settings, allow_weak_threshold=True)
    allowed.check_cohort(n)
    assert allowed.threshold_for(n) < least


def test_allow_weak_threshold_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match=r"secagg\.allow_weak_threshold: must be true or false"):
        SecAggSettings.from_table({"mode": "secagg", "allow_weak_threshold": "yes"}, "x.toml")


def test_a_count_above_the_neighbourhood_is_refused() -> None:
    assert SecAggSettings(threshold=5).threshold_for(5) == 5
    with pytest.raises(ValueError, match="threshold 6 exceeds the cohort of 5 clients"):
        SecAggSettings(threshold=6).config(5, 10, 1)
    plus = SecAggSettings(mode="secagg+", neighbours=4, threshold=6)
    with pytest.raises(ValueError, match=r"neighbourhood \(degree \+ 1\) of 5 clients"):
        plus.config(20, 10, 1)
    with pytest.raises(ValueError, match="at least 2 clients"):
        SecAggSettings().config(1, 10, 1)


def test_secagg_plus_thresholds_count_in_the_neighbourhood() -> None:
    plus = SecAggSettings(mode="secagg+", neighbours=6)
    config = plus.config(30, 10, 4)
    assert (config.mode, config.degree, config.round_id, config.threshold) == ("secagg+", 6, 4, 4)
    # the default degree on a large cohort: Google's table, majority of k + 1
    big = SecAggSettings(mode="secagg+").config(1000, 10, 1)
    assert big.degree is None
    assert big.threshold == default_degree(1000) // 2 + 1


@pytest.mark.parametrize("n", [2, 3, 5, 8, 13, 40, 200])
@pytest.mark.parametrize("k", [None, 1, 2, 3, 4, 7, 12, 500])
def test_effective_degree_is_the_graph_the_core_builds(n: int, k: int | None) -> None:
    graph = NeighbourGraph.regular([f"c{i:03d}" for i in range(n)], k, SeedTree(1))
    assert effective_degree(n, "secagg+", k) == graph.degree
    settings = SecAggSettings(mode="secagg+", neighbours=k)
    names = [f"c{i:03d}" for i in range(n)]
    server = SecAggServer(settings.config(n, 4, 1), names, SeedTree(1))  # the threshold fits
    assert server.graph.degree + 1 == settings.neighbourhood(n)


def test_quantizer_leaves_headroom_for_the_cohort() -> None:
    qz = SecAggSettings(clip=1.0, bits=32).quantizer(100)
    assert qz.n == 100
    assert qz.step == 2.0**-24
    with pytest.raises(ValueError, match="headroom"):
        SecAggSettings(bits=4).quantizer(100)
