"""The on-disk data set: three Parquet files and a manifest, with fixed schemas.

Layout of a data set directory::

    transactions.parquet   one row per payment, event-time order
    customers.parquet      customer profiles (with their terminal lists)
    terminals.parquet      terminal locations
    manifest.json          the config that regenerates it, and its summary

In rich mode the transactions file has five more columns after these
(:data:`RICH_FIELDS`: device, IP address, merchant category, country,
channel); a plain run's files are unchanged.

Schemas are explicit Arrow schemas (not inferred from pandas) so every
consumer, in any language, sees the same types; they are documented in
``docs/simulator.md``. Files are written to a temporary name and renamed
(:mod:`rtml_common.files`, without fsync: a data set lost to a power cut is
regenerated from its seed), so a crashed run never leaves a half-written file
that looks complete. Nothing
time-dependent is written, so two runs with one seed give identical bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rtml_common.files import write_atomically, write_bytes_atomically
from rtml_simulator.config import SimulationConfig
from rtml_simulator.simulate import Simulation, Summary

TRANSACTIONS_FILE = "transactions.parquet"
CUSTOMERS_FILE = "customers.parquet"
TERMINALS_FILE = "terminals.parquet"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1

TIMESTAMP = pa.timestamp("us", tz="UTC")

TRANSACTIONS_SCHEMA = pa.schema([
    pa.field("transaction_id", pa.int64(), nullable=False),
    pa.field("tx_datetime", TIMESTAMP, nullable=False),
    pa.field("customer_id", pa.int64(), nullable=False),
    pa.field("terminal_id", pa.int64(), nullable=False),
    pa.field("tx_amount", pa.float64(), nullable=False),
    pa.field("tx_time_seconds", pa.int64(), nullable=False),
    pa.field("tx_time_days", pa.int32(), nullable=False),
    pa.field("tx_fraud", pa.int8(), nullable=False),
    pa.field("tx_fraud_scenario", pa.int8(), nullable=False),
])

#: Rich mode's extra transaction columns (the payments example schema's fields).
RICH_FIELDS = (
    pa.field("device_id", pa.string(), nullable=False),
    pa.field("ip_address", pa.string(), nullable=True),
    pa.field("merchant_category", pa.string(), nullable=False),
    pa.field("country", pa.string(), nullable=False),
    pa.field("channel", pa.string(), nullable=False),
)
RICH_TRANSACTIONS_SCHEMA = pa.schema([*TRANSACTIONS_SCHEMA, *RICH_FIELDS])

CUSTOMERS_SCHEMA = pa.schema([
    pa.field("customer_id", pa.int64(), nullable=False),
    pa.field("x_location", pa.float64(), nullable=False),
    pa.field("y_location", pa.float64(), nullable=False),
    pa.field("mean_amount", pa.float64(), nullable=False),
    pa.field("std_amount", pa.float64(), nullable=False),
    pa.field("mean_nb_tx_per_day", pa.float64(), nullable=False),
    pa.field("nb_terminals", pa.int32(), nullable=False),
    pa.field("available_terminals", pa.list_(pa.int64()), nullable=False),
])

TERMINALS_SCHEMA = pa.schema([
    pa.field("terminal_id", pa.int64(), nullable=False),
    pa.field("x_location", pa.float64(), nullable=False),
    pa.field("y_location", pa.float64(), nullable=False),
])

#: Row groups of ~131k payments (~2 weeks at default density): slices skip the rest.
ROW_GROUP_SIZE = 1 << 17


def epoch_us(config: SimulationConfig) -> int:
    """Microseconds since 1970 of the start date's midnight, UTC."""
    start = datetime.combine(config.start_date, time(), tzinfo=UTC)
    return int(start.timestamp()) * 1_000_000


def transactions_table(sim: Simulation) -> pa.Table:
    """The transactions file's table (with the rich columns in rich mode)."""
    tx = sim.transactions
    n = len(tx)
    columns = {
        "transaction_id": pa.array(np.arange(n, dtype=np.int64)),
        "tx_datetime": pa.array(epoch_us(sim.config) + tx.time_seconds * 1_000_000,
                                type=TIMESTAMP),
        "customer_id": tx.customer_id,
        "terminal_id": tx.terminal_id,
        "tx_amount": tx.amount,
        "tx_time_seconds": tx.time_seconds,
        "tx_time_days": tx.day.astype(np.int32),
        "tx_fraud": tx.fraud,
        "tx_fraud_scenario": tx.scenario,
    }
    if sim.rich is None:
        return pa.table(columns, schema=TRANSACTIONS_SCHEMA)
    for rich_field in RICH_FIELDS:
        columns[rich_field.name] = pa.array(getattr(sim.rich, rich_field.name), pa.string())
    return pa.table(columns, schema=RICH_TRANSACTIONS_SCHEMA)


def customers_table(sim: Simulation) -> pa.Table:
    customers, neighbours = sim.population.customers, sim.population.neighbours
    terminals = pa.ListArray.from_arrays(pa.array(neighbours.offsets, pa.int32()),
                                         pa.array(neighbours.terminal_ids))
    return pa.table({
        "customer_id": np.arange(len(customers), dtype=np.int64),
        "x_location": customers.x,
        "y_location": customers.y,
        "mean_amount": customers.mean_amount,
        "std_amount": customers.std_amount,
        "mean_nb_tx_per_day": customers.mean_tx_per_day,
        "nb_terminals": neighbours.counts.astype(np.int32),
        "available_terminals": terminals,
    }, schema=CUSTOMERS_SCHEMA)


def terminals_table(sim: Simulation) -> pa.Table:
    terminals = sim.population.terminals
    return pa.table({
        "terminal_id": np.arange(len(terminals), dtype=np.int64),
        "x_location": terminals.x,
        "y_location": terminals.y,
    }, schema=TERMINALS_SCHEMA)


def _write_parquet(table: pa.Table, path: Path) -> None:
    def write(temp: Path) -> None:
        pq.write_table(table, temp, compression="zstd", row_group_size=ROW_GROUP_SIZE)

    write_atomically(path, write, durable=False)


def summary_to_dict(summary: Summary) -> dict[str, Any]:
    data = asdict(summary)
    data["per_scenario"] = {str(k): v for k, v in summary.per_scenario.items()}
    return data


def write_dataset(sim: Simulation, out_dir: Path | str) -> Path:
    """Write the data set of ``sim`` into ``out_dir`` (created); returns the directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_parquet(transactions_table(sim), out / TRANSACTIONS_FILE)
    _write_parquet(customers_table(sim), out / CUSTOMERS_FILE)
    _write_parquet(terminals_table(sim), out / TERMINALS_FILE)
    manifest = {
        "format_version": FORMAT_VERSION,
        "generator": "rtml-simulator",
        "config": sim.config.to_dict(),
        "summary": summary_to_dict(sim.summary()),
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    write_bytes_atomically(out / MANIFEST_FILE, text.encode("utf-8"), durable=False)
    return out


def read_manifest(data_dir: Path | str) -> dict[str, Any]:
    path = Path(data_dir) / MANIFEST_FILE
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest


def read_transactions(
    data_dir: Path | str, columns: Sequence[str] | None = None
) -> pa.Table:
    """The transactions table (optionally only some columns), with a clear error if absent."""
    path = Path(data_dir) / TRANSACTIONS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {TRANSACTIONS_FILE} in {data_dir}; "
                                f"generate one with `rtml simulate --out {data_dir}`")
    return pq.read_table(path, columns=list(columns) if columns is not None else None)
