"""What a rule set may read: the served request's declared fields and feature set.

The decision API serves one feature set (``RTML_DECISION_FEATURE_SET``) over its
event schema (issue #20). A rule set uploaded to it may read, without declaring
them, every field that schema declares, every feature of that set, the model
``score`` and the two values derived from the event time (``hour``,
``is_weekend``), each with the type the declaration implies:

* ``number`` / ``integer`` fields and every feature: ``number`` (a feature is
  never missing: an empty window has its ``empty`` value);
* ``boolean`` fields: ``bool``;
* ``string`` fields: ``str``; a categorical one carries its categories, so
  ``channel == "wbe"`` (or ``"wbe"`` in a list literal or a named list) is
  refused at load naming the allowed values;
* an optional field without a default may be missing (``str?``...), one with a
  default never is;
* ``timestamp`` fields cannot be read (a rule reads ``hour`` / ``is_weekend``):
  naming one is refused with that reason.

:class:`RuleInputs` is plain, picklable data: the rule worker process receives
it with the text it validates.

>>> from rtml_common.schema import EventSchema, Field, FieldType
>>> schema = EventSchema(name="refund", topic="refunds", id_field="id", event_time="at",
...                      partition_key="card",
...                      fields=[Field("id", FieldType.STRING), Field("at", FieldType.TIMESTAMP),
...                              Field("card", FieldType.STRING),
...                              Field("channel", FieldType.STRING, categories=("web", "pos"))])
>>> env = request_inputs(schema, ["card_refunds_1d"], "refunds")
>>> env.types["channel"].categories, str(env.types["card_refunds_1d"])
(('web', 'pos'), 'number')
>>> env.unreadable["at"]
"'at' is the request's timestamp field; rules read hour and is_weekend (UTC) of the event time"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rtml_common.schema import EventSchema, Field, FieldType
from rtml_decision.rules.types import BOOL, NUMBER, STR, Type, standard_inputs

#: Inputs every served request has besides its fields and features.
SCORE = "score"
DERIVED: dict[str, tuple[Type, str]] = {
    "hour": (NUMBER, "UTC hour of the event time, 0-23"),
    "is_weekend": (BOOL, "the event time falls on a Saturday or Sunday (UTC)"),
}


class InputsError(ValueError):
    """A schema and feature set whose names would give one rule input two meanings."""


@dataclass(frozen=True)
class RuleInputs:
    """The names a rule set reads without declaring them, and their types.

    ``declared``: names whose type the request schema or the feature set fixes
    (a rule file's ``inputs:`` may repeat them with the same kind, not change
    it); ``unreadable``: names a rule may not read, with the reason; ``scope``:
    what the names come from, for messages.
    """

    types: Mapping[str, Type]
    declared: frozenset[str] = frozenset()
    unreadable: Mapping[str, str] = field(default_factory=dict)
    scope: str = "the standard inputs"
    #: Request fields (declared, readable) in schema order: what the service puts in
    #: each evaluation context from the request.
    fields: tuple[str, ...] = ()
    features: tuple[str, ...] = ()

    def describe(self) -> dict[str, str]:
        """Name -> type (``str`` fields list their categories), for docs and errors."""
        return {name: (f"{t} of {', '.join(t.categories)}" if t.categories else str(t))
                for name, t in self.types.items()}


def standard() -> RuleInputs:
    """The legacy standard inputs (the handbook's request and the 15 baseline features)
    with nothing locked: what a rule set is checked against when no schema is given."""
    return RuleInputs(standard_inputs())


def field_type(declared: Field) -> Type | None:
    """The rule type of a request field; None for a timestamp (not readable)."""
    kind = declared.type
    if kind is FieldType.TIMESTAMP:
        return None
    if kind is FieldType.STRING:
        base = Type(STR.kind, categories=declared.categories)
    elif kind is FieldType.BOOLEAN:
        base = BOOL
    else:
        base = NUMBER
    return base.as_optional(not declared.required and declared.default is None)


def request_inputs(schema: EventSchema, features: Sequence[str],
                   feature_set: str) -> RuleInputs:
    """The inputs of requests of ``schema`` served with the features ``features``
    (the names of feature set ``feature_set``); :class:`InputsError` on a clash."""
    scope = f"request schema {schema.name!r} and feature set {feature_set!r}"
    types: dict[str, Type] = {SCORE: NUMBER.as_optional()}
    unreadable: dict[str, str] = {}
    fields: list[str] = []
    for name, (type_, _) in DERIVED.items():
        types[name] = type_
    for declared in schema.fields:
        if declared.name in types:
            what = "the model score" if declared.name == SCORE else DERIVED[declared.name][1]
            raise InputsError(f"{scope}: field {declared.name!r} has the name of a rule "
                              f"input the service computes ({what}); rename the field")
        readable = field_type(declared)
        if readable is None:
            unreadable[declared.name] = (
                f"{declared.name!r} is the request's timestamp field; rules read hour and "
                "is_weekend (UTC) of the event time" if declared.name == schema.event_time
                else f"{declared.name!r} is a timestamp field of the request; rules cannot "
                     "read timestamps")
            continue
        types[declared.name] = readable
        fields.append(declared.name)
    for name in features:
        if name in types or name in unreadable:
            raise InputsError(f"{scope}: feature {name!r} has the name of a request field or "
                              "of a rule input the service computes; rename the feature")
        types[name] = NUMBER
    return RuleInputs(types, frozenset(types), unreadable, scope, tuple(fields),
                      tuple(features))
