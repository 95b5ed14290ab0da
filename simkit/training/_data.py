"""Data: in-memory datasets with seeded batching, partitioners, built-in sets.

Every random choice takes an explicit ``numpy.random.Generator`` or seed tree
node: nothing here touches numpy's global generator. Partitioners return one
sorted index array per client, so a client's shard does not depend on the
order in which shards are later consumed. Built-in data is never downloaded:
the digits ship inside scikit-learn (the optional extra ``simkit[digits]``),
and Synthetic(alpha, beta) is generated from the seed tree.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from simkit.rng import SeedTree
from simkit.training._dataset import DataCache, Dataset, FileArray, npy_on_disk
from simkit.training._weights import Array

__all__ = [
    "ON_DISK_BYTES",
    "DataCache",
    "Dataset",
    "FileArray",
    "SyntheticClient",
    "dirichlet",
    "evenly_distribute_count_into_bins",
    "iid",
    "load_digits",
    "load_npz",
    "quantity_skew",
    "synthetic",
]


def _check_clients(n_clients: int) -> None:
    if isinstance(n_clients, bool) or not isinstance(n_clients, int) or n_clients < 1:
        raise ValueError(f"n_clients must be a positive int, got {n_clients!r}")


def evenly_distribute_count_into_bins(count: int, n_bins: int) -> list[int]:
    """Split ``count`` into ``n_bins`` integers differing by at most one.

    The larger bins come first: ``evenly_distribute_count_into_bins(7, 3)``
    is ``[3, 2, 2]``.

    Raises:
        ValueError: ``count`` is negative or ``n_bins`` is not positive.
    """
    if count < 0 or n_bins < 1:
        raise ValueError(f"need count >= 0 and n_bins >= 1, got {count}, {n_bins}")
    base, extra = divmod(count, n_bins)
    return [base + 1] * extra + [base] * (n_bins - extra)


def _cut(order: Array, sizes: Sequence[int]) -> list[Array]:
    bounds = np.cumsum([0, *sizes])
    return [np.sort(order[bounds[i] : bounds[i + 1]]) for i in range(len(sizes))]


def iid(n_samples: int, n_clients: int, rng: np.random.Generator) -> list[Array]:
    """A uniform random partition into shards whose sizes differ by at most one.

    Args:
        n_samples: Number of rows to split.
        n_clients: Number of shards.
        rng: Generator for the permutation.

    Returns:
        ``n_clients`` sorted index arrays covering ``range(n_samples)`` once.
    """
    _check_clients(n_clients)
    sizes = evenly_distribute_count_into_bins(n_samples, n_clients)
    return _cut(rng.permutation(n_samples), sizes)


def quantity_skew(
    n_samples: int,
    n_clients: int,
    rng: np.random.Generator,
    alpha: float = 1.0,
    min_size: int = 1,
) -> list[Array]:
    """A random partition with Dirichlet(``alpha``)-distributed shard sizes.

    Smaller ``alpha`` gives more unequal sizes. Each shard gets at least
    ``min_size`` rows; the rest is spread with proportions drawn from a
    symmetric Dirichlet and rounded by largest remainders (sizes sum exactly
    to ``n_samples``).

    Raises:
        ValueError: ``n_samples < n_clients * min_size`` or ``alpha <= 0``.
    """
    _check_clients(n_clients)
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    spare = n_samples - n_clients * min_size
    if spare < 0:
        raise ValueError(f"{n_samples} samples cannot give {n_clients} clients {min_size} each")
    props = rng.dirichlet(np.full(n_clients, alpha))
    sizes = [min_size + extra for extra in _largest_remainders(props, spare)]
    return _cut(rng.permutation(n_samples), sizes)


def _largest_remainders(props: Array, total: int) -> list[int]:
    """Integers proportional to ``props`` summing to ``total`` (ties: lower index)."""
    raw = props * total
    base = np.floor(raw).astype(np.int64)
    missing = total - int(base.sum())
    order = np.argsort(-(raw - base), kind="stable")
    base[order[:missing]] += 1
    return [int(v) for v in base]


def dirichlet(
    labels: npt.ArrayLike,
    n_clients: int,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 0,
    max_tries: int = 100,
) -> list[Array]:
    """Label-skewed partition: each class is split with Dirichlet(``alpha``) proportions.

    The common non-IID benchmark partition (Hsu et al., 2019): for each class
    (in sorted order) draw client proportions from a symmetric Dirichlet and
    cut that class's shuffled rows accordingly. Small ``alpha`` means each
    client sees few classes; large ``alpha`` tends to IID.

    Args:
        labels: Class label of every row.
        n_clients: Number of shards.
        alpha: Concentration (> 0).
        rng: Generator for proportions and shuffles.
        min_size: Redraw (up to ``max_tries`` times) until every shard has at
            least this many rows.
        max_tries: Bound on redraws.

    Raises:
        ValueError: Bad arguments, or ``min_size`` not reached in ``max_tries``.
    """
    _check_clients(n_clients)
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    y = np.asarray(labels)
    classes = np.unique(y)
    for _ in range(max_tries):
        shards: list[list[Array]] = [[] for _ in range(n_clients)]
        for cls in classes:
            rows = rng.permutation(np.flatnonzero(y == cls))
            sizes = _largest_remainders(rng.dirichlet(np.full(n_clients, alpha)), rows.size)
            for shard, part in zip(shards, _cut(rows, sizes), strict=True):
                shard.append(part)
        parts = [np.sort(np.concatenate(s)) for s in shards]
        if min(p.size for p in parts) >= min_size:
            return parts
    raise ValueError(
        f"no Dirichlet(alpha={alpha}) partition with >= {min_size} rows per client "
        f"in {max_tries} tries; lower min_size or raise alpha"
    )


# ------------------------------------------------------------- built-in data


def _softmax_argmax(x: Array, weight: Array, bias: Array) -> Array:
    # argmax of softmax(z) is argmax of z: the softmax is monotone.
    labels: Array = np.argmax(x @ weight + bias, axis=1).astype(np.int64)
    return labels


@dataclass(frozen=True, slots=True)
class SyntheticClient:
    """Client ``k``'s Synthetic(alpha, beta) data, drawn when called (a picklable loader).

    Reads only the streams ``seed.numpy("synthetic", k)`` and, when ``iid``,
    ``seed.numpy("synthetic", "global")``: every call gives the same values.
    See :func:`synthetic` for the arguments; ``samples`` is the client's row
    count (``None``: the paper's power law).
    """

    alpha: float
    beta: float
    k: int
    seed: SeedTree
    n_features: int = 60
    n_classes: int = 10
    samples: int | None = None
    iid: bool = False
    dtype: Any = np.float64

    def size(self) -> int:
        """The number of rows (drawn without generating them when not fixed)."""
        if self.samples is not None:
            return self.samples
        rng = self.seed.numpy("synthetic", self.k)
        rng.normal(0.0, self.alpha)
        rng.normal(0.0, self.beta)
        return _client_size(None, self.k, rng)

    def __call__(self) -> Dataset:
        d, c = self.n_features, self.n_classes
        rng = self.seed.numpy("synthetic", self.k)
        u_k, b_k = rng.normal(0.0, self.alpha), rng.normal(0.0, self.beta)
        n_k = _client_size(self.samples, self.k, rng)
        if self.iid:
            weight, bias = _global_model(self.seed.seed, self.seed.path, d, c)
            mean_x = np.full(d, b_k)
        else:
            weight = rng.normal(u_k, 1.0, (d, c))
            bias = rng.normal(u_k, 1.0, c)
            mean_x = rng.normal(b_k, 1.0, d)
        std_x = np.arange(1, d + 1, dtype=np.float64) ** -0.6  # sqrt(j^-1.2)
        x = mean_x + rng.standard_normal((n_k, d)) * std_x
        return Dataset(x.astype(self.dtype), _softmax_argmax(x, weight, bias))


@functools.lru_cache(maxsize=4)
def _global_model(seed: int, path: tuple[str | int, ...], d: int, c: int) -> tuple[Array, Array]:
    """Synthetic IID's shared model (drawn once per seed-tree node, read-only)."""
    shared = SeedTree(seed, path).numpy("synthetic", "global")
    weight, bias = shared.normal(0.0, 1.0, (d, c)), shared.normal(0.0, 1.0, c)
    weight.flags.writeable = bias.flags.writeable = False
    return weight, bias


def synthetic(
    alpha: float,
    beta: float,
    n_clients: int,
    seed: SeedTree,
    *,
    n_features: int = 60,
    n_classes: int = 10,
    samples_per_client: int | list[int] | None = None,
    iid: bool = False,
    dtype: Any = np.float64,
    cache: DataCache | None = None,
) -> list[Dataset]:
    """Synthetic(alpha, beta) federated data of Li et al. (FedProx, MLSys 2020).

    Client ``k`` draws ``u_k ~ N(0, alpha)`` and ``B_k ~ N(0, beta)`` (normal
    scale parameters, as in the paper's generator); its model is
    ``W_k ~ N(u_k, 1)``, ``b_k ~ N(u_k, 1)``; its inputs ``x ~ N(v_k, S)`` with
    ``v_k ~ N(B_k, 1)`` and ``S`` diagonal, ``S_jj = j^-1.2``; labels are
    ``argmax(softmax(W_k x + b_k))``. ``alpha`` controls how much local models
    differ, ``beta`` how much local inputs differ. With ``iid=True`` every
    client shares one model and ``v_k = B_k`` (the paper's "Synthetic IID"
    with ``alpha = beta = 0``).

    Client ``k`` reads only the stream ``seed.numpy("synthetic", k)`` (and the
    shared model ``seed.numpy("synthetic", "global")`` when ``iid``), so a
    client's data does not depend on ``n_clients``.

    Args:
        alpha: Model heterogeneity (>= 0).
        beta: Input heterogeneity (>= 0).
        n_clients: Number of clients.
        seed: Seed tree node.
        n_features: Input dimension (paper: 60).
        n_classes: Number of classes (paper: 10).
        samples_per_client: A count for all, one count per client, or
            ``None`` for the paper's power law ``int(lognormal(4, 2)) + 50``.
        iid: Generate Synthetic IID instead.
        dtype: Floating dtype of the inputs.
        cache: Return lazy datasets loading into this cache: a client's data
            is drawn when first used, and drawn again (the same values) after
            it was evicted (see :class:`SyntheticClient`).

    Returns:
        One :class:`Dataset` per client (labels int64).
    """
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha and beta must be >= 0, got {alpha}, {beta}")
    if isinstance(samples_per_client, list) and len(samples_per_client) != n_clients:
        raise ValueError(
            f"samples_per_client has {len(samples_per_client)} entries for {n_clients} clients"
        )
    out = []
    for k in range(n_clients):
        spec = samples_per_client
        size = (
            None if spec is None else _checked_size(spec[k] if isinstance(spec, list) else spec, k)
        )
        client = SyntheticClient(alpha, beta, k, seed, n_features, n_classes, size, iid, dtype)
        out.append(client() if cache is None else Dataset.lazy(client.size(), client, cache))
    return out


def _client_size(spec: int | None, k: int, rng: np.random.Generator) -> int:
    if spec is None:
        return int(rng.lognormal(4.0, 2.0)) + 50
    return _checked_size(spec, k)


def _checked_size(size: int, k: int) -> int:
    if size < 1:
        raise ValueError(f"client {k}: samples_per_client must be >= 1, got {size}")
    return int(size)


def load_digits(dtype: Any = np.float64) -> Dataset:
    """The 1,797 8x8 handwritten digits bundled with scikit-learn.

    Read from the installed scikit-learn package (never downloaded). Inputs
    are the 64 pixel intensities scaled to ``[0, 1]``; labels are int64 in
    ``0..9``. Split it with :meth:`Dataset.split` and a seeded generator.

    Raises:
        ImportError: scikit-learn is not installed; install ``simkit[digits]``.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:
        raise ImportError(
            "load_digits needs scikit-learn: install the optional extra "
            "with `pip install 'simkit[digits]'`"
        ) from exc
    bunch = _sk_load_digits()
    x = np.asarray(bunch.data, dtype=dtype) / 16.0
    return Dataset(x, np.asarray(bunch.target, dtype=np.int64))


ON_DISK_BYTES = 256 * 2**20
""":func:`load_npz` leaves ``x`` on disk above this size (unless told otherwise)."""


def load_npz(
    path: str | os.PathLike[str],
    x_key: str = "x",
    y_key: str = "y",
    *,
    on_disk: bool | None = None,
) -> Dataset:
    """A dataset from a ``.npz`` file holding arrays ``x_key`` and ``y_key``.

    The file is read with ``allow_pickle=False``: object arrays are refused.
    An uncompressed ``x`` (written by ``np.savez``, not
    ``np.savez_compressed``) can be left on disk (a :class:`FileArray`): rows
    are then read when a batch needs them, so the file may be larger than
    memory. ``y`` is always read.

    Args:
        path: The file.
        x_key: Name of the inputs array.
        y_key: Name of the targets array.
        on_disk: Leave ``x`` on disk (``True``), read it (``False``), or
            decide by size (``None``: on disk above :data:`ON_DISK_BYTES`).

    Raises:
        KeyError: One of the keys is missing (the message lists those present).
        ValueError: The arrays have different lengths, or hold objects.
    """
    with np.load(os.fspath(path), allow_pickle=False) as data:
        missing = [k for k in (x_key, y_key) if k not in data.files]
        if missing:
            raise KeyError(f"{os.fspath(path)}: no array {missing} (has {sorted(data.files)})")
        x: Array | FileArray | None = None
        if on_disk is not False:
            x = npy_on_disk(path, f"{x_key}.npy")
            if x is not None and on_disk is None and len(x) * x.row_nbytes <= ON_DISK_BYTES:
                x = None
        if x is None:
            x = np.asarray(data[x_key])
        return Dataset(x, np.asarray(data[y_key]))
