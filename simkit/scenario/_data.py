"""The data of a scenario: client shards and the server's test set.

Drawn from the ``("data", ...)`` paths of the seed tree (see
:mod:`simkit.scenario._build`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from simkit.rng import SeedTree
from simkit.scenario._load import Scenario
from simkit.scenario._schema import (
    NpzData,
    PartitionConfig,
    SyntheticData,
    UserData,
)
from simkit.scenario._user import user_data
from simkit.training import (
    DataCache,
    Dataset,
    dirichlet,
    iid,
    load_digits,
    load_npz,
    pathological,
    quantity_skew,
    synthetic,
)

__all__ = ["Shard", "client_data"]

Shard = tuple[Dataset, Dataset | None]
Ids = npt.NDArray[Any]
"""Each row's client id (``partition.kind = "natural"``)."""


def client_data(
    scenario: Scenario, names: list[str], seeds: SeedTree
) -> tuple[list[Shard], Dataset | None, int, int]:
    """Client shards, the server's test set, the input dimension and class count.

    Shards are index views of a pooled data set (left on disk when it is
    large), or lazy synthetic data drawn per client when used (DataCache).
    """
    spec = scenario.config.data
    if isinstance(spec, SyntheticData):
        trains, test = _synthetic(spec, names, seeds, DataCache())
        n_classes, n_features = spec.classes, spec.dim
    else:
        pooled = _load_pooled(scenario, seeds)
        test = None
        ids = _natural_ids(scenario, len(pooled))
        if spec.test_fraction > 0:
            pooled, test = pooled.split(1.0 - spec.test_fraction, seeds.numpy("data", "test"))
            ids = _split_ids(ids, spec.test_fraction, seeds)
        trains = pooled.partition(
            _partition(spec.partition, pooled, len(names), seeds, scenario, ids)
        )
        n_classes = int(pooled.y.max()) + 1 if pooled.y.ndim == 1 and len(pooled) else 1
        n_features = int(pooled.rows(0, 1)[0].shape[1]) if pooled.rows(0, 1)[0].ndim == 2 else 1
    shards = []
    for name, train in zip(names, trains, strict=True):
        if len(train) == 0:
            raise scenario.error("data", f"client {name} gets no samples ({len(names)} clients)")
        shards.append(_valid_split(train, spec.valid_fraction, seeds.numpy("data", "valid", name)))
    return shards, test, n_features, max(n_classes, 2)


def _synthetic(
    spec: SyntheticData, names: list[str], seeds: SeedTree, cache: DataCache
) -> tuple[list[Dataset], Dataset | None]:
    data = synthetic(
        spec.alpha,
        spec.beta,
        len(names),
        seeds.child("data"),
        n_features=spec.dim,
        n_classes=spec.classes,
        samples_per_client=spec.samples,
        iid=spec.iid,
        cache=cache,
    )
    if spec.test_fraction == 0:
        return data, None
    trains, tests = [], []
    for name, shard in zip(names, data, strict=True):
        train, held = _split(shard, 1.0 - spec.test_fraction, seeds.numpy("data", "test", name))
        trains.append(train)
        if held is not None:
            tests.append(held.epoch(shuffle=False))  # one draw of the client's data for both
    if not tests:  # every shard too small to hold a test sample out
        return trains, None
    return trains, Dataset(
        np.concatenate([x for x, _ in tests]), np.concatenate([y for _, y in tests])
    )


def _split(data: Dataset, keep: float, rng: np.random.Generator) -> tuple[Dataset, Dataset | None]:
    """``(keep share, rest)``; the rest is ``None`` when too small to split."""
    if len(data) < 2 or round(keep * len(data)) in (0, len(data)):
        return data, None
    return data.split(keep, rng)


def _valid_split(train: Dataset, fraction: float, rng: np.random.Generator) -> Shard:
    return (train, None) if fraction == 0 else _split(train, 1.0 - fraction, rng)


