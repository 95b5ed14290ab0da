"""The user's own model factories and data loaders, named in scenario files.

::

    [model]
    kind = "mypkg.models:make_cnn"      # -> torch.nn.Module or simkit Model
    options = {channels = 8}

    [data]
    source = "mypkg.data:load"          # -> Dataset or (x, y)
    options = {path = "data/train.npz"}

Each is imported and called once while the scenario is built, so that a
missing module, a misspelt option or a wrong return type fails ``simkit
scenario check`` and ``simkit run`` before the first round, as one line
naming the key::

    x.toml: model.kind: cannot import 'mypkg.modles': No module named 'mypkg.modles'
    x.toml: model.options: mypkg.models:make_cnn() got an unexpected keyword 'chanels'
    x.toml: data.source: mypkg.data:load returned a list, not a Dataset or an (x, y) pair
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from simkit._errors import error_line
from simkit.rng import SeedTree
from simkit.scenario._load import Scenario
from simkit.scenario._schema_data import UserData, UserModelConfig
from simkit.training import Dataset, Model

__all__ = ["user_data", "user_model_factory"]


def load_object(scenario: Scenario, key: str, path: str) -> Callable[..., Any]:
    """The callable ``package.module:function`` names.

    Raises:
        ScenarioError: It cannot be imported, is missing or is not callable.
    """
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise scenario.error(key, f"cannot import {module_name!r}: {exc}") from None
    except Exception as exc:  # the user's module raised while importing
        raise scenario.error(key, f"importing {module_name!r} raised {error_line(exc)}") from None
    found = getattr(module, attr, None)
    if found is None:
        raise scenario.error(key, f"module {module_name!r} has no {attr!r}")
    if not callable(found):
        raise scenario.error(key, f"{path} is a {type(found).__name__}, not a function")
    return found  # type: ignore[no-any-return]


def call_user(
    scenario: Scenario,
    key: str,
    path: str,
    function: Callable[..., Any],
    options: Mapping[str, Any],
    offered: Mapping[str, Any],
) -> Any:
    """``function(**options, **the offered arguments it takes)``; errors name ``key``.

    Raises:
        ScenarioError: The options do not fit its signature (named as
            ``<table>.options``), or the call raised (named as ``key``).
    """
    table = key.split(".")[0]
    kwargs = dict(options)
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin or C function: offer nothing
        params = {}  # type: ignore[assignment]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for name, value in offered.items():
        if name in kwargs:
            raise scenario.error(f"{table}.options", f"{name!r} is given by simkit, not an option")
        if takes_any or name in params:
            kwargs[name] = value
    if params:
        try:
            inspect.signature(function).bind(**kwargs)
        except TypeError as exc:
            raise scenario.error(f"{table}.options", f"{path}(): {exc}") from None
    try:
        return function(**kwargs)
    except Exception as exc:
        raise scenario.error(key, f"{path}(...) raised {error_line(exc)}") from None


# ----------------------------------------------------------------------------- models


def user_model_factory(
    scenario: Scenario,
    spec: UserModelConfig,
    seed: SeedTree,
    input_shape: tuple[int, ...],
    n_classes: int,
) -> Callable[[], Model]:
    """A model factory around the user's function, tried once now.

    A torch module is wrapped in a :class:`~simkit.training.TorchModel` whose
    parameters are re-initialized from ``seed``; the function itself runs
    with torch's default generator forked and seeded, so it neither reads nor
    changes the caller's global torch state.
    """
    function = load_object(scenario, "model.kind", spec.kind)
    offered = {
        "input_shape": input_shape,
        "n_features": int(np.prod(input_shape)),
        "n_classes": n_classes,
        "seed": seed,
    }

    def make() -> Model:
        with _torch_rng(seed):
            built = call_user(scenario, "model.kind", spec.kind, function, spec.options, offered)
        return _as_model(scenario, spec, built, seed)

    make()  # a bad factory fails the build, not a client's first round
    return make


@contextlib.contextmanager
def _torch_rng(seed: SeedTree) -> Iterator[None]:
    torch = sys.modules.get("torch")  # only when the user's module uses torch
    if torch is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.set_state(seed.torch("factory").get_state())
        yield


def _as_model(scenario: Scenario, spec: UserModelConfig, built: Any, seed: SeedTree) -> Model:
    if isinstance(built, Model):
        return built
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(built, torch.nn.Module):
        from simkit.training import TorchModel

        loss = torch.nn.CrossEntropyLoss() if spec.loss == "cross_entropy" else torch.nn.MSELoss()
        return TorchModel(built, loss, seed=seed, num_threads=spec.num_threads)
    raise scenario.error(
        "model.kind",
        f"{spec.kind} returned {_a(built)}, not a torch.nn.Module or a simkit Model",
    )


# ----------------------------------------------------------------------------- data


def user_data(scenario: Scenario, spec: UserData, seed: SeedTree) -> Dataset:
    """The pooled data set the user's loader returns.

    Raises:
        ScenarioError: The loader cannot be found or called, or returned
            something that is not a :class:`Dataset` or an ``(x, y)`` pair.
    """
    function = load_object(scenario, "data.source", spec.source)
    got = call_user(scenario, "data.source", spec.source, function, spec.options, {"seed": seed})
    if isinstance(got, Dataset):
        return got
    if isinstance(got, tuple) and len(got) == 2:
        try:
            return Dataset(np.asarray(got[0]), np.asarray(got[1]))
        except ValueError as exc:
            raise scenario.error("data.source", f"{spec.source}: {exc}") from None
    raise scenario.error(
        "data.source", f"{spec.source} returned {_a(got)}, not a Dataset or an (x, y) pair"
    )


def _a(value: Any) -> str:
    name = type(value).__name__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"
