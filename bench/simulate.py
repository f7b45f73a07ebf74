"""Benchmark the transaction simulator and the Kafka replay.

    python bench/simulate.py                 # default config (5,000 x 10,000 x 183 days),
                                             # 3 runs, writes docs/benchmarks.md "## Simulator"
    python bench/simulate.py --quick --json  # small config, one JSON object on the last line

Each run generates the data set and writes its Parquet files (the time a user
waits for ``rtml simulate``); the figures are the median over runs, with the
minimum alongside. Unless ``--no-replay``, a slice of the data set is then
replayed as fast as possible to a throw-away local Tansu broker (started with
``rtml_localstack``) and the achieved events/s is reported. Client and broker
share this machine's cores, so that figure is a floor for a real cluster.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchlib import DOCS, machine, write_section

from rtml_simulator import SimulationConfig, simulate, write_dataset

SECTION = "## Simulator"

QUICK = SimulationConfig(n_customers=1_000, n_terminals=2_000, n_days=60,
                         radius=5.0 * (10_000 / 2_000) ** 0.5)
FULL = SimulationConfig()


def bench_simulation(config: SimulationConfig, runs: int, out: Path) -> dict[str, Any]:
    generate_s, write_s, total_s = [], [], []
    summary = None
    for _ in range(runs):
        started = time.perf_counter()
        sim = simulate(config)
        generated = time.perf_counter()
        write_dataset(sim, out)
        written = time.perf_counter()
        generate_s.append(generated - started)
        write_s.append(written - generated)
        total_s.append(written - started)
        summary = sim.summary()
    assert summary is not None
    seconds = statistics.median(total_s)
    return {
        "config": {"customers": config.n_customers, "terminals": config.n_terminals,
                   "days": config.n_days, "radius": round(config.radius, 3),
                   "seed": config.seed},
        "runs": runs,
        "seconds": round(seconds, 3),
        "seconds_min": round(min(total_s), 3),
        "generate_seconds": round(statistics.median(generate_s), 3),
        "write_seconds": round(statistics.median(write_s), 3),
        "transactions": summary.n_transactions,
        "tx_per_second": round(summary.n_transactions / seconds),
        "per_day_mean": round(summary.per_day_mean, 1),
        "per_day_min": summary.per_day_min,
        "per_day_max": summary.per_day_max,
        "fraud_rate": round(summary.fraud_rate, 5),
        "per_scenario": {str(k): v for k, v in summary.per_scenario.items()},
    }


def bench_cli(config: SimulationConfig, out: Path) -> float:
    """Wall seconds of a cold ``simulate`` command (interpreter start and imports included)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "rtml_simulator.cli", "simulate", "--out", str(out),
         "--customers", str(config.n_customers), "--terminals", str(config.n_terminals),
         "--days", str(config.n_days), "--radius", str(config.radius),
         "--seed", str(config.seed)],
        check=True, stdout=subprocess.DEVNULL,
    )
    return round(time.perf_counter() - started, 3)


def bench_replay(data_dir: Path, start_day: int, days: int) -> dict[str, Any]:
    """Replay days [start_day, start_day + days) at max speed to a throw-away broker."""
    from rtml_common.config import KafkaSettings
    from rtml_localstack.testing import KafkaBroker
    from rtml_simulator.replay import ReplayOptions, replay

    with tempfile.TemporaryDirectory(prefix="rtml-bench-kafka-") as state:
        broker = KafkaBroker.start_new(Path(state), create_topics=False)
        try:
            settings = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
            report = replay(data_dir, ReplayOptions(start_day=start_day, days=days,
                                                    label_delay=timedelta(days=7)), settings)
        finally:
            broker.close()
    return {
        "start_day": start_day,
        "days": days,
        "transactions": report.transactions,
        "labels": report.labels,
        "seconds": round(report.seconds, 3),
        "events_per_second": round(report.events_per_second),
    }


def markdown(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["simulation"]
    c = s["config"]
    scen = s["per_scenario"]
    lines = [
        SECTION,
        "",
        f"Measured {m['date']} with `python bench/simulate.py` on {m['nproc']} cores "
        f"({m['cpu']}), Python {m['python']}, 1-minute load average {m['load_average_1m']} "
        f"at start. Median of {s['runs']} runs.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| config | {c['customers']:,} customers, {c['terminals']:,} terminals, "
        f"{c['days']} days, radius {c['radius']:g}, seed {c['seed']} |",
        f"| seconds (generate + write Parquet) | {s['seconds']:.2f} "
        f"(min {s['seconds_min']:.2f}; generate {s['generate_seconds']:.2f}, "
        f"write {s['write_seconds']:.2f}) |",
        f"| cold `simulate` command (process start to files written) | "
        f"{s['cli_seconds']:.2f} s |",
        f"| transactions | {s['transactions']:,} |",
        f"| transactions / s | {s['tx_per_second']:,} |",
        f"| per day (min / mean / max) | {s['per_day_min']:,} / {s['per_day_mean']:,.0f} / "
        f"{s['per_day_max']:,} |",
        f"| fraud rate | {s['fraud_rate']:.3%} |",
        f"| frauds by scenario (1 / 2 / 3) | {scen.get('1', 0):,} / {scen.get('2', 0):,} / "
        f"{scen.get('3', 0):,} |",
    ]
    replay = result.get("replay")
    if replay:
        lines.append(
            f"| replay to local Tansu, max speed (days {replay['start_day']}-"
            f"{replay['start_day'] + replay['days'] - 1}: {replay['transactions']:,} tx + "
            f"{replay['labels']:,} labels) | {replay['events_per_second']:,} events/s "
            f"({replay['seconds']:.1f} s) |")
    lines += [
        "",
        "The replay figure is for client and broker sharing the same cores. Building, "
        "validating and JSON-encoding the events in Python costs about half of it (the "
        "same loop into a no-op producer ran at ~115k events/s); the rest is the Kafka "
        "client and the broker.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small config, no docs update")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--runs", type=int, default=None, help="runs (default: 3, quick: 1)")
    parser.add_argument("--no-replay", action="store_true", help="skip the Kafka replay")
    parser.add_argument("--no-docs", action="store_true", help="don't update benchmarks.md")
    args = parser.parse_args(argv)

    config = QUICK if args.quick else FULL
    runs = args.runs or (1 if args.quick else 3)
    result: dict[str, Any] = {"benchmark": "simulator", "quick": args.quick,
                              "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="rtml-bench-sim-") as tmp:
        out = Path(tmp)
        result["simulation"] = bench_simulation(config, runs, out)
        result["simulation"]["cli_seconds"] = bench_cli(config, out / "cli")
        if not args.no_replay:
            result["replay"] = bench_replay(out, start_day=30, days=7 if args.quick else 30)

    if not args.quick and not args.no_docs:
        write_section(SECTION, markdown(result), DOCS)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
