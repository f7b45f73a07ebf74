"""The decision request, generated from the served feature set's event schema (issue #20).

``POST /v1/decisions`` takes one event of ``FeatureSet.schema`` (the set named
by ``RTML_DECISION_FEATURE_SET``): its body model is
:func:`rtml_common.schema_models.event_model` of that schema, built when the app
is, so the API validates exactly what the schema's topic carries — unknown
fields, wrong types (``"12.5"`` for a number, ``1`` for a boolean),
out-of-bounds numbers and strings, and a value outside a categorical field's
declared set are precise 422s naming the field. For the handbook's
``transaction`` schema that model *is* :class:`rtml_common.events.Transaction`
(generated from the same declaration), so the API accepts and refuses what it
always did.

OpenAPI shows examples generated from the schema (:func:`generated_examples`:
one request with every field, one with the required fields only, each value
valid for its field's type, bounds and categories), except for the handbook's
schema, whose hand-picked examples stay (:data:`TRANSACTION_EXAMPLES`).

Features are computed at request time for any set: the handbook's classic sets
from their prefix logs, every other set from the generic layout
(:func:`generic_path`, :mod:`rtml_decision.generic_request`). :func:`check_servable`
refuses, with the reason, a set neither can compute.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import Body

from rtml_common.events import Event, Transaction
from rtml_common.handbook import TRANSACTION_SCHEMA
from rtml_common.schema import EventSchema, Field, FieldType
from rtml_common.schema_models import allowed_categories, event_model, integer_bounds
from rtml_decision.schemas import TRANSACTION_EXAMPLES
from rtml_features.definitions import FeatureSet, UnsupportedDefinition

#: The instant generated examples carry (a time the handbook's data covers).
EXAMPLE_TIME = "2018-04-01T12:34:56Z"


class UnservableFeatureSet(ValueError):
    """The decision API cannot serve this feature set yet; the message says why."""


def request_model(schema: EventSchema) -> type[Event]:
    """The strict request body of ``schema`` (one class per schema): for the handbook's,
    :class:`rtml_common.events.Transaction` itself."""
    if schema == TRANSACTION_SCHEMA:
        return Transaction
    return event_model(schema)


def request_examples(schema: EventSchema) -> dict[str, dict[str, Any]]:
    """OpenAPI examples of the request: the handbook's hand-picked ones for its schema,
    else :func:`generated_examples`."""
    if schema == TRANSACTION_SCHEMA:
        return TRANSACTION_EXAMPLES
    return generated_examples(schema)


def request_body(schema: EventSchema) -> Any:
    """The annotation of the route's body parameter: the model with its examples."""
    examples: Any = request_examples(schema)  # FastAPI's Example: the same plain dicts
    return Annotated[request_model(schema), Body(openapi_examples=examples)]


def generated_examples(schema: EventSchema) -> dict[str, dict[str, Any]]:
    """Two valid requests of ``schema``: every field set, and the required fields only
    (the second left out when no field is optional)."""
    full = {f.name: example_value(f, schema) for f in schema.fields}
    examples = {"complete": {"summary": f"A {schema.name} with every declared field",
                             "value": full}}
    required = {f.name: full[f.name] for f in schema.fields if f.required}
    if len(required) < len(full):
        examples["required_only"] = {
            "summary": f"A {schema.name} with the required fields only",
            "value": required}
    return examples


def example_value(field: Field, schema: EventSchema) -> Any:
    """A value of ``field`` its declaration accepts (type, bounds, categories)."""
    kind = field.type
    if field.default is not None:
        return field.default
    if kind is FieldType.TIMESTAMP:
        return EXAMPLE_TIME
    if kind is FieldType.BOOLEAN:
        return False
    if kind is FieldType.STRING:
        if field.categories is not None:
            return allowed_categories(field)[0]
        return _example_string(field, schema)
    if kind is FieldType.INTEGER:
        low, high = integer_bounds(field)
        return int(_in_bounds(42, low, high, integer=True))
    return _in_bounds(57.16, field.minimum, field.maximum, integer=False)


def _in_bounds(preferred: float, low: float | None, high: float | None, *,
               integer: bool) -> float:
    """``preferred`` if the bounds allow it, else a value inside them."""
    if (low is None or preferred >= low) and (high is None or preferred <= high):
        return preferred
    if low is not None and high is not None:
        middle = (low + high) / 2
        return math.floor(middle) if integer and math.floor(middle) >= low else middle
    if low is not None:
        return low
    assert high is not None
    return high


def _example_string(field: Field, schema: EventSchema) -> str:
    """An id-like value (``customer_id-1``, ``d-1``) within the length bounds (a short
    code, ``CO`` for a two-letter ``country``, when that is all they allow)."""
    text = f"{field.name}-1" if field.name in (schema.id_field, schema.partition_key) \
        else f"{field.name[:1]}-1"
    low = field.min_length
    high = field.max_length
    if high is not None and len(text) > high:
        text = field.name.replace("_", "").upper()[:high]
    if low is not None and len(text) < low:
        text = text + "x" * (low - len(text))
    return text


def generic_path(feature_set: FeatureSet) -> bool:
    """Whether requests of ``feature_set`` take the generic request path
    (:mod:`rtml_decision.generic_request`): every set but the classic ones over the
    handbook's schema, which keep their tuned prefix-log path.

    The feature pipeline decides its layout the same way
    (``rtml_feature_pipeline.generic_path.uses_classic_path``: a classic set over the
    handbook's schema whose vector plan compiles writes prefix logs, any other the
    generic layout), so the service reads the layout the pipeline writes.
    """
    if not (feature_set.classic and feature_set.schema == TRANSACTION_SCHEMA):
        return True
    from rtml_features.vector_plan import VectorPlan

    try:
        VectorPlan(feature_set)
    except (UnsupportedDefinition, KeyError, ValueError):
        return True
    return False


def check_servable(feature_set: FeatureSet) -> None:
    """Refuse, saying why, a set whose features the API cannot compute at request time.

    Classic sets over the handbook's schema are served from the prefix logs; every
    other set from the generic layout (:func:`generic_path`), whose request-time
    engine (:class:`~rtml_features.request_generic.GenericRequestVectors`) and reads
    are built here once so a definition they cannot serve stops the service at
    start-up with the reason, not at the first request.
    """
    if not generic_path(feature_set):
        return
    from rtml_features.online_store.redis.generic_layout import generic_spec
    from rtml_features.request_generic import GenericRequestVectors

    try:
        for entity in feature_set.entities:
            generic_spec(feature_set, entity)
        GenericRequestVectors(feature_set)
    except (UnsupportedDefinition, ValueError, KeyError) as error:
        raise UnservableFeatureSet(
            f"feature set {feature_set.name!r} cannot be served (RTML_DECISION_FEATURE_SET): "
            f"the generic request-time layout cannot compute it: {error}") from None
