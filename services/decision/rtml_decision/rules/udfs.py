"""User-defined functions (UDFs): the only calls a rule expression may make.

A UDF is a plain Python function registered in code with its parameter and
return types, so the rule set loader can check every call (name, arity,
argument types) before a rule set goes live. Rule files cannot define code;
they can only call what the service registered.

``None`` handling: a parameter typed optional (``"number?"``, ``"any?"``)
receives ``None`` as is; for any other parameter a ``None`` argument (e.g.
``abs(score)`` without a model score) makes the call return ``None`` without
calling the function — comparisons with ``None`` are
false, so the rule simply does not fire. An exception raised by a UDF at
evaluation time makes its rule count as not fired and is reported in
:attr:`RuleResult.errors`; it never fails the request.

>>> udfs = default_udfs()
>>> @udfs.udf(arg_types=("number",), return_type="number", doc="Twice x.")
... def double(x: float) -> float:
...     return 2 * x
>>> udfs.get("double").arity
1
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rtml_decision.rules.types import Type, parse_type

UdfFunc = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Udf:
    """A registered function with its signature."""

    name: str
    func: UdfFunc
    arg_types: tuple[Type, ...]
    return_type: Type
    doc: str
    #: The last parameter repeats (``min(a, b, c)``); the call needs at least ``len(arg_types)``.
    variadic: bool = False

    @property
    def arity(self) -> int:
        return len(self.arg_types)

    def signature(self) -> str:
        args = ", ".join(str(t) for t in self.arg_types) + (", ..." if self.variadic else "")
        return f"{self.name}({args}) -> {self.return_type}"


class UdfRegistry:
    """Named UDFs and named lists (for ``in_list``) available to rule sets."""

    def __init__(self) -> None:
        self._udfs: dict[str, Udf] = {}
        self._lists: dict[str, frozenset[object]] = {}

    def register(self, name: str, func: UdfFunc, arg_types: Iterable[str | Type],
                 return_type: str | Type, doc: str = "", *, variadic: bool = False) -> Udf:
        """Register ``func`` as ``name``; types are strings like ``"number"`` or ``"str?"``."""
        if not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"UDF name {name!r} must be an identifier not starting with _")
        if name in self._udfs:
            raise ValueError(f"UDF {name!r} is already registered")
        types = tuple(t if isinstance(t, Type) else parse_type(t) for t in arg_types)
        ret = return_type if isinstance(return_type, Type) else parse_type(return_type)
        if ret.kind in ("list", "elem", "any"):
            raise ValueError(f"UDF {name!r}: return type must be number, bool or str")
        if variadic and not types:
            raise ValueError(f"UDF {name!r}: a variadic UDF needs at least one parameter")
        kinds = [t.kind for t in types]
        if "elem" in kinds and "list" not in kinds:
            raise ValueError(f"UDF {name!r}: an elem parameter needs a list parameter")
        udf = Udf(name, func, types, ret, doc or (func.__doc__ or "").strip(), variadic)
        self._udfs[name] = udf
        return udf

    def udf(self, arg_types: Iterable[str | Type], return_type: str | Type, doc: str = "",
            *, name: str | None = None,
            variadic: bool = False) -> Callable[[UdfFunc], UdfFunc]:
        """Decorator form of :meth:`register` (the name defaults to the function's)."""

        def decorate(func: UdfFunc) -> UdfFunc:
            self.register(name or func.__name__, func, arg_types, return_type, doc,
                          variadic=variadic)
            return func

        return decorate

    def register_list(self, name: str, values: Iterable[object]) -> None:
        """A named list rule files can test membership of with ``in_list("name", x)``.

        Lists in a rule file's ``lists:`` section shadow code-registered ones.
        """
        self._lists[name] = frozenset(values)

    def get(self, name: str) -> Udf | None:
        return self._udfs.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self._udfs)

    @property
    def lists(self) -> Mapping[str, frozenset[object]]:
        return self._lists

    def copy(self) -> UdfRegistry:
        clone = UdfRegistry()
        clone._udfs = dict(self._udfs)
        clone._lists = dict(self._lists)
        return clone

    def describe(self) -> list[dict[str, str]]:
        """Name, signature and doc of every UDF (for docs and the admin API)."""
        return [{"name": u.name, "signature": u.signature(), "doc": u.doc}
                for u in sorted(self._udfs.values(), key=lambda u: u.name)]


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def _velocity(short_count: float, short_days: float, long_count: float,
              long_days: float) -> float:
    if not short_days or not long_days or not long_count:
        return 0.0
    return (short_count / short_days) / (long_count / long_days)


def _between(x: float, low: float, high: float) -> bool:
    return bool(low <= x <= high)


def _in_list(values: frozenset[object], value: object) -> bool:
    return value in values


def _has(value: object) -> bool:
    return value is not None


def _coalesce(value: object, default: object) -> object:
    return default if value is None else value


def default_udfs() -> UdfRegistry:
    """A fresh registry with the built-in UDFs (add your own to the copy it returns)."""
    udfs = UdfRegistry()
    udfs.register("has", _has, ["any?"], "bool",
                  "True when the value is present (e.g. has(score): a model answered).")
    udfs.register("coalesce", _coalesce, ["number?", "number"], "number",
                  "The value, or the default when it is missing: coalesce(score, 0.5).")
    udfs.register("in_list", _in_list, ["list", "elem"], "bool",
                  'Membership of a named list: in_list("deny_terminals", terminal_id).')
    udfs.register("ratio", _ratio, ["number", "number"], "number",
                  "a / b, or 0 when b is 0: ratio(amount, customer_id_avg_amount_30day_window).")
    udfs.register("velocity", _velocity, ["number", "number", "number", "number"], "number",
                  "Rate over a short window relative to a long one: velocity(n_1d, 1, n_30d, 30)"
                  " = (n_1d / 1) / (n_30d / 30); 0 when a count or window is 0.")
    udfs.register("between", _between, ["number", "number", "number"], "bool",
                  "low <= x <= high: between(hour, 0, 5).")
    udfs.register("min", min, ["number", "number"], "number", "The smallest argument.",
                  variadic=True)
    udfs.register("max", max, ["number", "number"], "number", "The largest argument.",
                  variadic=True)
    udfs.register("abs", abs, ["number"], "number", "Absolute value.")
    return udfs
