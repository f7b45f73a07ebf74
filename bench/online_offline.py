"""Online/offline consistency in numbers: decision-time features against training features.

Everything runs as deployed, against real servers started here (Tansu broker,
Redis, MLflow):

1. **Data and champion.** A simulated data set (``--customers`` customers,
   twice as many terminals, seed 16) covering ``--history-days`` days of
   history plus the days the decisions need. An XGBoost champion is trained on
   the history with the project's training pipeline (:func:`rtml_training.pipeline.train`,
   what ``rtml train`` runs: train / 7-day delay / test periods inside the
   history), registered in MLflow and given the ``champion`` alias.
2. **History.** The history is replayed through Kafka (``transactions``, and
   ``labels`` 7 days after each transaction, as ``rtml replay`` does) into the
   feature pipeline service (``python -m rtml_feature_pipeline``, prefix logs in
   Redis); the run waits until every customer's last transaction is applied.
3. **Decisions.** The next ``--decisions`` transactions are sent one by one to
   the decision API service (``python -m rtml_decision``) in event-time order,
   ``--in-flight`` at a time, a customer's requests strictly one after the
   other; the API publishes each decided transaction to ``transactions``, from
   where the pipeline applies it, and each label is published to ``labels`` as
   its ``labeled_at`` passes the requests' event time.
4. **Comparison.** Every decision is read back from ``decisions``; the batch
   vectors are :func:`rtml_features.batch.compute_features` over the whole data
   set (the call ``rtml train`` makes). Per feature: mismatches
   (``|served - batch| > 1e-9``) and max abs diff, split by lag class (the
   consistency monitor's README: *current* — the decision's markers
   ``rtml_seen_events/labels_<entity>`` equal the data set's true counts of the
   entity's events in ``(t - H, t]`` without the request and of its labels known
   by ``t``; *behind* — fewer: the request raced the pipeline; *unexplained* —
   more). Target: 0 mismatches outside the lag class (``behind``).
5. **Cost.** The batch vectors are scored with the same champion; ROC AUC and
   average precision (``sklearn.metrics``) of the API's scores and of the batch
   scores over the decided transactions. Target ``|diff| <= 0.001`` on
   >= 100,000 transactions.

``--quick``: 1,000 customers, 20 days of history, 3,000 decisions. Full: 5,000
customers (the handbook's data), 60 days of history, 100,000 decisions (each
overridable). ``--json`` prints one JSON object last; a full run rewrites the
``## Online/offline consistency`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import pickle
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import redis
from benchlib import machine, write_section
from sklearn.metrics import average_precision_score, roc_auc_score

from rtml_common.config import KafkaSettings
from rtml_common.kafka.producer import EventProducer
from rtml_features.baseline import BASELINE
from rtml_features.batch import compute_features
from rtml_localstack.consistency import (
    history_applied,
    label_events,
    lag_classes,
    marker_set,
    read_decisions,
    send_decisions,
)
from rtml_localstack.crash import ServiceProcess, wait_until
from rtml_localstack.ports import free_port
from rtml_localstack.testing import KafkaBroker, MlflowServer, RedisServer
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_simulator import SimulationConfig, simulate, write_dataset
from rtml_simulator.frames import LABEL_DELAY, load_dataset
from rtml_simulator.replay import ReplayOptions, replay
from rtml_training.config import TrainConfig
from rtml_training.pipeline import train
from rtml_training.split import SplitConfig

SECTION = "## Online/offline consistency"
TOLERANCE = 1e-9
TARGETS = {"mismatches_outside_lag_class": 0, "auc_ap_abs_diff": 0.001,
           "decisions": 100_000}
MODEL = "online-offline"
AGAIN = " (the comparison re-computed from its kept data with `--analyse`)"
#: Transactions per customer per day in the simulator (sizes the simulated days).
TX_PER_CUSTOMER_DAY = 1.9


def champion(data: Path, start: date, history_days: int, tracking_uri: str) -> tuple[Any, Any]:
    """Train (the ``rtml train`` pipeline) inside the history, register, alias ``champion``."""
    if history_days >= 40:
        split = SplitConfig(train_start=start + timedelta(days=history_days - 21),
                            train_days=7, delay_days=7, test_days=7)
    else:
        split = SplitConfig(train_start=start + timedelta(days=history_days - 15),
                            train_days=5, delay_days=7, test_days=3)
    result = train(TrainConfig(data=data, name=MODEL, split=split, tracking_uri=tracking_uri))
    assert result.model_version is not None
    MlflowRegistry(tracking_uri).set_alias(MODEL, "champion", result.model_version.version)
    return result, split


def _healthy(port: int) -> bool:
    try:
        return bool(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    .json()["models"].get("champion"))
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def run(customers: int, history_days: int, decisions: int, in_flight: int, timeout_ms: int,
        tmp: Path, about: dict[str, Any]) -> dict[str, Any]:
    """Collect (data, champion, history, decisions) into ``tmp``, then :func:`analyse` it.

    ``about`` (machine, command) is kept with the run's figures in ``tmp/run.json``.
    """
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name] = round(time.monotonic() - clock, 1)
        clock = time.monotonic()
        print(f"{name}: {timings[name]} s", file=sys.stderr)

    days = history_days + math.ceil(decisions / (TX_PER_CUSTOMER_DAY * customers)) + 2
    config = SimulationConfig(n_customers=customers, n_terminals=2 * customers, n_days=days,
                              seed=16)
    write_dataset(simulate(config), tmp / "data")
    dataset = load_dataset(tmp / "data", string_ids=True)
    data = dataset.history.reset_index(drop=True)
    labels = dataset.labels.reset_index(drop=True)
    cut = pd.Timestamp(config.start_date, tz="UTC") + pd.Timedelta(days=history_days)
    in_history = (data["event_time"] < cut).to_numpy()
    history = data[in_history]
    after = np.flatnonzero(~in_history)[:decisions]
    if len(after) < decisions:
        raise RuntimeError(f"only {len(after)} transactions after the history: simulate more")
    requests = data.iloc[after].reset_index(drop=True)
    lap("simulate")

    broker = KafkaBroker.start_new(tmp / "kafka")
    redis_server = RedisServer.start_new(tmp / "redis")
    mlflow = MlflowServer.start_new(tmp / "mlflow")
    services: list[ServiceProcess] = []
    try:
        trained, split = champion(tmp / "data", config.start_date, history_days,
                                  mlflow.tracking_uri)
        lap("train champion")
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                              session_timeout_ms=6000)
        report = replay(tmp / "data", ReplayOptions(days=history_days, replication_factor=1,
                                                    label_delay=LABEL_DELAY.to_pytimedelta()),
                        kafka)
        if report.transactions != len(history):
            raise RuntimeError(f"replayed {report.transactions}, history has {len(history)}")
        lap("replay history")
        common = {"RTML_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                  "RTML_KAFKA_SESSION_TIMEOUT_MS": "6000", "RTML_REDIS_URL": redis_server.url,
                  "RTML_TELEMETRY_LOG_LEVEL": "WARNING"}
        pipeline = ServiceProcess("rtml_feature_pipeline", {
            **common, "RTML_FEATURE_PIPELINE_CONSUMER_GROUP": "online-offline",
            "RTML_FEATURE_PIPELINE_ONLINE_LAYOUT": "prefix",
            # the replay compresses event time, and concurrent customers' requests
            # arrive slightly out of event-time order
            "RTML_FEATURE_PIPELINE_ALLOWED_LATENESS_S": "86400"}, tmp / "logs")
        port = free_port()
        api = ServiceProcess("rtml_decision", {
            **common, "RTML_DECISION_HTTP_PORT": str(port), "RTML_DECISION_MODEL_NAME": MODEL,
            "RTML_DECISION_LOG_WRITER": "false",
            "RTML_DECISION_REQUEST_TIMEOUT_MS": str(timeout_ms),
            "RTML_MLFLOW_TRACKING_URI": mlflow.tracking_uri,
            "RTML_CASSANDRA_PORT": str(free_port())}, tmp / "logs")
        services = [pipeline.start(), api.start()]
        client = redis.Redis.from_url(redis_server.url)
        # every customer's last transaction, of the customers whose logs still hold it
        # (the pipeline evicts events older than the horizon)
        last = history.sort_values("event_time").groupby("customer_id").tail(1)
        last = last[last["event_time"] >= cut - pd.Timedelta(days=7)]
        wait_until(lambda: history_applied(client, BASELINE, last.tail(300))
                   and history_applied(client, BASELINE, last), timeout_s=3600,
                   what="the history applied", watch=[pipeline], interval_s=2)
        lap("pipeline applies the history")
        wait_until(lambda: _healthy(port), timeout_s=300, what="the decision API up",
                   watch=[api], interval_s=0.5)
        lap("decision API up")
        upcoming = label_events(data, labels)
        upcoming = upcoming[(upcoming["labeled_at"] >= cut)
                            & (upcoming["transaction_time"] <= requests["event_time"].max())]
        producer = EventProducer(kafka)
        try:
            started = time.monotonic()
            answers = asyncio.run(send_decisions(port, requests, upcoming, producer, in_flight))
            sent_s = time.monotonic() - started
            if len(answers) != decisions:
                raise RuntimeError(f"{len(answers)} answers to {decisions} requests")
        finally:
            producer.close()
        lap("decisions")
        ids = requests["transaction_id"]
        published: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 120
        while len(published) < len(ids) and time.monotonic() < deadline:
            published = read_decisions(kafka, ids)
        lap("read decisions back")
        client.close()
        # kept with the data set (``--workdir``): the comparison can be re-run from them
        with (tmp / "decisions.jsonl").open("wb") as out:
            out.writelines(orjson.dumps(published[tid]) + b"\n" for tid in ids
                           if tid in published)
        (tmp / "champion.pkl").write_bytes(pickle.dumps(trained.model))
    finally:
        for service in reversed(services):
            service.stop()
        mlflow.close()
        redis_server.close()
        broker.close()
    if len(published) != len(ids):
        raise RuntimeError(f"{len(ids) - len(published)} decisions missing from `decisions`")
    meta = {**about, "measured_at": datetime.now(UTC).isoformat(),
            "customers": customers, "terminals": 2 * customers, "simulated_days": days,
            "history_days": history_days, "history_transactions": len(history),
            "decisions": decisions, "in_flight": in_flight, "timeout_ms": timeout_ms,
            "sent_s": round(sent_s, 1), "rate_req_s": round(decisions / sent_s, 1),
            "start_date": config.start_date.isoformat(),
            "champion": {"version": trained.model_version.version, "split": split.describe(),
                         "train_auc": trained.metrics.auc, "train_ap": trained.metrics.ap},
            "timings_s": timings}
    (tmp / "run.json").write_text(json.dumps(meta))
    result = analyse(tmp, meta)
    lap("batch vectors and comparison")
    return result


def analyse(workdir: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The comparison (see the module doc) from a run's kept data set, decisions and champion."""
    dataset = load_dataset(workdir / "data", string_ids=True)
    data = dataset.history.reset_index(drop=True)
    is_fraud = dataset.is_fraud.reset_index(drop=True).to_numpy(dtype=bool)
    labels = dataset.labels.reset_index(drop=True)
    cut = pd.Timestamp(meta["start_date"], tz="UTC") + pd.Timedelta(days=meta["history_days"])
    after = np.flatnonzero((data["event_time"] >= cut).to_numpy())[:meta["decisions"]]
    requests = data.iloc[after].reset_index(drop=True)
    published = {}
    for line in (workdir / "decisions.jsonl").read_bytes().splitlines():
        value = orjson.loads(line)
        published[value["transaction_id"]] = value
    model = pickle.loads((workdir / "champion.pkl").read_bytes())  # our own file
    ids = requests["transaction_id"]

    # The batch vectors and true markers of every request, over the whole data set.
    batch = compute_features(BASELINE, requests, data, labels)
    truth = compute_features(marker_set(BASELINE), requests, data, labels)
    values = [published[tid] for tid in ids]
    served = pd.DataFrame([v["inputs"] for v in values])
    degraded = np.array([bool(v.get("degraded")) for v in values])
    # the Decision value has no reason field: its latency says whether it ran out of budget
    degraded_latency_ms = sorted(round(v["latency_ms"]) for v in values if v.get("degraded"))
    lags = lag_classes(BASELINE, served, truth)
    names = list(BASELINE.names)
    diffs = np.abs(served.reindex(columns=names).to_numpy(dtype=float)
                   - batch[names].to_numpy(dtype=float))
    diffs[np.isnan(diffs)] = np.inf
    off = diffs > TOLERANCE
    features = []
    for j, name in enumerate(names):
        features.append({
            "feature": name,
            "mismatches_current": int(off[lags.current, j].sum()),
            "mismatches_behind": int(off[lags.behind, j].sum()),
            "mismatches_unexplained": int(off[lags.unexplained, j].sum()),
            "max_abs_diff_current": float(diffs[lags.current, j].max(initial=0.0)),
            "max_abs_diff_behind": float(diffs[lags.behind, j].max(initial=0.0))})

    fraud = is_fraud[after]
    api_scores = np.array([np.nan if v.get("score") is None else v["score"] for v in values])
    batch_scores = model.predict(batch[names].to_numpy(dtype=np.float64))
    scored = ~np.isnan(api_scores)
    metrics = {
        "auc_api": float(roc_auc_score(fraud[scored], api_scores[scored])),
        "auc_batch": float(roc_auc_score(fraud[scored], batch_scores[scored])),
        "ap_api": float(average_precision_score(fraud[scored], api_scores[scored])),
        "ap_batch": float(average_precision_score(fraud[scored], batch_scores[scored])),
        "score_max_abs_diff_current": float(np.abs(api_scores - batch_scores)[
            scored & lags.current].max(initial=0.0)),
        "scores_differing_current": int((np.abs(api_scores - batch_scores)[
            scored & lags.current] > 1e-6).sum())}
    both = scored & lags.current
    metrics["auc_api_current"] = float(roc_auc_score(fraud[both], api_scores[both]))
    metrics["auc_batch_current"] = float(roc_auc_score(fraud[both], batch_scores[both]))
    metrics["ap_api_current"] = float(average_precision_score(fraud[both], api_scores[both]))
    metrics["ap_batch_current"] = float(average_precision_score(fraud[both],
                                                                batch_scores[both]))
    metrics["scored"] = int(scored.sum())
    metrics["auc_abs_diff"] = abs(metrics["auc_api"] - metrics["auc_batch"])
    metrics["ap_abs_diff"] = abs(metrics["ap_api"] - metrics["ap_batch"])
    mismatched = off.any(axis=1)
    return {
        **meta, "frauds": int(fraud.sum()),
        "degraded": int(degraded.sum()), "degraded_latency_ms": degraded_latency_ms,
        "unknown": int(lags.unknown.sum()),
        "current": int(lags.current.sum()), "behind": int(lags.behind.sum()),
        "unexplained": int(lags.unexplained.sum()), "behind_by_entity": lags.behind_by_entity,
        "decisions_mismatched_outside_lag_class": int(mismatched[lags.current
                                                                  | lags.unexplained].sum()),
        "decisions_mismatched_behind": int(mismatched[lags.behind].sum()),
        "features": features, **metrics}


