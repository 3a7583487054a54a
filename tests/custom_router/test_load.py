"""The local wait estimator (custom_router.load) with plain numbers."""

from __future__ import annotations

import pytest

from custom_router.load import DEFAULT_ANSWER_TOKENS, DEFAULT_TOKENS_PER_SECOND, OVERDUE_SECONDS, LocalLoad, Pending, \
    answer_seconds, expected_wait, moving_average, tokens_per_second


def test_a_free_slot_means_no_wait():
    assert expected_wait(LocalLoad((), slots=2)) == 0.0
    assert expected_wait(LocalLoad((Pending(age=1, seconds=30),), slots=2)) == 0.0


def test_the_first_queued_request_waits_for_the_earliest_slot_to_free():
    # 2 slots: one answer 20 s in of 30 s, one 5 s in of 30 s: the first slot is free in 10 s
    busy = (Pending(age=20, seconds=30), Pending(age=5, seconds=30))
    assert expected_wait(LocalLoad(busy, slots=2)) == pytest.approx(10.0)


def test_a_nearly_finished_answer_makes_a_short_wait():
    # a plain count (2 in flight, 2 slots) would say "a whole answer"; the replay sees one ends in 2 s
    busy = (Pending(age=28, seconds=30), Pending(age=1, seconds=30))
    assert expected_wait(LocalLoad(busy, slots=2)) == pytest.approx(2.0)


def test_queued_requests_are_replayed_in_arrival_order():
    # 1 slot: A runs (10 s left), B and C queue behind it (3 s each): the new one waits 10 + 3 + 3
    queue = (Pending(age=0.5, seconds=3), Pending(age=5, seconds=15), Pending(age=0.2, seconds=3))
    assert expected_wait(LocalLoad(queue, slots=1)) == pytest.approx(16.0)


def test_the_wait_grows_with_the_queue():
    waits = [expected_wait(LocalLoad(tuple(Pending(0, 3.0) for _ in range(n)), slots=1)) for n in range(5)]
    assert waits == pytest.approx([0.0, 3.0, 6.0, 9.0, 12.0])


def test_an_overdue_answer_ends_soon_and_odd_inputs_are_clamped():
    assert expected_wait(LocalLoad((Pending(age=90, seconds=30),), slots=1)) == OVERDUE_SECONDS
    assert expected_wait(LocalLoad((Pending(age=-5, seconds=-1),), slots=0)) == OVERDUE_SECONDS


def test_answer_seconds_takes_max_tokens_as_an_upper_bound():
    assert answer_seconds(None, 300, 10) == pytest.approx(30.0)  # the typical answer
    assert answer_seconds(100, 300, 10) == pytest.approx(10.0)  # max_tokens below it
    assert answer_seconds(4096, 300, 10) == pytest.approx(30.0)  # a generous max_tokens is not the answer
    assert answer_seconds(None, None, None) == pytest.approx(DEFAULT_ANSWER_TOKENS / DEFAULT_TOKENS_PER_SECOND)


def test_moving_average():
    assert moving_average(None, 10.0) == 10.0
    assert moving_average(10.0, 20.0, weight=0.5) == 15.0


def test_tokens_per_second_from_ollama_counts():
    assert tokens_per_second(300, 20.0) == 15.0
    assert tokens_per_second(1, 1.0) is None  # too short to time
    assert tokens_per_second(100, 0) is None
    assert tokens_per_second(None, 2.0) is None
