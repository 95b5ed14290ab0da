"""The :class:`Dataset`: rows held in memory, viewed through an index, or loaded on demand.

Memory follows what is active, not the population (DESIGN.md, Scale):

* ``Dataset(x, y)`` holds its arrays.
* :meth:`Dataset.subset`, :meth:`~Dataset.split` and :meth:`~Dataset.partition`
  return *index views*: the rows of a shard are an index into the parent's
  arrays, gathered only when a batch or an epoch is asked for. A view of a
  view composes the indices, so a client's shard of a pooled data set costs
  one index array, whatever the data's width.
* :meth:`Dataset.lazy` wraps a *loader* (a picklable callable returning a
  dataset) whose result lives in a bounded :class:`DataCache`: a client's
  synthetic data is drawn from its own seed-tree stream when it trains and
  dropped when memory is needed for another client. The values are the same
  on every load, so nothing downstream can tell a hit from a miss.
* :func:`npy_on_disk` leaves an ``.npy`` array (or an uncompressed ``.npz``
  member) in its file as a :class:`FileArray`: gathering rows reads only
  those rows (``os.preadv`` into the batch's own buffer), so nothing of the
  file stays resident in the process and the file may be larger than memory.

Gathering ``base[index[order]]`` gives exactly the values of
``base[index][order]``, so a view trains bit for bit like the copy it replaces.
"""

from __future__ import annotations

import os
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from simkit.training._weights import Array

__all__ = ["CHUNK_BYTES", "DataCache", "Dataset", "FileArray", "npy_on_disk"]

CHUNK_BYTES = 64 * 2**20
"""Bytes of inputs per block of :meth:`Dataset.chunks`."""

Loader = Callable[[], "Dataset"]
_EMPTY: Array = np.empty(0)


class DataCache:
    """A bounded LRU of loaded datasets (what :meth:`Dataset.lazy` loads into).

    Args:
        max_bytes: Evict least recently used entries above this many bytes
            (the most recent entry always stays, whatever its size).
    """

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[_Lazy, Dataset] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.loads = 0  # misses: how many times a loader ran

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def __reduce__(self) -> tuple[Any, ...]:
        # another process (a worker of a process pool) starts its own, empty
        return (DataCache, (self.max_bytes,))

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, lazy: _Lazy) -> Dataset:
        with self._lock:
            hit = self._entries.get(lazy)
            if hit is not None:
                self._entries.move_to_end(lazy)
                return hit
        data = lazy.loader()
        if len(data) != lazy.n:
            raise ValueError(f"loader {lazy.loader!r} gave {len(data)} rows, promised {lazy.n}")
        with self._lock:
            self.loads += 1
            if lazy not in self._entries:
                self._entries[lazy] = data
                self._bytes += data.nbytes
            self._evict()
        return data

    def put(self, lazy: _Lazy, data: Dataset) -> None:
        """Prime the cache with what ``lazy`` would load (skipped when it does not fit)."""
        with self._lock:
            if lazy in self._entries or self._bytes + data.nbytes > self.max_bytes:
                return
            self._entries[lazy] = data
            self._bytes += data.nbytes

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            _, old = self._entries.popitem(last=False)
            self._bytes -= old.nbytes


class _Lazy:
    """A dataset's loader, its promised row count and the cache it loads into."""

    __slots__ = ("__weakref__", "cache", "loader", "n")

    def __init__(self, n: int, loader: Loader, cache: DataCache) -> None:
        self.n, self.loader, self.cache = n, loader, cache

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Lazy, (self.n, self.loader, self.cache))


