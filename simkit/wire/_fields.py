"""Checking decoded field maps against a message class's annotations.

A message class gets a :class:`Spec` on first use: its init fields, which of
them are required, a *check* per annotated field (compiled once from the
annotation) and the fastest safe way to make an instance. :func:`build` turns
a decoded field map into an instance, raising :class:`~simkit.wire.DecodeError`
that names the field (``Update.pairs[0][1]: expected str, got int``).

Checks follow simple annotations: ``int``, ``str``, classes, ``X | None``,
``Literal[...]``, ``list[...]``, ``tuple[...]``, ``dict[...]``; anything else
(``Any``, type variables, ``NewType``, unresolved names) is not checked.
Where a field is annotated ``tuple``, the decoded list becomes a tuple.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import keyword
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal, NamedTuple, Protocol, TypeVar, Union

import numpy as np

from simkit.wire._base import DecodeError, qualname, tname


class Named(Protocol):
    """What this module needs of a message class: its type name (for errors).

    :class:`~simkit.wire.Message` subclasses are; a protocol keeps this module
    below the one that defines them.
    """

    typename: ClassVar[str]


M = TypeVar("M", bound=Named)

Check = Callable[[Any], Any]
"""Checks a decoded value against a field's annotation: returns it (lists
turned into tuples where annotated) or raises :class:`Mismatch`."""

Setter = Callable[[Any, Any], None]


# ----------------------------------------------------------------------------- specs


class FieldPlan(NamedTuple):
    """How one field is checked and stored (a tuple: unpacking it is fastest)."""

    name: str
    passes: frozenset[type[Any]]  # types that the check would return unchanged
    check: Check | None  # None: anything goes
    setter: Setter | None  # its slot's setter (None: the class must be called)


@dataclass(frozen=True, slots=True)
class Spec:
    """What encoding and decoding need to know about one message class."""

    names: tuple[str, ...]  # init fields, in order
    known: frozenset[str]
    required: frozenset[str]
    fields: tuple[FieldPlan, ...]  # in order
    checked: tuple[tuple[str, frozenset[type[Any]], Check], ...]  # the fields with a check
    direct: bool  # instances may be made by storing their fields (see _direct)
    field_map: Callable[[Any], dict[str, Any]]  # an instance's field map


_SPECS: dict[type[Any], Spec] = {}


def spec(cls: type[Any]) -> Spec:
    """The spec of ``cls``, made on first use.

    Raises:
        TypeError: ``cls`` is not a dataclass.
    """
    found = _SPECS.get(cls)
    if found is None:
        found = _SPECS[cls] = _make_spec(cls)
    return found


def field_map(message: object) -> dict[str, Any]:
    """``message``'s field map (its init fields by name)."""
    cls = type(message)
    return (_SPECS.get(cls) or spec(cls)).field_map(message)


def _make_spec(cls: type[Any]) -> Spec:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(
            f"{qualname(cls)} is not a dataclass; declare it with "
            "@dataclass(frozen=True, slots=True)"
        )
    every = dataclasses.fields(cls)
    init = [f for f in every if f.init]
    names = tuple(f.name for f in init)
    required = frozenset(
        f.name
        for f in init
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    hints = _hints(cls, init)
    plans = tuple(_plan(cls, name, hints.get(name, Any)) for name in names)
    direct = len(init) == len(every) and _direct(cls, names, plans)
    checked = tuple((p.name, p.passes, p.check) for p in plans if p.check is not None)
    return Spec(names, frozenset(names), required, plans, checked, direct, _field_getter(names))


def _plan(cls: type[Any], name: str, hint: Any) -> FieldPlan:
    check = _compile(hint)
    slot = getattr(cls, name, None)
    setter = slot.__set__ if type(slot) is types.MemberDescriptorType else None
    return FieldPlan(name, _PASSES.get(check, frozenset()) if check else frozenset(), check, setter)


def _direct(cls: type[Any], names: tuple[str, ...], plans: tuple[FieldPlan, ...]) -> bool:
    """Whether storing checked fields in slots makes the same instance as ``cls(**fields)``.

    That is when ``__init__`` is the one ``@dataclass`` wrote (it only stores
    its arguments), its arguments are exactly ``names`` (every field, the
    caller checked), every field is a slot and there is no ``__post_init__``.
    Storing then skips only the argument binding, about half the cost. Any
    other class (validation, ``InitVar``, ``init=False`` fields, a
    hand-written ``__init__``) is called as usual.
    """
    params = getattr(cls, "__dataclass_params__", None)
    code = getattr(cls.__init__, "__code__", None)
    # dataclass compiles the __init__ it writes with exec(): its code comes from
    # "<string>", where a hand-written one comes from its module's file.
    if params is None or not params.init or code is None or code.co_filename != "<string>":
        return False
    if hasattr(cls, "__post_init__"):
        return False
    arguments = code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount]
    return arguments == names and all(plan.setter is not None for plan in plans)


