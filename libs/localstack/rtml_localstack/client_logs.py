"""Which Kafka clients still reconnect after their broker stopped, from librdkafka's logs.

A librdkafka client that its owner closed says nothing once the broker stops;
one still open reconnects every few hundred milliseconds and prints
``%3|<time>|FAIL|<client.id>#producer-N| ... Connection refused`` straight to
file descriptor 2 for as long as the process lives. Tests stop a broker while a
deliberately open *control* client is connected and wait for the control's
first FAIL line: librdkafka has then had the time to complain, so no other
client's line means the others were closed (no fixed sleep decides it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Protocol

#: librdkafka's log line for a failed (re)connection, as printed on stderr.
FAIL_LINE = re.compile(r"^%\d\|[\d.]+\|FAIL\|(?P<client>[^#|]+)#", re.MULTILINE)


class Stoppable(Protocol):
    def stop(self) -> None: ...


def failing_clients(stderr: str) -> set[str]:
    """The ``client.id``s of the FAIL lines in ``stderr``."""
    return {match["client"] for match in FAIL_LINE.finditer(stderr)}


def clients_failing_after_stop(broker: Stoppable, read_stderr: Callable[[], str],
                               control_client_id: str, timeout_s: float = 30.0) -> set[str]:
    """Stop ``broker``; once the open control client has logged a failed reconnection,
    the ``client.id``s of every other FAIL line printed since the stop.

    ``read_stderr`` returns what was printed since its previous call (e.g.
    ``lambda: capfd.readouterr().err``); it is called once first to drop the
    lines that came before the stop. Raises TimeoutError if the control client
    never complains (it was closed, or never connected): the check would prove nothing.
    """
    read_stderr()
    broker.stop()
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while control_client_id not in seen:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the open control client {control_client_id!r} logged no "
                               f"failed reconnection within {timeout_s:.0f} s")
        time.sleep(0.2)
        seen |= failing_clients(read_stderr())
    return seen - {control_client_id}
