"""Declared settings: a dataclass field names its type (the annotation) and its allowed range
(`setting(...)`), and `check_fields` checks a mapping of values against them.

Every setting a user can give (config sections, a model's Params, suite entries) is declared
this way, so a bad value is reported in one line (key, value, what is allowed) before anything
is written.
"""
from __future__ import annotations

import dataclasses
import math
import reprlib
import types
import typing

from .errors import AvaeError

SEED = {"minimum": 0, "maximum": 2**32 - 1}  # every seed: numpy's legacy and scikit-learn's range
LATENT_DIM = {"minimum": 1, "maximum": 21201}  # scipy's Sobol sequences (the bandwidth) have at most 21,201 dimensions
KDE_SIZE = {"minimum": 2, "maximum": 10**7}  # m, the KDE set's size
_RULES = ("minimum", "above", "maximum", "below", "choices", "items", "length", "min_length")


def setting(default=dataclasses.MISSING, *, factory=None, **rules):
    """A dataclass field with its allowed range.

    rules: minimum/maximum (inclusive), above/below (exclusive), choices (a tuple), items (a dict
    of rules with a 'kind' for list elements), length and min_length (of a list).
    """
    unknown = set(rules) - set(_RULES)
    if unknown:
        raise TypeError(f"unknown setting rule(s) {sorted(unknown)}")
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"rules": rules})
    return dataclasses.field(default=default, metadata={"rules": rules})


def fields(cls) -> dict[str, tuple[type, dict]]:
    """{name: (annotated type, rules)} of a dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f.metadata.get("rules", {})) for f in dataclasses.fields(cls)}


def required(cls) -> list[str]:
    """Fields of a dataclass that have no default."""
    missing = dataclasses.MISSING
    return [f.name for f in dataclasses.fields(cls) if f.default is missing and f.default_factory is missing]


def check_fields(prefix: str, declared: dict[str, tuple[type, dict]], values: dict) -> dict:
    """`values` checked (integral floats become ints); keys must already be known."""
    return {key: check_value(f"{prefix}.{key}", value, *declared[key]) for key, value in values.items()}


def check_value(key: str, value, kind, rules: dict):
    kind, optional = _unwrap_optional(kind)
    if value is None and optional:
        return value
    ok, converted = _convert(value, kind, rules)
    if not ok or not _in_range(converted, rules):
        allowed = describe(kind, rules) + (" or null" if optional else "")
        raise AvaeError(f"{key} must be {allowed}, got {show(value)}")
    return converted


def _unwrap_optional(kind):
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(kind))
    return kind, False


def _convert(value, kind, rules) -> tuple[bool, object]:
    if isinstance(value, bool) or kind is bool:
        return kind is bool and isinstance(value, bool), value
    if kind is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return True, int(value)  # 1e4 in YAML is a float
        return isinstance(value, int), value
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value), value
    if kind is str:
        return isinstance(value, str), value
    if kind is dict:
        return isinstance(value, dict), value
    if kind is object:  # checked where it is used
        return True, value
    if kind is list:
        if not isinstance(value, (list, tuple)):
            return False, value
        item = dict(rules.get("items", {}))
        item_kind = item.pop("kind", object)
        converted = []
        for v in value:
            ok, v = _convert(v, item_kind, item) if item_kind is not object else (True, v)
            if not ok or not _in_range(v, item):
                return False, value
            converted.append(v)
        return True, converted
    raise TypeError(f"settings of type {kind} are not supported")


def _in_range(value, rules: dict) -> bool:
    checks = {
        "minimum": lambda bound: value >= bound,
        "above": lambda bound: value > bound,
        "maximum": lambda bound: value <= bound,
        "below": lambda bound: value < bound,
        "choices": lambda allowed: value in allowed,
        "length": lambda n: len(value) == n,
        "min_length": lambda n: len(value) >= n,
    }
    return all(checks[name](bound) for name, bound in rules.items() if name in checks)


def describe(kind, rules: dict) -> str:
    """What a setting allows, in words: 'an integer ≥ 1', 'one of float32, bfloat16'."""
    if "choices" in rules:
        return "one of " + ", ".join(str(c) for c in rules["choices"])
    if kind is list:
        item = dict(rules.get("items", {}))
        what = describe(item.pop("kind", object), item) if "kind" in rules.get("items", {}) else "values"
        count = f"{rules['length']} " if "length" in rules else ""
        return f"a {'non-empty ' if rules.get('min_length') else ''}list of {count}{_plural(what)}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping (key: value)",
             object: "any value"}
    bounds = [f"{sign} {_number(rules[name])}" for name, sign in (("minimum", "≥"), ("above", ">"), ("maximum", "≤"),
                                                           ("below", "<")) if name in rules]
    return " ".join([names[kind], " and ".join(bounds)]).strip()


def _number(bound) -> str:
    return f"{bound:,}" if isinstance(bound, int) else f"{bound:g}"


def _plural(what: str) -> str:
    for article in ("an ", "a "):
        if what.startswith(article):
            noun, _, rest = what[len(article):].partition(" ")
            return f"{noun}s {rest}".strip()
    return what


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxset = 3, 4, 6, 6, 6
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 60, 60, 40


def show(value) -> str:
    """A value in an error message: at most 60 characters, built in bounded time whatever its size."""
    text = _SHORT.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
