"""Scale (issue 18): memory and time against clients x data. Prints JSON; asserts nothing.

Every case runs in a fresh interpreter (``bench_fedavg.run_child``): wall time
of the whole process (imports, data, simulation), the simulation's own wall
time and the peak RSS (``VmHWM`` of ``/proc/self/status``).

Cases:

``peers``
    The peers' task of the issue (the Flower / DecLearn comparison): FedAvg,
    1,000 clients x 100 samples, numpy logistic regression (10 classes), one
    epoch of SGD with batch 10, 3 rounds, for d = 100 and d = 10,000. The
    data is one pooled ``.npz`` file (100,000 rows; 8 GB of float64 at
    d = 10^4) split IID among the clients, written once (streamed, never in
    memory whole) under ``--data-dir`` (default ``/tmp/simkit-bench``).
``scale``
    ``scenarios/scale.toml`` with 1,000 / 10,000 / 100,000 clients x 1 round.
``executor``
    A torch MLP of 134k parameters, 100 clients x 200 samples, 2 epochs of
    batch 16, 3 rounds: inline, then a process pool of 2 workers (the
    digests must match).

Usage::

    python bench/bench_scale.py peers [--dims 100 10000]
    python bench/bench_scale.py scale [--clients 1000 10000 100000]
    python bench/bench_scale.py executor
    python bench/bench_scale.py [--quick]   # scale (1k, 10k [, 100k]): what run_all.py runs
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fedavg import SCALE, run_child

CLIENTS = 1_000
SAMPLES = 100
CLASSES = 10

PEERS_TOML = """\
name = "peers_d{dim}"
description = "the peers' task: 1,000 clients x 100 samples, logistic regression, 3 rounds"
seed = 0
rounds = 3

[protocol]
name = "fedavg"
fraction = 1.0
round_timeout = 600.0

[clients]
count = {clients}

[data]
source = "npz"
path = {path!r}
test_fraction = 0.0

[model]
kind = "logistic"

[training]
batch_size = 10
n_epoch = 1

[optimizer.client]
kind = "sgd"
lr = 0.1

[network]
latency = 0.01

[run]
trace_heartbeats = false
"""


def _write_member(
    zf: zipfile.ZipFile, name: str, shape: tuple[int, ...], dtype: Any, chunks: Any
) -> None:
    """One ``.npy`` member of an uncompressed ``.npz``, written chunk by chunk."""
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": shape,
    }
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_2_0(f, header)
        for chunk in chunks:
            f.write(np.ascontiguousarray(chunk, dtype=dtype).tobytes())


def make_npz(path: Path, rows: int, dim: int, seed: int = 0, chunk: int = 2_000) -> Path:
    """A pooled data set ``x`` (float64) / ``y`` (int64: argmax of a linear teacher)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    teacher = rng.normal(0.0, 1.0 / np.sqrt(dim), (dim, CLASSES))
    labels = np.empty(rows, dtype=np.int64)

    def x_chunks() -> Any:
        for lo in range(0, rows, chunk):
            x = rng.standard_normal((min(chunk, rows - lo), dim))
            labels[lo : lo + len(x)] = np.argmax(x @ teacher, axis=1)
            yield x

    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        _write_member(zf, "x", (rows, dim), np.float64, x_chunks())
        _write_member(zf, "y", (rows,), np.int64, [labels])
    tmp.rename(path)
    return path


def peers(dim: int, data_dir: Path, clients: int = CLIENTS) -> dict[str, Any]:
    data = make_npz(data_dir / f"peers_{clients * SAMPLES}x{dim}.npz", clients * SAMPLES, dim)
    toml = data_dir / f"peers_d{dim}_{clients}.toml"
    toml.write_text(PEERS_TOML.format(dim=dim, clients=clients, path=str(data)))
    report = run_child([], toml)
    report["case"] = f"peers_{clients}x{SAMPLES}_d{dim}_3rounds"
    report["data_gb"] = round(data.stat().st_size / 1e9, 2)
    return report


TORCH_TOML = """\
name = "executor_torch"
description = "torch MLP 256-256-256-10 (134k parameters), 100 clients x 200 samples, 3 rounds"
seed = 0
rounds = 3

[protocol]
name = "fedavg"
fraction = 1.0
round_timeout = 600.0

[clients]
count = 100

[data]
source = "synthetic"
alpha = 0.5
beta = 0.5
samples = 200
dim = 256
classes = 10
test_fraction = 0.1

[model]
kind = "mlp"
hidden = [256, 256]
num_threads = 1

[training]
batch_size = 16
n_epoch = 2

[optimizer.client]
kind = "sgd"
lr = 0.05

[run]
trace_heartbeats = false

[execution]
executor = "{executor}"
workers = {workers}
"""


def executor(kind: str, workers: int, data_dir: Path) -> dict[str, Any]:
    toml = data_dir / f"executor_{kind}_{workers}.toml"
    toml.parent.mkdir(parents=True, exist_ok=True)
    toml.write_text(TORCH_TOML.format(executor=kind, workers=workers))
    report = run_child([], toml)
    report["case"] = f"torch_mlp_134k_100x3_{kind}_{workers}"
    return report


def scale(clients: int) -> dict[str, Any]:
    report = run_child([f"clients.count={clients}", "rounds=1"], SCALE)
    report["case"] = f"scale_{clients}x1"
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", nargs="?", default="scale", choices=["peers", "scale", "executor"])
    parser.add_argument("--quick", action="store_true", help="small sizes (run_all.py --quick)")
    parser.add_argument("--dims", type=int, nargs="+", default=[100, 10_000])
    parser.add_argument("--clients", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/simkit-bench"))
    args = parser.parse_args()
    if args.quick:
        args.dims, args.clients = [100], [1_000, 10_000]
    if args.case == "peers":
        out = [peers(dim, args.data_dir) for dim in args.dims]
    elif args.case == "executor":
        out = [executor("inline", 1, args.data_dir), executor("process", 2, args.data_dir)]
    else:
        out = [scale(n) for n in args.clients]
    print(json.dumps({args.case: out}, indent=2))


if __name__ == "__main__":
    main()
