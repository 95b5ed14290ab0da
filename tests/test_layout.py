"""The layout of simkit/ and protocols/: layers, no import circle, small modules.

The import graph is built with ``ast`` from the source (every import counts:
module level, ``TYPE_CHECKING`` blocks and imports inside functions), so a
lazy import is a dependency like any other. Inside simkit, lower layers never
import higher ones (docs/design.md, Layout):

    rng -> codec/messages (the wire) -> channels -> runtime/actors
        -> faults/trace -> scenario/report/cli

The training core, the SecAgg primitives and message validation sit beside
the runtime: they may use the wire and the seed tree, nothing above.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("simkit", "protocols")
MAX_LINES = 500

# Layer of each simkit module, bottom first: a module is in the layer of its
# longest listed prefix. A module may import its own layer and those below.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rng", ("simkit.rng", "simkit.clock", "simkit._version", "simkit._errors")),
    ("wire", ("simkit.wire", "simkit.codec", "simkit.messages")),
    ("cores", ("simkit.training", "simkit.secagg", "simkit.validation", "simkit.executor")),
    ("channels", ("simkit.channels",)),
    (
        "runtime/actors",
        (
            "simkit.runtime",
            "simkit._asyncio_timers",
            "simkit.heartbeat",
            "simkit.actors",
            "simkit._session",
            "simkit._connection",
            "simkit._mailbox",
            "simkit._inbox",
            "simkit._peers",
            "simkit._host",
            "simkit._waiting",
            "simkit._threads",
            "simkit.driver",
        ),
    ),
    (
        "faults/trace",
        (
            "simkit.faults",
            "simkit.trace",
            "simkit._injector",
            "simkit.simulation",
            "simkit._realtime",
        ),
    ),
    (
        "scenario/report/cli",
        (
            "simkit",
            "simkit.__main__",
            "simkit.protocol",
            "simkit._outcomes",
            "simkit._progress",
            "simkit.scenario",
            "simkit.runner",
            "simkit.report",
            "simkit.cli",
            "simkit._cli_error",
            "simkit.compare",
            "simkit.demo",
            "simkit.testing",
        ),
    ),
)

# Beside the runtime: these may import only what is listed (and themselves).
ONLY: dict[str, tuple[str, ...]] = {
    "simkit.training": ("simkit.rng", "simkit.wire", "simkit.codec", "simkit.messages"),
    "simkit.wire": (),
}

# Imports today's code makes against the rules, each a lazy import (inside a
# function) with its reason. The tests below ignore exactly these edges; remove
# one when its import goes.
EXCEPTIONS: dict[tuple[str, str], str] = {}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts).removesuffix(".__init__")
            found[name] = path
    return found


MODULES = _modules()


def _imported(module: str, path: Path) -> Iterator[str]:
    """Every module of ours that ``module`` imports, wherever the import is."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t if t in MODULES else base for t in targets]
        else:
            continue
        for target in targets:
            if target in MODULES and target != module and not module.startswith(target + "."):
                yield target


def _graph() -> dict[str, set[str]]:
    return {
        m: set(_imported(m, p)) - {t for (s, t) in EXCEPTIONS if s == m} for m, p in MODULES.items()
    }


GRAPH = _graph()


def _layer(module: str) -> int:
    best, layer = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), index
    return layer


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle() -> None:
    assert _cycles(GRAPH) == []


def test_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_simkit_module_has_a_layer() -> None:
    assert [m for m in MODULES if m.startswith("simkit") and _layer(m) < 0] == []


def test_no_upward_import_in_simkit() -> None:
    upward = [
        f"{source} ({LAYERS[_layer(source)][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
        for source in sorted(GRAPH)
        if source.startswith("simkit")
        for target in sorted(GRAPH[source])
        if target.startswith("simkit") and _layer(target) > _layer(source)
    ]
    assert upward == []


@pytest.mark.parametrize("owner", sorted(ONLY))
def test_beside_the_runtime_only_the_wire_and_the_seed_tree(owner: str) -> None:
    allowed = (owner, *ONLY[owner])
    outside = sorted(
        f"{source} imports {target}"
        for source in GRAPH
        if source == owner or source.startswith(owner + ".")
        for target in GRAPH[source]
        if not any(target == a or target.startswith(a + ".") for a in allowed)
    )
    assert outside == []


def test_simkit_never_imports_protocols() -> None:
    assert [
        (m, sorted(GRAPH[m]))
        for m in GRAPH
        if m.startswith("simkit") and any(t.startswith("protocols") for t in GRAPH[m])
    ] == []


def test_exceptions_are_real_imports() -> None:
    stale = [
        edge for edge in EXCEPTIONS if edge[1] not in set(_imported(edge[0], MODULES[edge[0]]))
    ]
    assert stale == [], "these imports are gone: remove them from EXCEPTIONS"


def test_no_module_over_the_line_limit() -> None:
    sizes = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}