def _field_getter(names: tuple[str, ...]) -> Callable[[Any], dict[str, Any]]:
    """A function returning an instance's field map: ``{"a": m.a, "b": m.b}``.

    Compiled once per class, as ``@dataclass`` compiles ``__init__``: a dict
    display runs about three times faster than a comprehension over names.
    The names are identifiers from a class definition, so the source is safe.
    """
    if not all(name.isidentifier() and not keyword.iskeyword(name) for name in names):
        return lambda message: {name: getattr(message, name) for name in names}
    items = ", ".join(f"{name!r}: m.{name}" for name in names)
    getter: Callable[[Any], dict[str, Any]] = eval(f"lambda m: {{{items}}}")
    return getter


def _hints(cls: type[Any], fields: list[dataclasses.Field[Any]]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a forward reference that does not resolve: go field by field
        return {f.name: _resolve(cls, f.type) for f in fields}


def _resolve(cls: type[Any], annotation: Any) -> Any:
    if not isinstance(annotation, str):
        return annotation
    try:
        namespace = dict(vars(importlib.import_module(cls.__module__)))
    except ImportError:  # a class of a module that cannot be imported again
        namespace = {}
    try:
        return eval(annotation, namespace, {cls.__name__: cls})
    except Exception:
        return Any


# ----------------------------------------------------------------------------- building


class Mismatch(Exception):
    """A decoded value does not fit its annotation (``where`` is inside the field)."""

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"expected {expected}, got {got}")
        self.where = ""

    def inside(self, step: str) -> Mismatch:
        self.where = step + self.where
        return self


_MISSING: Final = object()


def build(cls: type[M], fields: Any) -> M:
    """Make a ``cls`` from a decoded field map, checking it against the class.

    ``fields`` must be a fresh map (it is updated in place).

    Raises:
        DecodeError: ``fields`` is not a map, lacks or has unknown fields, a
            value does not fit its annotation, or ``cls`` rejects them.
    """
    found = _SPECS.get(cls) or _decoding_spec(cls)
    if type(fields) is not dict:
        raise DecodeError(f"{cls.typename}: expected a field map, got {tname(fields)}")
    try:
        if found.direct and fields.keys() == found.known:
            return _store(cls, found.fields, fields)
        _check_keys(cls, found, fields)
        _check_values(found.checked, fields)
    except Mismatch as m:
        raise DecodeError(f"{cls.typename}{m.where}: {m}") from None
    try:
        return cls(**fields)
    except Exception as exc:  # __post_init__ is user code: whatever it raises, the input is bad
        raise DecodeError(f"{cls.typename}: invalid fields: {exc}") from exc


def _decoding_spec(cls: type[Any]) -> Spec:
    try:
        return spec(cls)
    except TypeError as exc:  # a class that cannot be decoded into: the sender is wrong
        raise DecodeError(f"{cls.typename}: {exc}") from None


def _check_keys(cls: type[Any], found: Spec, fields: dict[Any, Any]) -> None:
    """Raise if ``fields`` has an unknown key or lacks a required one."""
    if not fields.keys() <= found.known:
        unknown = next(k for k in fields if k not in found.known)
        raise DecodeError(f"{cls.typename}: unknown field {unknown!r}")
    if not found.required <= fields.keys():
        missing = ", ".join(repr(k) for k in found.names if k in found.required - fields.keys())
        raise DecodeError(f"{cls.typename}: missing field(s) {missing}")


def _check_values(
    checked: tuple[tuple[str, frozenset[type[Any]], Check], ...], fields: dict[str, Any]
) -> None:
    """Check the values present in ``fields``, in place; raise :class:`Mismatch`."""
    for name, passes, check in checked:
        value = fields.get(name, _MISSING)
        if value is not _MISSING and type(value) not in passes:
            fields[name] = _checked(name, check, value)


def _store(cls: type[M], plans: tuple[FieldPlan, ...], fields: dict[str, Any]) -> M:
    """A ``cls`` made by checking and storing every field (see :func:`_direct`)."""
    message: M = object.__new__(cls)
    for name, passes, check, setter in plans:
        value = fields[name]
        if type(value) not in passes and check is not None:
            value = _checked(name, check, value)
        setter(message, value)  # type: ignore[misc]  # not None: the spec is direct
    return message


def _checked(name: str, check: Check, value: Any) -> Any:
    try:
        return check(value)
    except Mismatch as m:
        raise m.inside(f".{name}") from None


# ----------------------------------------------------------------------------- checks


def _hint_name(hint: Any) -> str:
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__qualname__
    return repr(hint).replace("typing.", "")


def _compile(hint: Any) -> Check | None:
    """The check of values annotated ``hint``; ``None`` when anything goes."""
    if hint is Any or hint is object or isinstance(hint, typing.TypeVar):
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is None:
        return _compile_class(hint)
    if origin is Union or origin is types.UnionType:
        return _compile_union(hint, args)
    if origin is Literal:
        return _literal(hint, args)
    if origin is tuple:
        return _compile_tuple(hint, args)
    if origin is list:
        return _sequence(list, _hint_name(hint), _compile(args[0]) if args else None)
    if origin is dict:
        return _compile_dict(hint, args)
    if isinstance(origin, type):
        return _instance_of(origin, _hint_name(hint))
    return None


