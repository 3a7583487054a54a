"""The local wait estimator (custom_router.load) with plain numbers."""

from __future__ import annotations

import pytest

from custom_router.load import DEFAULT_TOKENS_PER_SECOND, LocalLoad, expected_wait, moving_average, tokens_per_second


def test_a_free_slot_means_no_wait():
    assert expected_wait(LocalLoad(inflight=0, slots=2)) == 0.0
    assert expected_wait(LocalLoad(inflight=1, slots=2)) == 0.0


def test_the_first_queued_request_waits_for_one_answer_shared_by_the_slots():
    # 2 running, 2 slots: one answer of 300 tokens at 10 tokens/s must finish; 2 slots finish one every 15 s
    assert expected_wait(LocalLoad(inflight=2, slots=2, tokens_per_second=10, answer_tokens=300)) == pytest.approx(15.0)


def test_the_wait_grows_with_the_queue():
    waits = [expected_wait(LocalLoad(inflight=n, slots=1, tokens_per_second=100, answer_tokens=300)) for n in range(5)]
    assert waits == pytest.approx([0.0, 3.0, 6.0, 9.0, 12.0])


def test_odd_inputs_are_clamped():
    assert expected_wait(LocalLoad(inflight=1, slots=0, tokens_per_second=0, answer_tokens=0)) == \
        pytest.approx(1 / DEFAULT_TOKENS_PER_SECOND)


def test_moving_average():
    assert moving_average(None, 10.0) == 10.0
    assert moving_average(10.0, 20.0, weight=0.5) == 15.0


def test_tokens_per_second_from_ollama_counts():
    assert tokens_per_second(300, 20.0) == 15.0
    assert tokens_per_second(1, 1.0) is None  # too short to time
    assert tokens_per_second(100, 0) is None
    assert tokens_per_second(None, 2.0) is None
