"""The worker separating real mp3s with the real Demucs code, on the small untrained
demucs_unittest model."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import sphn

from common.jobs import JobStatus
from common.redisconn import connect
from tests.helpers import CallbackReceiver, b64, wait_for
from worker.errors import ModelLoadError
from worker.main import EXIT_MODEL_UNAVAILABLE, Worker
from worker.separator import Separator, load_model


@pytest.fixture
def run_worker(make_settings, redis_client, storage):
    """Start in-process workers (a thread each); all are stopped at the end of the test."""
    running = []

    def start(**overrides: str) -> Worker:
        settings = make_settings(**overrides)
        worker = Worker(settings, Separator(settings), connect(settings))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        running.append((worker, thread))
        return worker

    yield start
    for worker, thread in running:
        worker.stopping.set()
        thread.join(60)
        worker.redis.close()


@pytest.fixture
def api(make_client):
    return make_client()


def submit(api, mp3: bytes, callback: dict | None = None) -> str:
    body = {"mp3": b64(mp3)}
    if callback:
        body["callback"] = callback
    response = api.post("/apiv1/separate", json=body)
    assert response.status_code == 200, response.json
    return response.json["hash"]


def wait_until_finished(api, song_hash: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.get(f"/apiv1/status/{song_hash}").json
        if status["status"] in ("done", "failed"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"song {song_hash} still {status} after {timeout} s")


def decoded(mp3: bytes, tmp_path, name: str) -> tuple[np.ndarray, int]:
    path = tmp_path / name
    path.write_bytes(mp3)
    return sphn.read(str(path))


def test_a_song_is_separated_into_four_decodable_stems(api, run_worker, make_mp3, tmp_path):
    run_worker()
    mp3 = make_mp3(4, seed=11)
    song_hash = submit(api, mp3)
    status = wait_until_finished(api, song_hash)
    assert status["status"] == "done", status
    assert status["progress"] == 1.0
    assert sorted(status["tracks"]) == ["bass.mp3", "drums.mp3", "other.mp3", "vocals.mp3"]
    assert {"queue_wait", "fetch", "decode", "separate", "encode", "store_stems"} <= set(
        status["timings"])
    original, _ = decoded(mp3, tmp_path, "in.mp3")
    for track in status["tracks"]:
        response = api.get(f"/apiv1/track/{song_hash}/{track}")
        audio, rate = decoded(response.data, tmp_path, track)
        assert rate == 44100 and audio.shape[0] == 2
        assert abs(audio.shape[1] - original.shape[1]) / 44100 < 0.1
        assert np.abs(audio).max() > 0


def test_a_mono_22_khz_song_gives_stereo_44_1_khz_stems(api, run_worker, make_mp3, tmp_path):
    run_worker()
    song_hash = submit(api, make_mp3(2, seed=3, samplerate=22050, channels=1, bitrate=48))
    status = wait_until_finished(api, song_hash)
    assert status["status"] == "done", status
    audio, rate = decoded(api.get(f"/apiv1/track/{song_hash}/vocals").data, tmp_path, "v.mp3")
    assert rate == 44100 and audio.shape[0] == 2
    assert abs(audio.shape[1] / 44100 - 2) < 0.1


def test_stems_are_byte_identical_when_separated_again(api, run_worker, make_mp3):
    run_worker()
    mp3 = make_mp3(3, seed=5)
    song_hash = submit(api, mp3)
    assert wait_until_finished(api, song_hash)["status"] == "done"
    first = {t: api.get(f"/apiv1/track/{song_hash}/{t}").data for t in ("drums", "vocals")}
    for track in ("drums", "vocals"):
        api.delete(f"/apiv1/remove/{song_hash}/{track}")
    assert "again" in api.post("/apiv1/separate",
                               json={"mp3": b64(mp3)}).json["reason"]
    assert wait_until_finished(api, song_hash)["status"] == "done"
    second = {t: api.get(f"/apiv1/track/{song_hash}/{t}").data for t in ("drums", "vocals")}
    assert first == second


def test_an_undecodable_song_fails_and_the_next_one_is_separated(api, run_worker, jobs, storage,
                                                                 short_mp3):
    broken_hash = "b" * 64
    storage.put_song(broken_hash, b"\xff\xfb\x90\x00" + bytes(3000))
    jobs.enqueue(broken_hash, None, max_queue=10)
    good_hash = submit(api, short_mp3)
    run_worker()
    broken = wait_until_finished(api, broken_hash)
    assert broken["status"] == "failed"
    assert broken["error"].startswith("decode_failed: the mp3 could not be decoded")
    assert wait_until_finished(api, good_hash)["status"] == "done"


def test_the_callback_receives_its_data_when_the_job_ends(api, run_worker, short_mp3):
    with CallbackReceiver(answer=204) as receiver:
        run_worker(CALLBACK_ALLOW_PRIVATE="true")
        url = f"{receiver.url}?x=1"
        song_hash = submit(api, short_mp3, {"url": url, "data": {"mine": "back"}})
        assert wait_until_finished(api, song_hash)["status"] == "done"
        wait_for(lambda: receiver.count, 30, "no callback arrived", interval=0.1)
        (request,) = receiver.requests
        assert (request["path"], json.loads(request["body"])) == ("/hook?x=1", {"mine": "back"})
        assert request["headers"]["X-Delivery-Id"].startswith(song_hash)
        while api.get(f"/apiv1/status/{song_hash}").json["callback"] is None:
            time.sleep(0.1)
        assert api.get(f"/apiv1/status/{song_hash}").json["callback"] == "delivered: HTTP 204"


def test_missing_weights_are_named_with_where_they_were_looked_for(tmp_path):
    with pytest.raises(ModelLoadError, match=f"'htdemucs' from the local folder {tmp_path}"):
        load_model("htdemucs", str(tmp_path))
    with pytest.raises(ModelLoadError, match="is not a folder"):
        load_model("htdemucs", str(tmp_path / "absent"))


def test_a_worker_without_weights_says_so_in_one_line_and_takes_no_jobs(service_env, tmp_path,
                                                                        redis_client):
    env = {**service_env, "DEMUCS_MODEL": "htdemucs", "DEMUCS_REPO": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "worker"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == EXIT_MODEL_UNAVAILABLE
    lines = [line for line in result.stdout.splitlines() if "CRITICAL" in line]
    assert len(lines) == 1
    assert "cannot load Demucs model 'htdemucs'" in lines[0] and str(tmp_path) in lines[0]
    assert redis_client.lrange("logging", 0, -1)[-1].endswith(lines[0].split(" CRITICAL ")[1])


def end_job_as(jobs, worker_id: str, mp3_hash: str, callback_url: str) -> None:
    """A job that `worker_id` ended (done) just before dying, its callback still owed."""
    jobs.enqueue(mp3_hash, {"url": callback_url, "data": {"owed": True}}, max_queue=10)
    assert jobs.claim(worker_id, timeout=1) == mp3_hash
    token = jobs.start(mp3_hash, worker_id)
    assert jobs.finish(mp3_hash, worker_id, token, JobStatus.DONE, tracks=["drums.mp3"])
    assert jobs.owed_callbacks(worker_id) == [mp3_hash]


@pytest.fixture
def receiver():
    with CallbackReceiver(answer=204) as running:
        yield running


@pytest.mark.parametrize("dead_worker", ["another-worker", "same-id"])
def test_a_callback_owed_by_a_dead_worker_is_sent_by_a_live_one(run_worker, jobs, redis_client,
                                                                receiver, dead_worker):
    song_hash = "c" * 64
    own_id = "same-id"
    end_job_as(jobs, dead_worker, song_hash, receiver.url)
    redis_client.sadd("workers", dead_worker)  # registered, and its heartbeat long expired
    run_worker(CALLBACK_ALLOW_PRIVATE="true", WORKER_ID=own_id, REAPER_INTERVAL_S="1")
    wait_for(lambda: receiver.count, 60, "the owed callback was never sent", interval=0.1)
    assert receiver.count == 1 and receiver.bodies() == [{"owed": True}]
    deadline = time.monotonic() + 30
    while jobs.get(song_hash).callback_status == "" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert jobs.get(song_hash).callback_status == "delivered: HTTP 204"
    assert jobs.owed_callbacks(dead_worker) == [] and jobs.owed_callbacks(own_id) == []
    time.sleep(2)  # two more reaper passes: the callback is not sent again
    assert receiver.count == 1