_NUMBERS: Final[dict[type[Any], tuple[type[Any], ...]]] = {
    bool: (bool, np.bool_),
    int: (int, np.integer),
    float: (float, int, np.floating, np.integer),
    complex: (complex, float, int, np.number),
}
_BOOLS: Final = (bool, np.bool_)


def _compile_class(hint: Any) -> Check | None:
    if hint is None or hint is type(None):
        return _literal(hint, (None,))
    if not isinstance(hint, type):  # NewType, an unresolved string ...: not checked
        return None
    if hint is tuple:
        return _sequence(tuple, "tuple", None)
    if hint in _NUMBERS:
        return _number(hint)
    if hint.__module__.startswith("torch"):  # tensors travel as arrays
        return _instance_of((hint, np.ndarray), _hint_name(hint))
    return _instance_of(hint, _hint_name(hint))


def _instance_of(accepted: type[Any] | tuple[type[Any], ...], name: str) -> Check:
    def check(value: Any) -> Any:
        if isinstance(value, accepted):
            return value
        raise Mismatch(name, tname(value))

    return _passes(check, accepted if isinstance(accepted, tuple) else (accepted,))


_PASSES: dict[Check, frozenset[type[Any]]] = {}


def _passes(check: Check, types: Iterable[type[Any]]) -> Check:
    """Note that ``check`` returns values of exactly these types unchanged.

    :func:`build` then skips the call for them: a ``type(v) in set`` test is
    several times cheaper than a call, and most values are of such a type.
    """
    _PASSES[check] = frozenset(types)
    return check


def _number(hint: type[Any]) -> Check:
    accepted, name, no_bool = _NUMBERS[hint], hint.__name__, hint is not bool
    exact = {t for t in accepted if t.__module__ == "builtins" and (t is bool or no_bool)}

    def check(value: Any) -> Any:
        if isinstance(value, accepted) and not (no_bool and isinstance(value, _BOOLS)):
            return value
        raise Mismatch(name, tname(value))

    return _passes(check, exact)


def _literal(hint: Any, allowed: tuple[Any, ...]) -> Check:
    name = "None" if allowed == (None,) else _hint_name(hint)

    def check(value: Any) -> Any:
        if any(type(value) is type(a) and value == a for a in allowed):
            return value
        raise Mismatch(name, repr(value) if len(repr(value)) < 40 else tname(value))

    return check


def _compile_union(hint: Any, args: tuple[Any, ...]) -> Check | None:
    optional = type(None) in args
    arms = [_compile(arm) for arm in args if arm is not type(None)]
    if any(arm is None for arm in arms):
        return None
    checks = [arm for arm in arms if arm is not None]
    name = _hint_name(hint)

    def check(value: Any) -> Any:
        if value is None and optional:
            return value
        for arm in checks:
            try:
                return arm(value)
            except Mismatch:
                continue
        raise Mismatch(name, tname(value))

    return check


def _compile_tuple(hint: Any, args: tuple[Any, ...]) -> Check:
    name = _hint_name(hint)
    if not args or args == ((),):
        return _sequence(tuple, name, None)
    if len(args) == 2 and args[1] is Ellipsis:
        return _sequence(tuple, name, _compile(args[0]))
    items = [_compile(arg) for arg in args]

    def check(value: Any) -> Any:
        if type(value) not in (list, tuple):
            raise Mismatch(name, tname(value))
        if len(value) != len(items):
            raise Mismatch(name, f"{tname(value)} of {len(value)} items")
        return tuple(_each(items, value))

    return check


def _sequence(
    kind: type[list[Any]] | type[tuple[Any, ...]], name: str, item: Check | None
) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not list and type(value) is not tuple:
            raise Mismatch(name, tname(value))
        if item is None:
            return value if type(value) is kind else kind(value)
        try:
            checked = [item(v) for v in value]
            return checked if kind is list else tuple(checked)
        except Mismatch:  # again, slowly, to say where
            return kind(_each(itertools.repeat(item), value))

    return check


def _each(checks: Iterable[Check | None], values: Iterable[Any]) -> list[Any]:
    out = []
    for i, (check, value) in enumerate(zip(checks, values, strict=False)):  # checks may repeat
        try:
            out.append(value if check is None else check(value))
        except Mismatch as m:
            raise m.inside(f"[{i}]") from None
    return out


def _compile_dict(hint: Any, args: tuple[Any, ...]) -> Check:
    name = _hint_name(hint)
    key_check, value_check = (_compile(args[0]), _compile(args[1])) if args else (None, None)
    keys, values = key_check or _same, value_check or _same

    def check(value: Any) -> Any:
        if type(value) is not dict:
            raise Mismatch(name, tname(value))
        if key_check is None and value_check is None:
            return value
        try:
            return {keys(k): values(v) for k, v in value.items()}
        except Mismatch:  # again, slowly, to say where
            return {
                _item(keys, k, f" key {k!r}"): _item(values, v, f"[{k!r}]")
                for k, v in value.items()
            }

    return check


def _same(value: Any) -> Any:
    return value


def _item(check: Check, value: Any, where: str) -> Any:
    try:
        return check(value)
    except Mismatch as m:
        raise m.inside(where) from None
