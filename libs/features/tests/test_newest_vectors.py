"""take_newest_vectors: per entity, the vector of its newest event — never an older one's."""

from __future__ import annotations

from datetime import timedelta

from rtml_features.baseline import BASELINE
from rtml_features.stream import StreamingFeatureComputer

T = 1_522_584_000_000
MINUTE = 60_000


def computer() -> StreamingFeatureComputer:
    return StreamingFeatureComputer(BASELINE, allowed_lateness=timedelta(minutes=10),
                                    track_newest=True)


def test_in_order_transactions_leave_the_last_one_per_entity() -> None:
    c = computer()
    c.on_transaction("a", "c1", "t1", T, 10.0)
    c.on_transaction("b", "c1", "t2", T + MINUTE, 20.0)
    newest = c.take_newest_vectors()
    assert {key: e.transaction_id for key, e in newest.items()} == {
        ("customer", "c1"): "b", ("terminal", "t1"): "a", ("terminal", "t2"): "b"}
    assert newest[("customer", "c1")].vector["customer_id_nb_tx_1day_window"] == 2.0
    assert c.take_newest_vectors() == {}  # taken: nothing new since


def test_an_older_event_arriving_later_never_replaces_the_newest() -> None:
    c = computer()
    c.on_transaction("new", "c1", "t1", T + 5 * MINUTE, 20.0)
    c.take_newest_vectors()
    emitted = c.on_transaction("old", "c1", "t2", T, 10.0)  # late, within the lateness
    assert [e.transaction_id for e in emitted] == ["old", "new"]  # "new" revised
    newest = c.take_newest_vectors()
    assert newest[("customer", "c1")].transaction_id == "new"
    assert newest[("customer", "c1")].revision == 1
    assert newest[("customer", "c1")].vector["customer_id_nb_tx_1day_window"] == 2.0
    assert newest[("terminal", "t2")].transaction_id == "old"  # its own terminal's newest
    # The revision of "new" is still t1's newest event: offered again for t1 too.
    assert (newest[("terminal", "t1")].transaction_id, newest[("terminal", "t1")].revision) == (
        "new", 1)


def test_a_late_event_is_not_offered_for_an_entity_with_a_newer_one() -> None:
    c = computer()
    c.on_transaction("z", "c9", "t1", T + 9 * MINUTE, 5.0)  # t1's newest
    c.take_newest_vectors()
    # Older, on the same terminal; the terminal's windows end 7 days back: "z" is unchanged.
    emitted = c.on_transaction("y", "c8", "t1", T, 10.0)
    assert [e.transaction_id for e in emitted] == ["y"]
    newest = c.take_newest_vectors()
    assert {key: e.transaction_id for key, e in newest.items()} == {("customer", "c8"): "y"}


def test_a_redelivered_newest_transaction_is_offered_again_unchanged() -> None:
    c = computer()
    (first,) = c.on_transaction("a", "c1", "t1", T, 10.0)
    c.take_newest_vectors()
    c.on_transaction("a", "c1", "t1", T, 10.0)
    again = c.take_newest_vectors()
    assert again[("customer", "c1")].vector == first.vector


def test_without_tracking_nothing_accumulates() -> None:
    c = StreamingFeatureComputer(BASELINE)
    c.on_transaction("a", "c1", "t1", T, 10.0)
    assert c.take_newest_vectors() == {}  # a worker writing no latest hashes asks anyway
