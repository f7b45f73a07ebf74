"""The rules DSL's static types, the standard input schema and the error types.

Four value kinds: ``number`` (int or float — the DSL does not distinguish),
``bool``, ``str`` and, for UDF parameters only, ``list`` (a named list
resolved at load) and ``any``. A trailing ``?`` marks a value that may be
missing (``None``): the model ``score`` when the model is unavailable, a
terminal id a payment did not carry, a division by zero. The type checker
tracks optionality so the compiled code only pays for a ``None`` check where
one can actually occur.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The 15 baseline feature names (``rtml_features.baseline.BASELINE.names``).
#: Kept literal so the decision service does not import the feature library
#: for a list of names; a test asserts the two agree.
BASELINE_FEATURES: tuple[str, ...] = (
    "tx_amount",
    "tx_during_weekend",
    "tx_during_night",
    "customer_id_nb_tx_1day_window",
    "customer_id_avg_amount_1day_window",
    "customer_id_nb_tx_7day_window",
    "customer_id_avg_amount_7day_window",
    "customer_id_nb_tx_30day_window",
    "customer_id_avg_amount_30day_window",
    "terminal_id_nb_tx_1day_window",
    "terminal_id_risk_1day_window",
    "terminal_id_nb_tx_7day_window",
    "terminal_id_risk_7day_window",
    "terminal_id_nb_tx_30day_window",
    "terminal_id_risk_30day_window",
)


class RuleSetError(ValueError):
    """A rule set is invalid; the message names the file, line, rule or test and why."""


class ExpressionError(ValueError):
    """An expression is invalid; ``col`` is the 0-based column of the offending construct."""

    def __init__(self, message: str, col: int | None = None) -> None:
        super().__init__(message)
        self.col = col


class MissingInputError(ValueError):
    """An evaluation context lacks required inputs (or holds ``None`` for them)."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__("missing required rule inputs: " + ", ".join(missing))
        self.missing = missing


@dataclass(frozen=True, slots=True)
class Type:
    """A static type: a kind and whether the value may be ``None``.

    ``categories``: a ``str`` value from a categorical request field (its declared
    values): comparing it with a string literal outside them is refused at load.
    """

    kind: str
    optional: bool = False
    categories: tuple[str, ...] | None = None

    def __str__(self) -> str:
        return self.kind + ("?" if self.optional else "")

    def as_optional(self, optional: bool = True) -> Type:
        if optional == self.optional:
            return self
        return Type(self.kind, optional, self.categories)


NUMBER = Type("number")
BOOL = Type("bool")
STR = Type("str")
ANY = Type("any")
#: A UDF parameter that takes a named list (a string literal resolved at load).
LIST = Type("list")
#: A UDF parameter whose type must match the element type of the ``list`` argument.
ELEM = Type("elem")

KINDS = {"number": "number", "float": "number", "int": "number", "bool": "bool",
         "str": "str", "any": "any", "list": "list", "elem": "elem"}


def parse_type(text: str) -> Type:
    """``"number"``, ``"float?"``, ``"str"``, ... -> :class:`Type` (``int``/``float`` = number)."""
    spec = str(text).strip()
    optional = spec.endswith("?")
    kind = KINDS.get(spec.rstrip("?").strip())
    if kind is None:
        known = ", ".join(sorted(KINDS))
        raise ValueError(f"unknown type {text!r}; known: {known} (append ? for optional)")
    return Type(kind, optional)


def standard_inputs() -> dict[str, Type]:
    """The inputs every rule set may read without declaring them.

    The 15 baseline features (numbers; the feature store answers 0 for an
    empty window, so they are never missing), the model ``score`` (missing
    when no model answered), and the request fields.
    """
    inputs = {name: NUMBER for name in BASELINE_FEATURES}
    inputs.update(
        score=NUMBER.as_optional(),
        amount=NUMBER,
        hour=NUMBER,
        is_weekend=BOOL,
        customer_id=STR,
        terminal_id=STR.as_optional(),
    )
    return inputs