def _latencies(latencies_ms: list[int], budget_ms: int) -> str:
    if not latencies_ms:
        return ""
    over = sum(latency > budget_ms for latency in latencies_ms)
    return (f" (latencies {', '.join(f'{v:,}' for v in latencies_ms[:5])} ms"
            f"{', ...' if len(latencies_ms) > 5 else ''}: {over} over the {budget_ms:,} ms "
            "budget on the loaded machine)")


def markdown(result: dict[str, Any], command: str) -> str:
    m, r = result["machine"], result
    n = r["decisions"]
    lines = [
        SECTION, "",
        f"{m['date']}, {m['nproc']} cores ({m['cpu']}), Python {m['python']}, load average "
        f"{m['load_average_1m']} before the run (the machine is shared); `{command}`, one run"
        f"{AGAIN if r.get('analysed_again_at') else ''}. "
        f"Data: simulator seed 16, {r['customers']:,} customers, {r['terminals']:,} terminals; "
        f"{r['history_days']} days of history ({r['history_transactions']:,} transactions) "
        "replayed through Kafka into the feature pipeline service (prefix logs in Redis); "
        f"then the next {n:,} transactions ({r['frauds']:,} frauds) sent one by one to the "
        f"decision API service, {r['in_flight']} in flight, a customer's requests in order, "
        f"labels published as their `labeled_at` passed ({r['rate_req_s']} req/s, "
        f"request budget {r['timeout_ms']} ms, "
        f"{r['sent_s']:.0f} s). Champion: XGBoost trained by the `rtml train` pipeline on the "
        f"history ({r['champion']['split']}; test AUC {r['champion']['train_auc']:.3f}, AP "
        f"{r['champion']['train_ap']:.3f}). Batch vectors: `compute_features` over the whole "
        "data set. Lag class from each decision's markers against the data set's true counts "
        "(docs/features.md, consistency-monitor README).", "",
        "| figure | value | target |", "|---|---|---|",
        f"| decisions read back from `decisions` | {n:,} | |",
        f"| degraded (fallback rules, row features only, no score: not compared) | "
        f"{r['degraded']:,}{_latencies(r['degraded_latency_ms'], r['timeout_ms'])} | |",
        f"| current (state held every earlier event and label) | {r['current']:,} | |",
        f"| behind (raced the pipeline: the lag class) | {r['behind']:,} "
        f"({100 * r['behind'] / n:.2f} %; customer {r['behind_by_entity'].get('customer', 0):,},"
        f" terminal {r['behind_by_entity'].get('terminal', 0):,}) | |",
        f"| unexplained (markers above the truth) | {r['unexplained']:,} | 0 |",
        "| decisions with a feature off by > 1e-9 outside the lag class | "
        f"{r['decisions_mismatched_outside_lag_class']:,} | 0 |",
        f"| decisions with a feature off in the lag class | {r['decisions_mismatched_behind']:,}"
        " | |",
        f"| ROC AUC over the {r['scored']:,} scored decisions: API scores / batch scores | "
        f"{r['auc_api']:.5f} / {r['auc_batch']:.5f} "
        f"(diff {r['auc_abs_diff']:.5f}) | diff <= 0.001 |",
        f"| average precision: API / batch | {r['ap_api']:.5f} / {r['ap_batch']:.5f} "
        f"(diff {r['ap_abs_diff']:.5f}) | diff <= 0.001 |",
        f"| the same on the current decisions only ({r['current']:,}) | AUC "
        f"{r['auc_api_current']:.5f} / {r['auc_batch_current']:.5f}, AP "
        f"{r['ap_api_current']:.5f} / {r['ap_batch_current']:.5f} | |",
        f"| max abs score diff, current decisions | {r['score_max_abs_diff_current']:.3g} | |",
        "", "| feature | mismatches: current | behind | unexplained | max abs diff: current "
        "| behind |", "|---|---|---|---|---|---|"]
    for f in r["features"]:
        lines.append(f"| `{f['feature']}` | {f['mismatches_current']} | {f['mismatches_behind']}"
                     f" | {f['mismatches_unexplained']} | {f['max_abs_diff_current']:.3g} | "
                     f"{f['max_abs_diff_behind']:.3g} |")
    lines += ["", "Wall time per step (s): " + ", ".join(
        f"{k} {v}" for k, v in r["timings_s"].items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1,000 customers, 20 days of history, 3,000 decisions")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--customers", type=int)
    parser.add_argument("--history-days", type=int)
    parser.add_argument("--decisions", type=int)
    parser.add_argument("--in-flight", type=int, default=8,
                        help="requests outstanding at once (a customer's one at a time)")
    parser.add_argument("--timeout-ms", type=int, default=1_000,
                        help="the API's request budget (RTML_DECISION_REQUEST_TIMEOUT_MS): "
                             "its 50 ms default times requests out on a loaded machine, and a "
                             "timed-out decision carries no features to compare")
    parser.add_argument("--workdir", type=Path,
                        help="keep the data set, decisions and champion here (default: a "
                             "temporary directory, removed)")
    parser.add_argument("--analyse", type=Path, metavar="WORKDIR",
                        help="only the comparison again, from a run kept with --workdir "
                             "(its figures, machine and command)")
    args = parser.parse_args(argv)
    customers = args.customers or (1_000 if args.quick else 5_000)
    history_days = args.history_days or (20 if args.quick else 60)
    decisions = args.decisions or (3_000 if args.quick else 100_000)
    if history_days < 16:
        parser.error("--history-days must be >= 16 (the champion trains inside the history)")
    command = "python bench/online_offline.py" + (" --quick" if args.quick else "") + "".join(
        f" --{k.replace('_', '-')} {v}" for k, v in vars(args).items()
        if k in ("customers", "history_days", "decisions") and v is not None) + (
        f" --in-flight {args.in_flight}" if args.in_flight != 8 else "") + (
        f" --timeout-ms {args.timeout_ms}" if args.timeout_ms != 1_000 else "")
    about = {"benchmark": "online-offline", "quick": args.quick, "machine": machine(),
             "command": command}
    if args.analyse is not None:  # the comparison again, from a kept run
        meta = json.loads((args.analyse / "run.json").read_text())
        result = analyse(args.analyse, meta)
        result["analysed_again_at"] = datetime.now(UTC).isoformat()
    else:
        with tempfile.TemporaryDirectory(prefix="rtml-bench-online-offline-") as tmp_dir:
            workdir = args.workdir or Path(tmp_dir)
            workdir.mkdir(parents=True, exist_ok=True)
            result = run(customers, history_days, decisions, args.in_flight, args.timeout_ms,
                         workdir, about)
    result["targets"] = TARGETS
    text = markdown(result, result["command"])
    if result["quick"]:
        print(text, file=sys.stderr)
    else:
        write_section(SECTION, text)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
