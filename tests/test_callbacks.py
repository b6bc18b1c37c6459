"""Callbacks: signed, retried a few times, never redirected, only to allowed addresses, and
never able to fail a separation or hold up the worker."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from common.settings import Settings
from tests.helpers import LiveWorker, submit, wait_for, wait_for_status
from tests.servers import CallbackReceiver
from worker.runtime import callback

SECRET = "s3cret"
BACKOFF_S = 0.05  # the service waits 0.5 s, then 1 s: the same steps, shorter


def sending(**overrides) -> Settings:
    """Settings for callback.send: loopback receivers allowed, short timeouts."""
    values = {"CALLBACK_ALLOW_PRIVATE": "true", "CALLBACK_TIMEOUT_S": "1.0",
              "CALLBACK_RETRIES": "3", **{name.upper(): str(value)
                                          for name, value in overrides.items()}}
    return Settings.from_env(values)


def logged_warning(log: str, song_hash: str, outcome: str) -> bool:
    """Whether the worker's log has a warning naming the song and its callback's outcome."""
    return any(" WARNING " in line and song_hash in line and outcome in line
               for line in log.splitlines())


def assert_signed(request: dict, secret: str) -> None:
    headers = request["headers"]
    expected = hmac.new(secret.encode(), headers["X-Timestamp"].encode() + b"." + request["body"],
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Signature"], f"sha256={expected}")


def test_a_delivery_is_signed_and_keeps_its_id_across_retries():
    with CallbackReceiver(answer=[503, 200]) as receiver:
        outcome = callback.send(receiver.url, {"song": "x", "n": [1, 2]}, "abc.1.done",
                                sending(callback_secret=SECRET), backoff_s=BACKOFF_S)
        assert outcome == "delivered: HTTP 200"
        assert receiver.count == 2
        assert {r["headers"]["X-Delivery-Id"] for r in receiver.requests} == {"abc.1.done"}
        for request in receiver.requests:
            assert json.loads(request["body"]) == {"song": "x", "n": [1, 2]}
            assert request["headers"]["Content-Type"] == "application/json"
            assert_signed(request, SECRET)


def test_without_a_secret_there_is_no_signature():
    with CallbackReceiver() as receiver:
        assert callback.send(receiver.url, None, "id", sending()).startswith("delivered")
        assert "X-Signature" not in receiver.requests[0]["headers"]


def test_a_failing_receiver_gets_a_few_attempts_then_the_failure_is_reported():
    with CallbackReceiver(answer=500) as receiver:
        outcome = callback.send(receiver.url, {}, "id", sending(callback_retries=3),
                                backoff_s=BACKOFF_S)
        assert outcome == "failed: HTTP 500"
        assert receiver.count == 3
        # Each attempt waits twice as long as the one before it.
        first, second, third = (request["at"] for request in receiver.requests)
        assert second - first >= BACKOFF_S and third - second >= 2 * BACKOFF_S


def test_a_refusing_receiver_is_not_asked_again():
    with CallbackReceiver(answer=410) as receiver:
        assert callback.send(receiver.url, {}, "id", sending()) == "failed: HTTP 410"
        assert receiver.count == 1


def test_a_redirect_is_not_followed():
    with CallbackReceiver() as elsewhere, CallbackReceiver(redirect="") as first:
        first.redirect = elsewhere.url
        outcome = callback.send(first.url, {}, "id", sending())
        assert outcome == "failed: HTTP 302 (redirects are not followed)"
        assert (first.count, elsewhere.count) == (1, 0)


def test_a_hanging_receiver_is_given_up_on_after_the_timeout():
    with CallbackReceiver(hang=True) as receiver:
        outcome = callback.send(receiver.url, {}, "id",
                                sending(callback_timeout_s=0.5, callback_retries=2),
                                backoff_s=BACKOFF_S)
        # Given up while the receiver still holds both requests: the timeout, not the receiver,
        # ended the wait.
        assert not receiver.released.is_set()
        assert outcome.startswith("failed: ") and "Timeout" in outcome
        assert receiver.count == 2


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.1", "0x7f000001"])
def test_a_destination_resolving_to_loopback_is_refused_when_sending(host):
    with CallbackReceiver() as receiver:
        url = receiver.url.replace("127.0.0.1", host)
        outcome = callback.send(url, {}, "id", sending(callback_allow_private=False))
        assert outcome.startswith("refused: ")
        assert receiver.count == 0
        assert callback.send(url, {}, "id", sending()).startswith("delivered")


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/",
                                 "http://[::ffff:169.254.169.254]/", "http://10.0.0.1/",
                                 "ftp://hook.invalid/", "http://user@hook.invalid/"])
def test_unsafe_urls_are_refused_without_a_connection(url):
    assert callback.send(url, {}, "id", sending(callback_allow_private=False)).startswith(
        "refused: ")


# -- through a worker -------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bad_receivers_neither_fail_the_song_nor_hold_up_the_worker(live_stack, jobs, make_mp3):
    worker = LiveWorker(live_stack, CALLBACK_TIMEOUT_S="1", CALLBACK_RETRIES="2",
                        CALLBACK_SECRET=SECRET)
    base_url = live_stack.start_rest()
    worker.wait_ready()
    with (CallbackReceiver(hang=True) as hanging, CallbackReceiver(answer=500) as failing,
          CallbackReceiver(redirect="http://169.254.169.254/latest/meta-data/") as redirecting):
        songs = {name: submit(base_url, make_mp3(2, seed=50 + n), {"url": receiver.url,
                                                                   "data": {"song": name}})
                 for n, (name, receiver) in enumerate([("hanging", hanging),
                                                       ("failing", failing),
                                                       ("redirecting", redirecting)])}
        last = submit(base_url, make_mp3(2, seed=59))
        # Separated one after the other by a single worker: the last song is done while the
        # first song's receiver still holds every request it got.
        assert wait_for_status(base_url, last)["status"] == "done", worker.log()
        outcomes = {name: wait_for(lambda h=song_hash: jobs.get(h).callback_status, 60,
                                   f"no callback outcome for {name}")
                    for name, song_hash in songs.items()}
        assert not hanging.released.is_set()
        assert "Timeout" in outcomes["hanging"] and hanging.count == 2
        assert outcomes["failing"] == "failed: HTTP 500" and failing.count == 2
        assert outcomes["redirecting"] == "failed: HTTP 302 (redirects are not followed)"
        assert redirecting.count == 1
        for name, song_hash in songs.items():
            final = wait_for_status(base_url, song_hash)
            assert final["status"] == "done" and final["callback"] == outcomes[name]
        for request in failing.requests:
            assert request["headers"]["X-Delivery-Id"] == f"{songs['failing']}.1.done"
            assert_signed(request, SECRET)
    assert logged_warning(live_stack.render_log(), songs["failing"], outcomes["failing"])


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_name_that_resolves_to_loopback_is_refused_at_send_time(live_stack, make_mp3):
    worker = LiveWorker(live_stack, CALLBACK_ALLOW_PRIVATE="false")
    base_url = live_stack.start_rest(CALLBACK_ALLOW_PRIVATE="false")
    worker.wait_ready()
    with CallbackReceiver() as receiver:
        # The gateway sees only a host name; the worker resolves it when sending.
        song_hash = submit(base_url, make_mp3(2, seed=60),
                           {"url": receiver.url.replace("127.0.0.1", "localhost")})
        assert wait_for_status(base_url, song_hash)["status"] == "done"
        outcome = wait_for(lambda: wait_for_status(base_url, song_hash)["callback"], 30,
                           "no callback outcome")
        assert outcome.startswith("refused: ") and "non-public" in outcome
        assert receiver.count == 0
    assert logged_warning(live_stack.render_log(), song_hash, outcome)
