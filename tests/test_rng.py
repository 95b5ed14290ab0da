"""The seed tree: stable, independent, path-named streams."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from simkit.rng import SeedTree, derive_bytes


def test_same_path_same_stream_and_child_equivalence() -> None:
    tree = SeedTree(42)
    a = tree.numpy("client", "c07", "data").random(5)
    b = tree.child("client", "c07").numpy("data").random(5)
    assert np.array_equal(a, b)


def test_different_paths_and_seeds_differ() -> None:
    draws = {
        SeedTree(1).numpy("a").integers(1 << 62),
        SeedTree(1).numpy("b").integers(1 << 62),
        SeedTree(2).numpy("a").integers(1 << 62),
        SeedTree(1).numpy("a", "b").integers(1 << 62),
        SeedTree(1).numpy("ab").integers(1 << 62),
        SeedTree(1).numpy(1).integers(1 << 62),
        SeedTree(1).numpy("1").integers(1 << 62),
    }
    assert len(draws) == 7


def test_path_encoding_is_injective_for_tricky_parts() -> None:
    assert derive_bytes(0, ("a\x00b",)) != derive_bytes(0, ("a", "b"))
    assert derive_bytes(0, ("",)) != derive_bytes(0, ())


def test_stable_across_processes_whatever_the_hash_seed() -> None:
    code = "from simkit.rng import SeedTree; print(SeedTree(9).bytes('x', 3).hex())"
    outs = set()
    for hashseed in ("0", "1", "12345"):
        env = {"PYTHONHASHSEED": hashseed, "PATH": ""}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        )
        outs.add(out.stdout.strip())
    assert outs == {SeedTree(9).bytes("x", 3).hex()}


def test_integer_bits_and_torch_generator() -> None:
    tree = SeedTree(5)
    assert 0 <= tree.integer("k", bits=10) < 1024
    torch = pytest.importorskip("torch")
    g1, g2 = tree.torch("w"), tree.torch("w")
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))


def test_bad_seed_and_path_parts_are_refused() -> None:
    with pytest.raises(TypeError, match="seed"):
        SeedTree("7")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="path parts"):
        SeedTree(1).numpy(1.5)  # type: ignore[arg-type]


def test_streams_are_pinned_and_children_extend_the_encoding() -> None:
    # A seed names a run across versions: these bytes must never change.
    assert SeedTree(9).bytes("x", 3, n=16).hex() == "b81752faac587dd132c30f8a3b702ed7"
    tree = SeedTree(9)
    assert tree.child("x").bytes(3) == tree.child("x", 3).bytes() == tree.bytes("x", 3)
    assert tree.child("x").child(3).bytes(n=16).hex() == "b81752faac587dd132c30f8a3b702ed7"
    assert tree.child("a", 1).path == ("a", 1)
    with pytest.raises(TypeError, match="path parts"):
        tree.child(True)  # type: ignore[arg-type]
