"""Pathological non-IID partitions: each client holds exactly ``k`` classes.

McMahan et al. (2017) sort MNIST by label and deal each client two shards,
so most clients see two digits; the variant here makes "k classes per
client" exact. Classes are dealt to clients round-robin over a seeded
permutation of the classes (client ``i`` holds classes ``perm[(i*k + j) % C]``
for ``j < k``), so every class is held when ``n_clients * k >= C`` and the
holders of each class are as even as they can be; then each class's rows,
shuffled, are cut into equal parts among its holders.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from simkit.training._weights import Array

__all__ = ["pathological"]


def pathological(
    labels: npt.ArrayLike, n_clients: int, classes_per_client: int, rng: np.random.Generator
) -> list[Array]:
    """A partition where each client holds rows of exactly ``classes_per_client`` classes.

    Args:
        labels: One integer label per row.
        n_clients: Number of shards.
        classes_per_client: Classes each client holds (``k``).
        rng: Generator for the class permutation and the shuffles.

    Returns:
        ``n_clients`` sorted index arrays, disjoint (rows of classes no client
        holds, when ``n_clients * k`` is below the class count, are left out).

    Raises:
        ValueError: Labels that are not one integer per row, ``k`` above the
            number of classes, or a class with fewer rows than holders.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"pathological needs one integer label per row, got {y.dtype} {y.shape}")
    if n_clients < 1:
        raise ValueError(f"n_clients must be >= 1, got {n_clients}")
    classes = np.unique(y)
    k = classes_per_client
    if not 1 <= k <= len(classes):
        raise ValueError(f"classes_per_client must be in [1, {len(classes)}] here, got {k}")
    order = classes[rng.permutation(len(classes))]
    holders: dict[int, list[int]] = {int(c): [] for c in classes}
    for i in range(n_clients):
        for j in range(k):
            holders[int(order[(i * k + j) % len(classes)])].append(i)
    parts: list[list[Array]] = [[] for _ in range(n_clients)]
    for c in classes:  # sorted: the draws do not depend on the permutation's order
        rows = np.flatnonzero(y == c)
        owners = holders[int(c)]
        if not owners:
            continue
        if len(rows) < len(owners):
            raise ValueError(
                f"class {int(c)} has {len(rows)} rows for {len(owners)} clients holding it"
            )
        pieces = np.array_split(rng.permutation(rows), len(owners))
        for owner, piece in zip(owners, pieces, strict=True):
            parts[owner].append(piece)
    return [np.sort(np.concatenate(p)) for p in parts]
