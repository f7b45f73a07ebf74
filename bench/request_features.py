"""Request-time features from the Redis prefix logs: writer cost and the hot-key bound.

    python bench/request_features.py                 # 1,000,000-event hot entity,
                                                     # writes docs/benchmarks.md section
    python bench/request_features.py --quick --json  # 100,000 events, fewer requests,
                                                     # one JSON object on the last line

Against a real redis-server started here (the same cores run Redis and this
process). Three figures:

* **writer** — the pipeline's side: Python µs per appended event
  (:class:`EntityLogState.add_event` + building and sending the batch's
  script calls, ``time.process_time``) and Redis CPU per event (``INFO cpu``
  user + sys delta), for batches of 1,000 entities with one event each (what a
  streaming batch writes), with the handbook-like spec (sums only) and with a
  min / max field (sparse tables).
* **load** — the hot entity's 1,000,000 events in 30 days (plus 0.5 % fraud
  labels known 1-10 days later, those known before the requests' day), appended
  through the same writer in batches
  of 20,000 members: pipelined bulk script calls.
* **requests** — requests at random times in the last day of the log, for the
  hot entity and a quiet one (30 events in 30 days) of the same feature set
  (count / sum / mean over 1, 7, 30 days, max over 7 days, label-delayed
  fraud count and risk over 30 days with a 7-day delay): bytes Redis sends per
  request (``INFO stats`` ``total_net_output_bytes``), Redis CPU per request
  (``INFO cpu``) and the script's own time (``INFO commandstats``), and
  Python CPU per request (building the read, parsing it,
  :meth:`RequestVectors.compute`): the median over batches of 50 requests,
  hot and quiet batches alternating (the machine's other load weighs on both
  alike), what the INFO snapshots cost measured alone and subtracted. The
  target: hot / quiet <= 2 for each.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
from benchlib import machine, write_section

from rtml_features.definitions import Agg, Entity, FeatureSet, Ratio, WindowAggregate
from rtml_features.online_store.redis.prefix_reader import READ_SCRIPT, PrefixLogReader
from rtml_features.online_store.redis.prefix_writer import EntityLogState, PrefixLogWriter
from rtml_features.request_vector import EntityLogSpec, RequestVectors, log_spec
from rtml_localstack.testing import RedisServer

SECTION = "## Request-time features: prefix logs and the hot key"
TARGET_RATIO = 2.0
DAY_MS = 86_400_000
TTL_S = 40 * 86_400
MERCHANT = Entity("terminal", key="terminal_id")


def feature_set() -> FeatureSet:
    day = timedelta(days=1)
    frauds = WindowAggregate("m_frauds_30d", MERCHANT, Agg.SUM, 30 * day, field="is_fraud",
                             label_delay=7 * day)
    delayed = WindowAggregate("m_n_30d_d7", MERCHANT, Agg.COUNT, 30 * day, label_delay=7 * day)
    features: list[Any] = [delayed, frauds, Ratio("m_risk_30d", frauds, delayed),
                           WindowAggregate("m_max_7d", MERCHANT, Agg.MAX, 7 * day,
                                           field="amount")]
    for days in (1, 7, 30):
        features += [
            WindowAggregate(f"m_n_{days}d", MERCHANT, Agg.COUNT, days * day),
            WindowAggregate(f"m_sum_{days}d", MERCHANT, Agg.SUM, days * day, field="amount"),
            WindowAggregate(f"m_mean_{days}d", MERCHANT, Agg.MEAN, days * day, field="amount"),
        ]
    return FeatureSet("hot-key-bench", features)


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def bench_writer(client: redis.Redis, fs: FeatureSet, spec: EntityLogSpec, label: str,
                 entities: int, rounds: int) -> dict[str, Any]:
    """Batches of ``entities`` entities, one appended event each, ``rounds`` times."""
    writer = PrefixLogWriter(client, fs, TTL_S)
    rng = random.Random(1)
    states = [(MERCHANT.name, f"{label}-{i}", EntityLogState(spec)) for i in range(entities)]
    # warm-up round: every entity has history, scripts loaded
    for round_ in range(3):
        for _, _, state in states:
            state.add_event(f"w{round_}-{id(state)}", round_ * 1000, {"amount": 1.0})
        writer.write(states)
    python_s = redis_s = 0.0
    for round_ in range(rounds):
        amounts = [round(rng.lognormvariate(3.8, 1.1), 2) for _ in states]
        cpu0, t0 = redis_cpu(client), time.process_time()
        for (_, entity_id, state), amount in zip(states, amounts, strict=True):
            state.add_event(f"tx-{round_}-{entity_id}", 10_000 + round_ * 1000,
                            {"amount": amount})
        wait = writer.begin(states)
        python_s += time.process_time() - t0
        wait()
        redis_s += redis_cpu(client) - cpu0
    events = entities * rounds
    return {"spec": label, "events": events, "batch_entities": entities,
            "python_us_per_event": round(python_s / events * 1e6, 2),
            "redis_cpu_us_per_event": round(redis_s / events * 1e6, 2)}


def load_entity(client: redis.Redis, fs: FeatureSet, entity_id: str, events: int, end_ms: int,
                rng: random.Random, batch: int = 20_000) -> dict[str, Any]:
    """``events`` events spread over the 30 days before ``end_ms``, with fraud labels."""
    spec = log_spec(fs, MERCHANT)
    state = EntityLogState(spec)
    writer = PrefixLogWriter(client, fs, TTL_S)
    start = end_ms - 30 * DAY_MS
    times = sorted(rng.randrange(start, end_ms) for _ in range(events))
    frauds = []
    t0 = time.perf_counter()
    cpu0 = redis_cpu(client)
    for i, time_ms in enumerate(times):
        tid = f"{entity_id}-{i:07d}"
        state.add_event(tid, time_ms, {"amount": round(rng.lognormvariate(3.8, 1.1), 2)})
        if rng.random() < 0.005:
            frauds.append((time_ms + rng.randrange(DAY_MS, 10 * DAY_MS), tid, time_ms))
        if (i + 1) % batch == 0:
            writer.write([(MERCHANT.name, entity_id, state)])
    frauds.sort()
    for labeled_at, tid, time_ms in frauds:
        if labeled_at <= end_ms - DAY_MS:  # known before every request: as for live requests
            state.add_label(tid, time_ms, labeled_at, {"is_fraud": 1.0})
    writer.write([(MERCHANT.name, entity_id, state)])
    seconds = time.perf_counter() - t0
    return {"events": events, "labels": len(state.labels or ()), "seconds": round(seconds, 2),
            "redis_cpu_s": round(redis_cpu(client) - cpu0, 2),
            "members": client.zcard(f"rtml:fs:{fs.name}:{fs.version}:@ev:terminal:{entity_id}")}


def snapshot(client: redis.Redis) -> tuple[float, int, int]:
    """(Redis CPU s, bytes sent, EVALSHA µs) now, from one INFO call."""
    info = client.info("cpu", "stats", "commandstats")
    script = info.get("cmdstat_evalsha", {"usec": 0})
    return (float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            int(info["total_net_output_bytes"]), int(script["usec"]))


def bench_requests(client: redis.Redis, fs: FeatureSet, entity_ids: list[str], end_ms: int,
                   requests: int, rng: random.Random, batch: int = 50) -> dict[str, Any]:
    """Per entity: the median over batches of ``batch`` requests of each figure per request.

    The entities' batches alternate, so a busy machine weighs on each alike; what
    the INFO snapshot around a batch costs (its CPU, its reply's bytes) is measured
    alone and subtracted.
    """
    reader = PrefixLogReader(client, fs)
    vectors = RequestVectors(fs)
    for i in range(50):  # warm-up
        for entity_id in entity_ids:
            time_ms = end_ms - rng.randrange(DAY_MS)
            vectors.compute(f"w{i}", time_ms, {"amount": 10.0},
                            reader.read(f"w{i}", time_ms, {"terminal_id": entity_id}))
    empty = []
    for _ in range(20):
        a, b = snapshot(client), snapshot(client)
        empty.append((b[0] - a[0], b[1] - a[1]))
    info_cpu = statistics.median(cpu for cpu, _ in empty)
    info_bytes = statistics.median(sent for _, sent in empty)
    samples: dict[str, list[tuple[float, float, float, float]]] = {e: [] for e in entity_ids}
    events_30d: dict[str, float] = {e: 0.0 for e in entity_ids}
    for b in range(requests // batch):
        for entity_id in entity_ids:
            ids = {"terminal_id": entity_id}
            times = [end_ms - rng.randrange(DAY_MS) for _ in range(batch)]
            before = snapshot(client)
            t0 = time.process_time()
            for i, time_ms in enumerate(times):
                tid = f"r{b}-{i}"
                vector = vectors.compute(tid, time_ms, {"amount": 10.0},
                                         reader.read(tid, time_ms, ids))
                events_30d[entity_id] += vector["m_n_30d"]
            python_s = time.process_time() - t0
            after = snapshot(client)
            samples[entity_id].append((
                (after[1] - before[1] - info_bytes) / batch,
                (after[0] - before[0] - info_cpu) / batch * 1e6,
                (after[2] - before[2]) / batch,
                python_s / batch * 1e6))
    out: dict[str, Any] = {}
    for entity_id, rows in samples.items():
        columns = list(zip(*rows, strict=True))
        out[entity_id] = {
            "requests": len(rows) * batch, "batches": len(rows),
            "bytes_per_request": round(statistics.median(columns[0]), 1),
            "redis_cpu_us_per_request": round(statistics.median(columns[1]), 1),
            "script_us_per_request": round(statistics.median(columns[2]), 1),
            "python_cpu_us_per_request": round(statistics.median(columns[3]), 1),
            "script_us_per_request_min": round(min(columns[2]), 1),
            "mean_events_30d": round(events_30d[entity_id] / (len(rows) * batch), 1)}
    return out


def run(quick: bool) -> dict[str, Any]:
    fs = feature_set()
    hot_events = 100_000 if quick else 1_000_000
    requests = 300 if quick else 3_000
    rng = random.Random(7)
    end_ms = 1_700_000_000_000
    result: dict[str, Any] = {"benchmark": "request_features", "quick": quick,
                              "machine": machine(), "target_ratio": TARGET_RATIO}
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer.start_new(Path(tmp) / "redis")
        try:
            client = server.client()
            client.script_load(READ_SCRIPT)
            sums_only = EntityLogSpec(("amount",), (), (), 0)
            with_max = EntityLogSpec(("amount",), (("amount", "max"),), (), 0)
            rounds = 5 if quick else 20
            result["writer"] = [bench_writer(client, fs, sums_only, "sums", 1000, rounds),
                                bench_writer(client, fs, with_max, "sums+max", 1000, rounds)]
            client.flushdb()
            result["load_hot"] = load_entity(client, fs, "hot", hot_events, end_ms, rng)
            result["load_quiet"] = load_entity(client, fs, "quiet", 30, end_ms, rng)
            result["redis_used_memory_mb"] = round(client.info("memory")["used_memory"] / 2**20)
            per_entity = bench_requests(client, fs, ["hot", "quiet"], end_ms, requests, rng)
            hot, quiet = per_entity["hot"], per_entity["quiet"]
            client.close()
        finally:
            server.close()
    result["hot"], result["quiet"] = hot, quiet
    result["ratio"] = {key: round(hot[key] / quiet[key], 2) for key in (
        "bytes_per_request", "redis_cpu_us_per_request", "script_us_per_request",
        "python_cpu_us_per_request")}
    result["within_target"] = all(value <= TARGET_RATIO for value in result["ratio"].values())
    return result


def markdown(result: dict[str, Any]) -> str:
    m, hot, quiet, ratio = result["machine"], result["hot"], result["quiet"], result["ratio"]
    load = result["load_hot"]
    lines = [
        SECTION,
        "",
        f"Measured {m['date']} with `python bench/request_features.py` on {m['nproc']} cores "
        f"({m['cpu']}), Python {m['python']}, 1-minute load average {m['load_average_1m']} at "
        "start; redis-server on the same cores. Feature set: count / sum / mean over 1, 7, 30 "
        "days, max over 7 days, label-delayed fraud count and risk over 30 days (7-day delay), "
        "one entity. A request = one `EVALSHA` of the prefix-log reader "
        "(rtml_features.online_store.redis.prefix_reader) + `RequestVectors.compute`.",
        "",
        f"| per request | hot entity ({load['events']:,} events in 30 days, "
        f"{load['labels']:,} labels) | quiet entity (30 events) | hot / quiet "
        f"(target ≤ {TARGET_RATIO:g}) |",
        "|---|---|---|---|",
        f"| bytes Redis sends | {hot['bytes_per_request']} | {quiet['bytes_per_request']} | "
        f"{ratio['bytes_per_request']} |",
        f"| Redis CPU (INFO cpu) | {hot['redis_cpu_us_per_request']} µs | "
        f"{quiet['redis_cpu_us_per_request']} µs | {ratio['redis_cpu_us_per_request']} |",
        f"| script time (INFO commandstats) | {hot['script_us_per_request']} µs | "
        f"{quiet['script_us_per_request']} µs | {ratio['script_us_per_request']} |",
        f"| Python CPU (read + parse + compute) | {hot['python_cpu_us_per_request']} µs | "
        f"{quiet['python_cpu_us_per_request']} µs | {ratio['python_cpu_us_per_request']} |",
        "",
        f"{hot['requests']:,} requests per entity at random times in the last day; each "
        f"figure is the median over batches of 50 requests, hot and quiet batches "
        f"alternating. Loading the "
        f"hot entity through the writer (batches of 20,000 members, pipelined script calls): "
        f"{load['seconds']} s, {load['redis_cpu_s']} s of Redis CPU; Redis memory "
        f"{result['redis_used_memory_mb']} MB.",
        "",
        *([f"The machine was shared (load {m['load_average_1m']} on {m['nproc']} cores): "
           "absolute times are inflated several-fold (measured apart, best of five runs of "
           "3,000 on a reply already read: ~3 µs building the read, ~7 µs parsing the reply, "
           "~27 µs `RequestVectors.compute`; the rest is redis-py's EVALSHA); the hot / quiet "
           "ratios compare batches run alternately under the same load.", ""]
          if m["load_average_1m"] > m["nproc"] else []),
        "| writer, batches of 1,000 entities, one appended event each | Python µs / event "
        "| Redis CPU µs / event |",
        "|---|---|---|",
    ]
    for w in result["writer"]:
        lines.append(f"| spec: {w['spec']} ({w['events']:,} events) | "
                     f"{w['python_us_per_event']} | {w['redis_cpu_us_per_event']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 events, no docs update")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    result = run(args.quick)
    if not args.quick:
        write_section(SECTION, markdown(result))
    print(markdown(result) if not args.json else "", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
