"""librdkafka's FAIL lines name the client that printed them."""

from __future__ import annotations

import pytest

from rtml_localstack.client_logs import clients_failing_after_stop, failing_clients

STDERR = """\
%6|1796657367.197|FAIL|rtml-producer#producer-5| [thrd:127.0.0.1:51127/111]: Disconnected
%3|1796657367.2|FAIL|rtml-producer#producer-5| [thrd:b]: Connection refused (after 0ms)
some other line mentioning FAIL|nobody#producer-1|
%3|1796657367.3|FAIL|engine-g1#consumer-7| [thrd:b]: Connection refused
%4|1796657367.3|COMMITFAIL|other#consumer-8| [thrd:main]: offset commit failed
"""


def test_fail_lines_give_the_client_ids() -> None:
    assert failing_clients(STDERR) == {"rtml-producer", "engine-g1"}
    assert failing_clients("") == set()


def test_a_control_that_never_complains_is_an_error_not_a_pass() -> None:
    class Broker:
        stopped = False

        def stop(self) -> None:
            self.stopped = True

    broker = Broker()
    with pytest.raises(TimeoutError, match="'control-producer' logged no failed reconnection"):
        clients_failing_after_stop(broker, lambda: "", "control-producer", timeout_s=0.3)
    assert broker.stopped
