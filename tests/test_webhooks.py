from __future__ import annotations

import ipaddress
import random

import pytest
from standardwebhooks.webhooks import Webhook

from gateway.jobs import State
from gateway.webhooks import UnsafeTarget, check_address, check_url, envelope, event_for, retry_delay, sign


@pytest.mark.parametrize(
    ("before", "after", "on_start", "event"),
    [
        (State.RUNNING, State.DONE, False, "job.done"),
        (State.QUEUED, State.FAILED, False, "job.failed"),
        (State.SUBMITTED, State.FAILED, True, "job.failed"),
        (State.SUBMITTED, State.RUNNING, False, None),
        (State.SUBMITTED, State.RUNNING, True, "job.started"),
        (State.QUEUED, State.SUBMITTED, True, None),
        (State.RUNNING, State.QUEUED, True, None),
        (State.DONE, State.DONE, True, None),
    ],
)
def test_event_for(before: State, after: State, on_start: bool, event: str | None) -> None:
    assert event_for(before, after, on_start=on_start) == event


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    headers = sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                   '{"test": 2432232314}')
    assert headers == {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
                       "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}


def test_a_receiver_verifies_what_is_signed() -> None:
    import time

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = envelope("job.done", 1_700_000_000.5, '{"id":"j"}')
    assert body == '{"type":"job.done","timestamp":"2023-11-14T22:13:20.500Z","data":{"id":"j"}}'
    headers = sign(secret, "msg_1", int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == {"type": "job.done", "timestamp": "2023-11-14T22:13:20.500Z",
                                                    "data": {"id": "j"}}


@pytest.mark.parametrize(
    ("attempt", "base", "low", "high"),
    [(1, 5.0, 4.0, 6.0), (2, 5.0, 8.0, 12.0), (4, 1.0, 6.4, 9.6), (30, 5.0, 2880.0, 4320.0)],
)
def test_retry_delay_doubles_with_jitter_and_a_cap(attempt: int, base: float, low: float, high: float) -> None:
    rng = random.Random(7)
    delays = [retry_delay(attempt, base, rng) for _ in range(200)]
    assert all(low <= d <= high for d in delays)
    assert len(set(delays)) > 100  # spread, not in step


@pytest.mark.parametrize(
    ("url", "allow_private", "problem"),
    [
        ("https://hooks.example.com/in", False, None),
        ("http://hooks.example.com:8080/in?x=1", False, None),
        ("http://93.184.216.34/in", False, None),
        ("ftp://hooks.example.com/in", False, "http:// or https://"),
        ("file:///etc/passwd", False, "http:// or https://"),
        ("javascript:alert(1)", False, "http:// or https://"),
        ("https:///nohost", False, "has no host"),
        ("https://user:pw@hooks.example.com/", False, "user name or password"),
        ("http://hooks.example.com:99999/", False, "not a valid URL"),
        ("http://127.0.0.1:9000/", False, "loopback, private"),
        ("http://[::1]/", False, "loopback, private"),
        ("http://10.1.2.3/", False, "loopback, private"),
        ("http://192.168.0.10/", False, "loopback, private"),
        ("http://172.16.0.1/", False, "loopback, private"),
        ("http://169.254.169.254/latest/meta-data/", False, "loopback, private"),
        ("http://[::ffff:127.0.0.1]/", False, "loopback, private"),
        ("http://[fd00::1]/", False, "loopback, private"),
        ("http://100.64.0.1/", False, "not a public address"),
        ("http://localhost:8000/", False, "loopback name"),
        ("http://api.localhost/", False, "loopback name"),
        ("http://0.0.0.0/", False, "not a unicast"),
        ("http://224.0.0.1/", False, "not a unicast"),
        ("http://240.0.0.1/", False, "reserved"),
        ("http://127.0.0.1:9000/", True, None),
        ("http://localhost:8000/", True, None),
        ("http://10.1.2.3/", True, None),
        ("http://[::1]:8000/", True, None),
        ("http://240.0.0.1/", True, "reserved"),
        ("http://224.0.0.1/", True, "not a unicast"),
    ],
)
def test_check_url(url: str, allow_private: bool, problem: str | None) -> None:
    if problem is None:
        check_url(url, allow_private=allow_private)
    else:
        with pytest.raises(UnsafeTarget, match=problem):
            check_url(url, allow_private=allow_private)


@pytest.mark.parametrize(("address", "public"), [("8.8.8.8", True), ("2606:4700::1111", True),
                                                 ("127.0.0.53", False), ("fe80::1", False), ("10.0.0.1", False)])
def test_check_address(address: str, public: bool) -> None:
    ip = ipaddress.ip_address(address)
    if public:
        check_address(ip, allow_private=False)
    else:
        with pytest.raises(UnsafeTarget):
            check_address(ip, allow_private=False)
        check_address(ip, allow_private=True)
