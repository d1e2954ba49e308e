"""Strict construction of dataclasses from plain mappings: unknown keys rejected with a suggestion, types checked.

Used for every config a user writes (YAML files, `--set` overrides, a run's saved config.yaml).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import textwrap
import types
import typing
from typing import Any, Literal

from tinylm.errors import UsageError


def field_names(cls: type) -> list[str]:
    """The public field names of a dataclass."""
    return [f.name for f in dataclasses.fields(cls) if f.init]


def suggest(key: str, allowed: list[str]) -> str:
    """' (did you mean X?)' for the closest allowed key, or ''."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_key_error(key: str, allowed: list[str], where: str) -> UsageError:
    """The error for a key that is not a field."""
    return UsageError(f"unknown key '{key}' in {where}{suggest(key, allowed)}; allowed: {', '.join(sorted(allowed))}")


def unknown_name_error(kind: str, name: str, known: list[str]) -> UsageError:
    """The error for a name that is not registered (a model, a profile, ...), listing the known ones."""
    return UsageError(f"unknown {kind} '{name}'{suggest(name, known)}; choose one of: {', '.join(known)}")


def _coerce_union(value: Any, hint: Any, where: str) -> Any:
    options = typing.get_args(hint)
    if value is None and type(None) in options:
        return None
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return coerce(value, option, where)
        except UsageError as e:
            errors.append(str(e))
    raise UsageError(errors[0] if errors else f"{where} cannot be null")


def _coerce_scalar(value: Any, hint: Any, where: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise UsageError(f"{where} must be true or false (got {value!r})")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UsageError(f"{where} must be an integer (got {value!r})")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise UsageError(f"{where} must be a number (got {value!r})")
    if hint is str:
        if isinstance(value, str):
            return value
        raise UsageError(f"{where} must be a string (got {value!r})")
    if hint is Any:
        return value
    raise TypeError(f"unsupported config type {hint!r}")


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a type hint, converting the lossless cases (int -> float, '1e-3' -> float)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, hint, where)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise UsageError(f"{where} must be one of {', '.join(map(str, choices))} (got {value!r})")
        return value
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(hint) or (Any,)
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    return _coerce_scalar(value, hint, where)


def from_dict(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build dataclass `cls` from `values`, rejecting unknown keys and values of the wrong type."""
    if not isinstance(values, dict):
        raise UsageError(f"{where} must be a mapping of keys to values (got {values!r})")
    hints = typing.get_type_hints(cls)
    allowed = field_names(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in allowed:
            raise unknown_key_error(str(key), allowed, where)
        kwargs[key] = coerce(value, hints[key], f"{where}.{key}")
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as a plain dict (for YAML/JSON)."""
    return dataclasses.asdict(obj)


def field_docs(cls: type) -> dict[str, str]:
    """{field: its attribute docstring} of a dataclass and its bases (the string literal under each field)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # no source (e.g. a frozen build): no help texts
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs
