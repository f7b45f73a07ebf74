"""A consumer process for the SIGTERM test: records each transaction in Redis.

Run as a script (not collected by pytest). Reads Kafka settings from the
usual RTML_KAFKA_* variables; WORKER_REDIS_URL, WORKER_BATCH_DELAY_S (slows
batches so a signal lands mid-replay) and WORKER_IDLE_S (exit after this long
without records; default: run until signalled).
"""

from __future__ import annotations

import os
import sys
import time

import redis

from rtml_common.config import KafkaSettings
from rtml_common.events import Transaction
from rtml_common.kafka.consumer import ConsumerLoop, Record


def main() -> int:
    store = redis.Redis.from_url(os.environ["WORKER_REDIS_URL"])
    delay = float(os.environ.get("WORKER_BATCH_DELAY_S", "0"))
    idle = os.environ.get("WORKER_IDLE_S")

    def record(batch: list[Record[Transaction]]) -> None:
        time.sleep(delay)
        pipe = store.pipeline(transaction=False)
        for item in batch:
            pipe.sadd("processed", item.value.transaction_id)
            pipe.hincrby("times_processed", item.value.transaction_id, 1)
        pipe.execute()

    loop = ConsumerLoop({"transactions": Transaction}, "sigterm-test", record, KafkaSettings())
    loop.install_signal_handlers()
    stats = loop.run(max_idle_s=float(idle) if idle else None)
    print(f"handled={stats.handled} commits={stats.commits}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
