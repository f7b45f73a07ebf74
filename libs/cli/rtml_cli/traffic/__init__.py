"""Live traffic source: simulated payments to the decision API, their labels to Kafka.

``python -m rtml_cli.traffic`` (or ``rtml traffic``) reads a simulator data
set, sends its payments to ``POST /v1/decisions`` open loop at a chosen rate
with event times mapped near the wall clock, and produces each accepted
payment's fraud label to the ``labels`` topic once its (scaled) delay has
passed, so a local platform sees transactions and labels flow as in
production. How it maps time, paces and stops: ``README.md`` next to this file.
"""
