"""The one place that names every topic, its event type and its partition key.

Keys decide co-partitioning: ``transactions``, ``labels`` and ``features`` are
all keyed by customer id so a worker that owns partition *p* of one owns the
same customers in the others, and per-customer state never crosses workers.

Every consumed topic has a dead-letter twin ``<topic>.dlq`` that receives the
original bytes of records that could not be processed (see
:mod:`rtml_common.kafka.dead_letter`).

>>> TOPICS["transactions"].key_of(Transaction.model_validate({
...     "transaction_id": "1", "event_time": "2018-04-01T00:00:00Z",
...     "customer_id": "c9", "amount": 1.0}))
b'c9'
>>> dead_letter_topic("transactions")
'transactions.dlq'
"""

from __future__ import annotations

from dataclasses import dataclass

from rtml_common.events import (
    Decision,
    DriftAlert,
    Event,
    FeatureVector,
    Label,
    ModelEvent,
    Prediction,
    RetrainRequest,
    ShadowScore,
    Transaction,
)

DEAD_LETTER_SUFFIX = ".dlq"
#: Events that arrived later than a consumer's allowed lateness (not errors: kept for audit).
LATE_SUFFIX = ".late"


@dataclass(frozen=True)
class TopicSpec:
    """A topic's contract: name, the event it carries and the field it is keyed by."""

    name: str
    event_type: type[Event]
    key_field: str
    default_partitions: int
    description: str
    #: Whether services consume it (and so it gets a dead-letter twin).
    consumed: bool = True

    def key_of(self, event: Event) -> bytes:
        """The partition key of ``event`` as bytes (UTF-8 of the key field)."""
        value = getattr(event, self.key_field)
        if value is None:
            raise ValueError(f"{self.name}: key field {self.key_field!r} is empty")
        return str(value).encode()

    @property
    def dead_letter(self) -> str:
        return dead_letter_topic(self.name)


def dead_letter_topic(topic: str) -> str:
    """Name of the dead-letter topic for ``topic``."""
    return topic + DEAD_LETTER_SUFFIX


def late_topic(topic: str) -> str:
    """Name of the topic receiving records of ``topic`` that arrived too late to apply."""
    return topic + LATE_SUFFIX


#: Topics whose consumers apply event-time windows and so may find events too late.
WINDOWED_TOPICS = ("transactions",)


_SPECS = [
    TopicSpec("transactions", Transaction, "customer_id", 4, "Card payments as they happen."),
    TopicSpec("labels", Label, "customer_id", 4, "Fraud tags, arriving later than payments."),
    TopicSpec("features", FeatureVector, "customer_id", 4, "Transactions with feature vectors."),
    TopicSpec("predictions", Prediction, "customer_id", 4, "Champion scores."),
    TopicSpec("shadow-scores", ShadowScore, "customer_id", 4, "Shadow (challenger) scores."),
    TopicSpec("decisions", Decision, "customer_id", 4, "Decisions returned by the API."),
    TopicSpec("drift-alerts", DriftAlert, "subject", 1, "Distribution drift alerts."),
    TopicSpec("retrain-requests", RetrainRequest, "model_name", 1, "Requests for a new model."),
    TopicSpec("model-events", ModelEvent, "model_name", 1, "Registry changes (aliases)."),
]

#: Topic name -> spec, for every data topic (dead-letter topics excluded).
TOPICS: dict[str, TopicSpec] = {spec.name: spec for spec in _SPECS}


def all_topic_names(include_dead_letters: bool = True) -> list[str]:
    """Every topic the platform uses, in a stable order (for stack set-up).

    ``include_dead_letters`` adds the dead-letter and late-event topics.
    """
    names = [spec.name for spec in _SPECS]
    if include_dead_letters:
        names += [spec.dead_letter for spec in _SPECS if spec.consumed]
        names += [late_topic(topic) for topic in WINDOWED_TOPICS]
    return names


def spec_for(topic: str) -> TopicSpec:
    """The spec of a data topic, with a precise error for an unknown name."""
    try:
        return TOPICS[topic]
    except KeyError:
        known = ", ".join(sorted(TOPICS))
        raise KeyError(f"unknown topic {topic!r}; known topics: {known}") from None


def spec_for_event(event_type: type[Event]) -> TopicSpec:
    """The topic that carries ``event_type``."""
    for spec in _SPECS:
        if spec.event_type is event_type:
            return spec
    raise KeyError(f"no topic carries {event_type.__name__}")
