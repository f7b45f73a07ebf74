"""Options of the traffic source, from the command line or ``RTML_TRAFFIC_*`` variables.

One settings class in the project's style (:class:`rtml_common.service_config.ServiceSettings`:
strict, immutable, unknown variables refused): the command-line options
override the environment, which overrides the defaults. Kafka's connection
comes from :class:`rtml_common.config.KafkaSettings` (``RTML_KAFKA_*``) unless
``--bootstrap-servers`` is given.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from rtml_common.service_config import ServiceSettings

ENV_PREFIX = "RTML_TRAFFIC_"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class TrafficSettings(ServiceSettings):
    """What to send, where, how fast (each field is also ``RTML_TRAFFIC_<NAME>``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    api_url: str = Field(default="http://127.0.0.1:8080",
                         description="Base URL of the decision API.")
    rate: float = Field(default=50.0, gt=0, le=100_000,
                        description="Requests per second, sent open loop.")
    speed: float = Field(default=3600.0, gt=0, le=1e9,
                         description="Event time runs this many times faster than wall time.")
    event_times: Literal["now", "data"] = Field(
        default="now",
        description="now: event times mapped onto the wall clock, the last ones at now; "
                    "data: the data set's own times, continuing a history replayed before "
                    "--start-day (customers arrive with their past)")
    data: Path = Field(default=Path("data/simulator"),
                       description="Simulator data set directory (transactions.parquet).")
    start_day: int = Field(default=0, ge=0, description="First day of the data set to send.")
    duration_s: float | None = Field(default=None, gt=0,
                                     description="Stop after this many seconds (default: at "
                                                 "the end of the data, or Ctrl-C / SIGTERM).")
    label_delay_s: float | None = Field(
        default=None, ge=0,
        description="Wall-clock delay of a label after its payment; default: the data set's "
                    "label delay (7 event-days) divided by the speed.")
    flush_pending_labels: bool = Field(
        default=False,
        description="At the stop, produce the labels not yet due (with their own labeled_at) "
                    "instead of counting them as pending.")
    labels_topic: str = Field(default="labels", min_length=1, description="Topic of the labels.")
    max_in_flight: int = Field(default=256, ge=1, le=10_000,
                               description="Requests awaiting an answer at most; a send that "
                                           "finds them all busy waits and counts as behind "
                                           "schedule.")
    request_timeout_s: float = Field(default=10.0, gt=0, le=300,
                                     description="Time limit of one request.")
    connect_wait_s: float = Field(default=30.0, ge=0, le=3600,
                                  description="How long to wait for the API (GET /healthz) and "
                                              "the Kafka broker at start.")
    progress_s: float = Field(default=5.0, gt=0, description="Seconds between progress lines.")
    max_event_age_s: float | None = Field(
        default=None, gt=0,
        description="The API's RTML_DECISION_MAX_EVENT_AGE_S, when it sets one: a run whose "
                    "first event time would be older is refused before it starts.")
    run_id: str | None = Field(
        default=None,
        description="Prefix of the transaction ids (default: traffic-<UTC time>-<random>), so "
                    "runs never reuse an id.")

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, value: str | None) -> str | None:
        if value is not None and _RUN_ID.fullmatch(value) is None:
            raise ValueError("1 to 64 letters, digits, '.', '_' or '-', starting with a "
                             "letter or digit")
        return value
