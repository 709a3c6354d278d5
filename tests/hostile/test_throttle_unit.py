"""Login throttle arithmetic with a fake clock (the socket tests show it live)."""

from __future__ import annotations

import heapq

import pytest

from iotmp.server.throttle import LoginThrottle, TooManyAttempts


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _attack(throttle: LoginThrottle, clock: FakeClock, tries: int, parallel: int) -> float:
    """Simulate ``parallel`` connections making ``tries`` wrong logins; return the time taken.

    Each connection reserves a slot, waits its delay, is checked (and fails); a
    refused reservation (429) waits the announced retry time and tries again.
    """
    events = [(0.0, worker, "reserve") for worker in range(parallel)]
    heapq.heapify(events)
    checked = 0
    while checked < tries:
        clock.now, worker, step = heapq.heappop(events)
        if step == "reserve":
            try:
                delay = throttle.reserve("alice", "10.0.0.1")
            except TooManyAttempts as exc:
                heapq.heappush(events, (clock.now + exc.retry_after, worker, "reserve"))
                continue
            heapq.heappush(events, (clock.now + delay, worker, "check"))
        else:
            throttle.failure("alice", "10.0.0.1")
            checked += 1
            heapq.heappush(events, (clock.now + 0.002, worker, "reserve"))
    return clock.now


def test_sequential_failures_space_attempts_doubling_up_to_the_cap() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(0.5, 8.0, clock=clock)
    waits = []
    for _ in range(7):
        delay = throttle.reserve("alice", "10.0.0.1")
        waits.append(delay)
        clock.now += delay
        throttle.failure("alice", "10.0.0.1")
    assert waits == [0, 0.5, 1, 2, 4, 8, 8]


def test_thousand_wrong_passwords_from_twenty_parallel_connections_take_over_100_s() -> None:
    clock = FakeClock()
    elapsed = _attack(LoginThrottle(0.5, 8.0, clock=clock), clock, 1000, 20)
    assert elapsed >= 100.0
    # the cap of 8 s between checks dominates: about 8 s per try after the first ones
    assert elapsed >= 900 * 8.0


def test_parallel_connections_do_not_multiply_the_rate() -> None:
    serial_clock, parallel_clock = FakeClock(), FakeClock()
    serial = _attack(LoginThrottle(0.5, 8.0, clock=serial_clock), serial_clock, 100, 1)
    parallel = _attack(LoginThrottle(0.5, 8.0, clock=parallel_clock), parallel_clock, 100, 20)
    # 20 parallel connections gain only the first burst (checked before any failure)
    assert parallel >= serial - 20 * 8.0


def test_other_address_and_other_users_are_not_slowed() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(0.5, 8.0, clock=clock)
    for _ in range(50):
        clock.now += throttle.reserve("alice", "10.0.0.1")
        throttle.failure("alice", "10.0.0.1")
    assert throttle.reserve("alice", "10.0.0.2") == 0  # the owner elsewhere: no delay
    assert throttle.reserve("bob", "10.0.0.3") == 0
    assert throttle.reserve("bob", "10.0.0.1") > 0  # the attacking address: slowed for all users


def test_a_success_does_not_reset_the_delay_for_others() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(0.5, 8.0, clock=clock)
    for _ in range(6):
        clock.now += throttle.reserve("alice", "10.0.0.1")
        throttle.failure("alice", "10.0.0.1")
    failures = throttle.failures("10.0.0.1")
    clock.now += throttle.reserve("mallory", "10.0.0.1")
    throttle.success("mallory", "10.0.0.1")  # the attacker's own account
    assert throttle.failures("10.0.0.1") == failures
    assert throttle.reserve("alice", "10.0.0.1") > 0


def test_distributed_guessing_slows_the_user_but_not_its_known_addresses() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(0.5, 8.0, distributed_addresses=3, clock=clock)
    throttle.success("alice", "192.168.1.5")  # her usual address
    for i in range(6):
        throttle.failure("alice", f"10.0.0.{i}")
    assert throttle.reserve("alice", "10.9.9.9") >= 0  # slot handed out ...
    assert throttle.reserve("alice", "10.9.9.8") > 0  # ... and the next one waits
    assert throttle.reserve("alice", "192.168.1.5") == 0


def test_far_slots_are_refused_unchecked_and_failures_are_forgotten() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(0.5, 8.0, max_wait=10.0, forget_after=60.0, clock=clock)
    for _ in range(10):
        throttle.failure("alice", "10.0.0.1")
    assert throttle.reserve("alice", "10.0.0.1") == 8.0
    with pytest.raises(TooManyAttempts) as info:
        throttle.reserve("alice", "10.0.0.1")
    assert info.value.retry_after > 10.0
    clock.now += 61.0
    assert throttle.failures("10.0.0.1") == 0
    assert throttle.reserve("alice", "10.0.0.1") == 0


def test_zero_initial_delay_disables_the_throttle() -> None:
    throttle = LoginThrottle(0, 0)
    for _ in range(5):
        throttle.failure("a", "x")
    assert throttle.reserve("a", "x") == 0
