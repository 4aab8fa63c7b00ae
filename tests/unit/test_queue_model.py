"""Pure rules of the work queue: token buckets, the unique_string hash, request validation."""

from __future__ import annotations

import pytest

from taskd.errors import BadRequest
from taskd.workqueue.model import (
    NewTask,
    TokenBucket,
    fails_for_good,
    needed_verifications,
    parse_bulk,
    parse_project,
    siphash24,
    unique_hash,
)


def test_a_bucket_grants_one_request_then_one_per_interval_like_task_trackers_limiter():
    bucket = TokenBucket(2.0, now=100.0)
    assert bucket.take(1, 100.0) == 0.0
    assert bucket.take(1, 100.0) == pytest.approx(0.5)  # burst 1, whatever the rate
    assert bucket.take(1, 100.0) == pytest.approx(0.5)  # a refused request costs nothing
    assert bucket.take(1, 100.25) == pytest.approx(0.25)
    assert bucket.take(1, 100.5) == 0.0  # waiting exactly the delay is enough


def test_waiting_exactly_the_delay_always_succeeds():
    for rate in (0.3, 1.0, 2.0, 3.0, 7.0, 1000.0):
        bucket, now = TokenBucket(rate, now=0.0), 0.0
        granted = 0
        while granted < 50:
            delay = bucket.take(1, now)
            if delay:
                now += delay
                assert bucket.take(1, now) == 0.0, (rate, now)
            granted += 1
        # ... and the long-run rate is the configured one.
        assert granted - bucket.burst <= now * rate + 1e-6


def test_a_request_larger_than_the_burst_waits_for_a_full_bucket_and_leaves_a_debt():
    bucket = TokenBucket(2.0, now=0.0)
    assert bucket.take(1, 0.0) == 0.0
    assert bucket.take(10, 0.0) == pytest.approx(0.5)  # not infinite
    assert bucket.take(10, 0.5) == 0.0
    assert bucket.take(1, 0.5) == pytest.approx(5.0)  # paid for 10 tokens


def test_a_bucket_refills_to_one_token_only_and_unlimited_buckets():
    bucket = TokenBucket(5.0, now=0.0)
    assert bucket.take(1, 100.0) == 0.0  # a long pause does not buy a burst
    assert bucket.take(1, 100.0) == pytest.approx(0.2)
    unlimited = TokenBucket(0.0, now=0.0)
    assert all(unlimited.take(1000, 0.0) == 0.0 for _ in range(100))


def test_siphash_matches_the_reference_vectors():
    k0, k1 = 0x0706050403020100, 0x0F0E0D0C0B0A0908
    assert siphash24(k0, k1, b"") == 0x726FDB47DD0E0E31
    assert siphash24(k0, k1, bytes(range(8))) == 0x93F5F5799A932462
    assert siphash24(k0, k1, bytes(range(15))) == 0xA129CA6149BE45E5


def test_unique_strings_hash_to_stable_signed_64_bit_integers():
    values = {unique_hash(f"http://example.com/{i}") for i in range(1000)}
    assert len(values) == 1000
    assert all(-(2**63) <= v < 2**63 for v in values)
    assert any(v < 0 for v in values)
    assert unique_hash("hello") == unique_hash("hello") != unique_hash("hello!")


def test_retry_and_verification_counting_rules():
    assert fails_for_good(1, 0) and fails_for_good(1, 1)
    assert not fails_for_good(1, 3) and not fails_for_good(2, 3) and fails_for_good(3, 3)
    assert needed_verifications(0) == needed_verifications(1) == 1
    assert needed_verifications(3) == 3


def test_a_submit_request_is_validated_and_hashed():
    task = NewTask.parse({"project": 1, "recipe": "r", "unique_string": "u", "hash64": 0})
    assert task.hash64 == unique_hash("u") and task.max_retries == 0
    assert NewTask.parse({"project": 1, "recipe": "r", "hash_u64": 5}).hash64 == 5
    assert NewTask.parse({"project": 1, "recipe": "r", "hash64": 0}).hash64 is None
    with pytest.raises(BadRequest, match="not both"):
        NewTask.parse({"project": 1, "recipe": "r", "unique_string": "u", "hash64": 3})
    with pytest.raises(BadRequest, match="requests\\[2\\]: recipe"):
        NewTask.parse({"project": 1}, "requests[2]: ")
    with pytest.raises(BadRequest, match="requests\\[2\\] must be a JSON object"):
        NewTask.parse(None, "requests[2]: ")


def test_a_bulk_submit_is_one_project_without_repeated_hashes():
    project, tasks = parse_bulk({"requests": [{"project": 4, "recipe": "a"}] * 3})
    assert project == 4 and len(tasks) == 3
    with pytest.raises(BadRequest, match="same hash"):
        parse_bulk({"requests": [{"project": 4, "recipe": "a", "unique_string": "x"}] * 2})


def test_project_fields():
    assert parse_project({"name": "n"}, partial=False)["chain"] is None
    assert parse_project({"paused": True}, partial=True) == {"paused": True}
    with pytest.raises(BadRequest):
        parse_project({"name": "n", "public": True, "hidden": True}, partial=False)
    with pytest.raises(BadRequest):
        parse_project({"name": "n", "submit_rate": float("inf")}, partial=False)