class FileArray:
    """A C-ordered array inside a file, read by rows (``os.preadv``), never whole.

    Reading rows this way costs one system call per row (or per run of
    consecutive rows) and leaves nothing resident in the process: the file's
    pages stay in the kernel's page cache, not in this process's memory, so
    a data set larger than memory is fine. Picklable (a worker process opens
    the file itself).

    Args:
        path: The file.
        offset: Where the array's bytes start.
        dtype: Element type.
        shape: Array shape (rows first).
    """

    __slots__ = ("_fd", "_pid", "dtype", "offset", "path", "shape")

    def __init__(self, path: str, offset: int, dtype: npt.DTypeLike, shape: tuple[int, ...]):
        self.path, self.offset = path, int(offset)
        self.dtype, self.shape = np.dtype(dtype), tuple(int(n) for n in shape)
        self._fd = -1
        self._pid = -1

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def row_nbytes(self) -> int:
        """Bytes per row."""
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def _file(self) -> int:
        if self._pid != os.getpid():  # first use, or a forked child: open our own
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def _read(self, out: Array, row: int, count: int, at: int) -> None:
        size = self.row_nbytes
        flat: Any = out.reshape(-1).view(np.uint8)  # numpy's stubs lack the buffer protocol
        view = memoryview(flat)[at * size : (at + count) * size]
        done, where = 0, self.offset + row * size
        while done < len(view):  # one call reads at most about 2 GB
            got = os.preadv(self._file(), [view[done:]], where + done)
            if got <= 0:
                raise OSError(f"{self.path}: short read ({done} of {len(view)} bytes): truncated?")
            done += got

    def read(self, start: int, stop: int) -> Array:
        """Rows ``start:stop`` (clipped to the array)."""
        start, stop = max(0, start), min(len(self), stop)
        out = np.empty((max(0, stop - start), *self.shape[1:]), self.dtype)
        if stop > start:
            self._read(out, start, stop - start, 0)
        return out

    def take(self, rows: npt.ArrayLike) -> Array:
        """Rows at ``rows`` (in that order); runs of consecutive rows are read at once."""
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((idx.size, *self.shape[1:]), self.dtype)
        if idx.size == 0:
            return out
        if int(idx.min()) < 0 or int(idx.max()) >= len(self):
            raise IndexError(f"row out of range for {len(self)} rows")
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        starts = np.concatenate(([0], breaks)).tolist()
        ends = np.concatenate((breaks, [idx.size])).tolist()
        first = idx[starts].tolist()
        for at, end, row in zip(starts, ends, first, strict=True):
            self._read(out, row, end - at, at)
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("path", "offset", "dtype", "shape")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        FileArray.__init__(self, **state)

    def __del__(self) -> None:
        if self._fd >= 0 and self._pid == os.getpid():
            os.close(self._fd)

    def __repr__(self) -> str:
        return f"FileArray({self.path!r}, shape={self.shape}, dtype={self.dtype})"


def _npy_header(f: Any) -> tuple[np.dtype[Any], tuple[int, ...], bool]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    return dtype, tuple(shape), bool(fortran)