def _load_pooled(scenario: Scenario, seeds: SeedTree) -> Dataset:
    spec = scenario.config.data
    if isinstance(spec, NpzData):
        path = scenario.base_dir / spec.path
        try:
            data = load_npz(path, spec.x_key, spec.y_key)
        except FileNotFoundError:
            raise scenario.error("data.path", f"no such file {str(path)!r}") from None
        except (KeyError, ValueError, OSError) as exc:
            # numpy reads what is neither .npz nor .npy as a pickle, and says so
            problem = "not a .npz archive" if "pickle" in str(exc) else str(exc).strip("\"'")
            raise scenario.error("data.path", problem) from None
        return _checked(scenario, data)
    if isinstance(spec, UserData):
        loaded = user_data(scenario, spec, seeds.child("data", "user"))
        return _checked(scenario, loaded, "data.source")
    try:
        return load_digits()
    except ImportError as exc:
        raise scenario.error("data.source", str(exc)) from None


def _checked(scenario: Scenario, data: Dataset, where: str = "data.path") -> Dataset:
    """Refuse arrays no model can train on: not numbers, NaN, negative labels, no rows."""
    if len(data) == 0:
        raise scenario.error(where, "the arrays have no rows")
    for key, array in (("x", data.rows(0, 1)[0]), ("y", data.y)):
        if array.dtype.kind not in "biuf":
            raise scenario.error(where, f"{key} must hold numbers, got dtype {array.dtype}")
        # x in blocks: a file left on disk may be larger than memory
        blocks = data.chunks() if key == "x" else [(array, array)]
        if array.dtype.kind == "f" and not all(np.isfinite(b).all() for b, _ in blocks):
            raise scenario.error(where, f"{key} holds NaN or infinite values")
    if data.y.dtype.kind in "iu" and data.y.min() < 0:
        raise scenario.error(where, f"labels must be >= 0, got {int(data.y.min())}")
    return data


def _natural_ids(scenario: Scenario, n_rows: int) -> Ids | None:
    """Each pooled row's client id, for ``partition.kind = "natural"`` (else ``None``)."""
    spec = scenario.config.data
    if isinstance(spec, SyntheticData) or spec.partition.kind != "natural":
        return None
    column = spec.partition.column
    if not isinstance(spec, NpzData):
        raise scenario.error("data.partition", "kind = 'natural' needs an npz source")
    try:
        with np.load(scenario.base_dir / spec.path, allow_pickle=False) as archive:
            have = sorted(archive.files)
            ids = np.asarray(archive[column]) if column in have else None
    except (OSError, ValueError) as exc:
        raise scenario.error("data.path", str(exc)) from None
    if ids is None:
        raise scenario.error("data.partition.column", f"no array {column!r} (has {have})")
    if ids.shape != (n_rows,) or ids.dtype.kind not in "iuU":
        raise scenario.error(
            "data.partition.column",
            f"{column!r} must hold one integer or string id per row ({n_rows}), "
            f"got {ids.dtype} {ids.shape}",
        )
    return ids


def _split_ids(ids: Ids | None, test_fraction: float, seeds: SeedTree) -> Ids | None:
    """The ids of the rows ``Dataset.split`` keeps (the same seeded permutation)."""
    if ids is None:
        return None
    rows = np.arange(len(ids))
    kept, _ = Dataset(rows, rows).split(1.0 - test_fraction, seeds.numpy("data", "test"))
    return ids[kept.rows(0, len(kept))[1]]


def _natural(ids: Ids, n: int, scenario: Scenario) -> list[Ids]:
    """Client ``i`` holds the rows of the ``i``-th id in sorted order."""
    found = np.unique(ids)
    if len(found) < n:
        raise scenario.error(
            "clients.count", f"{n} clients, but the natural partition has {len(found)} ids"
        )
    return [np.flatnonzero(ids == found[i]) for i in range(n)]


def _partition(
    spec: PartitionConfig,
    data: Dataset,
    n: int,
    seeds: SeedTree,
    scenario: Scenario,
    ids: Ids | None = None,
) -> Sequence[Any]:
    if ids is not None:
        return _natural(ids, n, scenario)
    rng = seeds.numpy("data", "partition")
    try:
        if spec.kind == "iid":
            return iid(len(data), n, rng)
        if spec.kind == "dirichlet":
            return dirichlet(data.y, n, spec.alpha, rng, min_size=spec.min_size)
        if spec.kind == "pathological":
            return pathological(data.y, n, spec.classes_per_client, rng)
        return quantity_skew(len(data), n, rng, alpha=spec.alpha, min_size=spec.min_size)
    except ValueError as exc:
        raise scenario.error("data.partition", str(exc)) from None