def _member_offset(path: str, member: str) -> int | None:
    """Where ``member``'s bytes start inside a zip file, or ``None`` if compressed."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        return int(info.header_offset) + 30 + name_len + extra_len


def npy_on_disk(path: str | os.PathLike[str], member: str | None = None) -> FileArray | None:
    """The array of an ``.npy`` file or ``.npz`` member, left on disk and read by rows.

    Args:
        path: The file.
        member: The ``.npy`` member of an ``.npz`` archive (``"x.npy"``);
            ``None`` for a plain ``.npy`` file.

    Returns:
        A :class:`FileArray`, or ``None`` when the array cannot be read in
        place (a compressed member, Fortran order, an object dtype): load it.
    """
    path = os.fspath(path)
    start = 0 if member is None else _member_offset(path, member)
    if start is None:
        return None
    with open(path, "rb") as f:
        f.seek(start)
        dtype, shape, fortran = _npy_header(f)
        data_at = f.tell()
    if fortran or dtype.hasobject or len(shape) == 0:
        return None
    return FileArray(path, data_at, dtype, shape)


class Dataset:
    """Inputs ``x`` and targets ``y`` with the same number of rows.

    Args:
        x: Inputs, shape ``(n, ...)``.
        y: Targets (class indices or values), shape ``(n, ...)``.

    Raises:
        ValueError: ``x`` and ``y`` have different lengths.
    """

    __slots__ = ("_index", "_lazy", "_x", "_y")

    def __init__(self, x: npt.ArrayLike | FileArray, y: npt.ArrayLike) -> None:
        xa = x if isinstance(x, FileArray) else np.asarray(x)
        ya = np.asarray(y)
        if xa.ndim == 0 or ya.ndim == 0 or xa.shape[0] != ya.shape[0]:
            raise ValueError(f"x and y need the same number of rows, got {xa.shape} and {ya.shape}")
        self._x: Array | FileArray | None = xa
        self._y: Array | None = ya
        self._index: Array | None = None
        self._lazy: _Lazy | None = None

    @classmethod
    def lazy(cls, n_samples: int, loader: Loader, cache: DataCache) -> Dataset:
        """``n_samples`` rows that ``loader()`` returns when first needed.

        The loaded dataset is kept in ``cache`` until evicted; it is loaded
        again (with the same values: the loader must be deterministic) when
        needed after that. ``len`` is known without loading.
        """
        out = cls.__new__(cls)
        out._x = out._y = out._index = None
        out._lazy = _Lazy(int(n_samples), loader, cache)
        return out

    def _view(self, index: Array) -> Dataset:
        out = Dataset.__new__(Dataset)
        out._x, out._y, out._lazy = self._x, self._y, self._lazy
        out._index = index
        return out

    def _base(self) -> tuple[Array | FileArray, Array]:
        """The arrays the rows are drawn from (loading them if lazy)."""
        if self._lazy is not None:
            loaded = self._lazy.cache.get(self._lazy)
            return loaded._gather(slice(None)) if loaded._index is not None else loaded._base()
        assert self._x is not None
        assert self._y is not None
        return self._x, self._y

    def _gather(self, rows: Array | slice, *, x_too: bool = True) -> tuple[Array, Array]:
        """``(x, y)`` at ``rows`` of this dataset (``x`` left empty unless ``x_too``)."""
        x, y = self._base()
        if isinstance(rows, slice):
            if self._index is None:
                if not x_too:
                    return _EMPTY, y[rows]
                if isinstance(x, FileArray):
                    start, stop, _ = rows.indices(len(x))
                    return x.read(start, stop), y[rows]
                return x[rows], y[rows]
            rows = self._index[rows]
        elif self._index is not None:
            rows = self._index[rows]
        if not x_too:
            return _EMPTY, y[rows]
        return (x.take(rows) if isinstance(x, FileArray) else x[rows]), y[rows]

    # --------------------------------------------------------------- shape

    def __len__(self) -> int:
        if self._index is not None:
            return int(self._index.shape[0])
        if self._lazy is not None:
            return self._lazy.n
        assert self._x is not None
        return int(self._x.shape[0])

    @property
    def n_samples(self) -> int:
        """Number of rows."""
        return len(self)

    @property
    def x(self) -> Array:
        """The inputs (gathered anew from a view or a lazy dataset on each access)."""
        return self._gather(slice(None))[0]

    @property
    def y(self) -> Array:
        """The targets (gathered anew from a view or a lazy dataset on each access)."""
        return self._gather(slice(None), x_too=False)[1]

    @property
    def is_view(self) -> bool:
        """Whether the rows are an index into other arrays, or loaded on demand."""
        return self._index is not None or self._lazy is not None

    @property
    def nbytes(self) -> int:
        """Bytes this dataset holds itself (a view: its index; ``x`` on disk: its ``y``)."""
        if self._index is not None:
            return int(self._index.nbytes)
        if self._lazy is not None:
            return 0
        assert self._x is not None
        assert self._y is not None
        x_bytes = 0 if isinstance(self._x, FileArray) else int(self._x.nbytes)
        return int(self._y.nbytes) + x_bytes

    def rows(self, start: int, stop: int) -> tuple[Array, Array]:
        """Rows ``start:stop`` as ``(x, y)`` (views of held arrays, else gathered)."""
        return self._gather(slice(start, stop))

    def chunks(self, nbytes: int = CHUNK_BYTES) -> Iterator[tuple[Array, Array]]:
        """All rows in order, as ``(x, y)`` blocks of about ``nbytes`` of inputs each.

        For a scan (validation, statistics) of data larger than memory.
        """
        x0 = self.rows(0, 1)[0]
        step = max(1, nbytes // max(1, x0.nbytes))
        for lo in range(0, len(self), step):
            yield self.rows(lo, lo + step)

    # ------------------------------------------------------------- batching

    def n_batches(self, batch_size: int, drop_remainder: bool = False) -> int:
        """Batches in one epoch."""
        _check_batch_size(batch_size)
        full, rest = divmod(len(self), batch_size)
        return full if drop_remainder or rest == 0 else full + 1

    def batch_sizes(self, batch_size: int, drop_remainder: bool = False) -> list[int]:
        """Sizes of the batches of one epoch, in order (only the last may be short)."""
        full, rest = divmod(len(self), batch_size)
        _check_batch_size(batch_size)
        return [batch_size] * full + ([] if drop_remainder or rest == 0 else [rest])

    def epoch(
        self, rng: np.random.Generator | None = None, shuffle: bool = True
    ) -> tuple[Array, Array]:
        """The whole dataset in the order of one epoch (shuffled with ``rng``).

        Batches are then consecutive slices (views) of the returned arrays: one
        gather per epoch instead of one per batch.

        Raises:
            ValueError: ``shuffle`` is set but no ``rng`` is given.
        """
        if not shuffle:
            return self._gather(slice(None))
        if rng is None:
            raise ValueError("shuffling needs an rng (from the seed tree)")
        return self._gather(rng.permutation(len(self)))

    def batches(
        self,
        batch_size: int,
        *,
        rng: np.random.Generator | None = None,
        shuffle: bool = True,
        drop_remainder: bool = False,
    ) -> Iterator[tuple[Array, Array]]:
        """Yield ``(x, y)`` batches of one epoch.

        Args:
            batch_size: Rows per batch.
            rng: Generator for the shuffle (required when ``shuffle``).
            shuffle: Permute the rows first.
            drop_remainder: Skip a final short batch.
        """
        sizes = self.batch_sizes(batch_size, drop_remainder)
        x, y = self.epoch(rng, shuffle)
        for i, size in enumerate(sizes):
            start = i * batch_size
            yield x[start : start + size], y[start : start + size]

    # ------------------------------------------------------------- splitting

    def subset(self, indices: npt.ArrayLike) -> Dataset:
        """The rows at ``indices``: an index view, no rows are copied.

        Raises:
            IndexError: An index is out of range.
        """
        idx = np.asarray(indices, dtype=np.intp).reshape(-1)
        n = len(self)
        if idx.size and (int(idx.min()) < -n or int(idx.max()) >= n):
            raise IndexError(f"subset index out of range for {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        return self._view(idx if self._index is None else self._index[idx])

    def split(self, fraction: float, rng: np.random.Generator) -> tuple[Dataset, Dataset]:
        """A seeded random split into ``(first, second)``, ``first`` holding ``fraction``.

        Raises:
            ValueError: ``fraction`` is not strictly between 0 and 1.
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        order = rng.permutation(len(self))
        cut = round(fraction * len(self))
        return self.subset(np.sort(order[:cut])), self.subset(np.sort(order[cut:]))

    def partition(self, parts: Sequence[npt.ArrayLike]) -> list[Dataset]:
        """One dataset per index array (as returned by the partitioners)."""
        return [self.subset(p) for p in parts]

    def materialize(self) -> Dataset:
        """The same rows held in memory (a copy for views and lazy datasets)."""
        if not self.is_view and not isinstance(self._x, FileArray):
            return self
        x, y = self._gather(slice(None))
        return Dataset(np.array(x), np.array(y))

    def __reduce__(self) -> tuple[Any, ...]:
        # to a worker process: a view of arrays in memory travels as its rows
        # only; a lazy dataset as its loader, rows on disk as the file's name
        if self._lazy is None and not isinstance(self._x, FileArray) and self._index is not None:
            x, y = self._gather(slice(None))
            return (Dataset, (x, y))
        return (_rebuild, (self._x, self._y, self._index, self._lazy))

    def __repr__(self) -> str:
        kind = "lazy" if self._lazy is not None else "view" if self._index is not None else "held"
        return f"<Dataset {len(self)} rows ({kind})>"


def _rebuild(
    x: Array | FileArray | None, y: Array | None, index: Array | None, lazy: _Lazy | None
) -> Dataset:
    out = Dataset.__new__(Dataset)
    out._x, out._y, out._index, out._lazy = x, y, index, lazy
    return out


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
