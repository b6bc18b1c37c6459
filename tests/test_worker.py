"""The worker separating real mp3s with the real Demucs code, on the small untrained
demucs_unittest model."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import sphn

from common import keys, operations
from common.jobs import JobStatus, render_id
from common.storage import lossless_object
from tests.helpers import STEMS, b64, put_song, reaper_passes, wait_for, wait_for_job
from tests.servers import CallbackReceiver
from worker.runtime.errors import ModelLoadError
from worker.separation.main import EXIT_MODEL_UNAVAILABLE
from worker.separation.model import load_model


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


ENDED = ("done", "failed", "cancelled")


def decoded(mp3: bytes, tmp_path, name: str) -> tuple[np.ndarray, int]:
    path = tmp_path / name
    path.write_bytes(mp3)
    return sphn.read(str(path))


def lossless_stems(storage, song_hash: str, model: str = "demucs_unittest") -> dict:
    """`{stem: (samples, rate)}` of the lossless stems stored for a song and model."""
    stems = {}
    for stem in STEMS:
        data = storage.client.get_object(storage.output_bucket,
                                         lossless_object(song_hash, model, stem)).read()
        audio, rate = soundfile.read(io.BytesIO(data), always_2d=True)
        stems[stem] = (audio, rate, data)
    return stems


def wait_until_separated(jobs, song_hash: str, timeout: float = 120):
    """The separation's record once its stems are stored (it then waits for its render job),
    or once it ended."""
    return wait_for_job(jobs, song_hash, lambda j: j.awaiting or j.status in ENDED, timeout)


def test_a_song_is_separated_into_lossless_stems_and_its_render_job_queued(
        api, run_worker, jobs, storage, make_mp3, tmp_path):
    run_worker()
    mp3 = make_mp3(4, seed=11)
    song_hash = submit(api, mp3)
    job = wait_until_separated(jobs, song_hash)
    assert (job.status, job.progress) == (JobStatus.PROCESSING, 0.9)
    assert job.awaiting == f"{song_hash}:demucs_unittest:mp3-320"
    # Its rendition first, then what every separated song gets (waveforms, analysis): queued
    # by the hand-off itself, without anybody reading the song's status.
    studio = [render_id(song_hash, "demucs_unittest", op) for op in operations.STUDIO]
    assert jobs.queued(keys.RENDER_QUEUE) == [job.awaiting, *studio]
    assert {jobs.get(render).parent for render in (job.awaiting, *studio)} == {song_hash}
    assert {"queue_wait", "fetch", "decode", "separate", "store"} <= set(job.timings)
    assert jobs.models() == {"demucs_unittest": ["drums", "bass", "other", "vocals"]}
    original, _ = decoded(mp3, tmp_path, "in.mp3")
    for audio, rate, _ in lossless_stems(storage, song_hash).values():
        assert rate == 44100 and audio.shape[1] == 2
        assert abs(audio.shape[0] - original.shape[1]) / 44100 < 0.1
        assert np.abs(audio).max() > 0


def test_a_mono_22_khz_song_gives_stereo_44_1_khz_stems(api, run_worker, jobs, storage,
                                                        make_mp3):
    run_worker()
    song_hash = submit(api, make_mp3(2, seed=3, samplerate=22050, channels=1, bitrate=48))
    assert wait_until_separated(jobs, song_hash).awaiting
    audio, rate, _ = lossless_stems(storage, song_hash)["vocals"]
    assert rate == 44100 and audio.shape[1] == 2
    assert abs(audio.shape[0] / 44100 - 2) < 0.1


def test_stems_are_byte_identical_when_separated_again(api, run_worker, jobs, storage,
                                                      make_mp3):
    run_worker()
    mp3 = make_mp3(3, seed=5)
    song_hash = submit(api, mp3)
    assert wait_until_separated(jobs, song_hash).awaiting
    first = {stem: data for stem, (_, _, data) in lossless_stems(storage, song_hash).items()}
    jobs.delete_song(song_hash)  # the stems stay in the store: only the records go
    jobs.deleted(song_hash)  # the deletion is over: the song may be submitted again
    assert submit(api, mp3) == song_hash
    assert wait_until_separated(jobs, song_hash).awaiting
    second = {stem: data for stem, (_, _, data) in lossless_stems(storage, song_hash).items()}
    assert first == second


def test_an_undecodable_song_fails_and_the_next_one_is_separated(api, run_worker, jobs, storage,
                                                                 short_mp3):
    broken_hash = "b" * 64
    put_song(storage, broken_hash, b"\xff\xfb\x90\x00" + bytes(3000))
    jobs.enqueue(broken_hash, None, max_queue=10)
    good_hash = submit(api, short_mp3)
    run_worker()
    broken = wait_until_separated(jobs, broken_hash)
    assert broken.status == "failed"
    assert broken.error.startswith("decode_failed: the audio could not be decoded")
    assert wait_until_separated(jobs, good_hash).awaiting


def test_the_callback_receives_its_data_when_the_separation_ends_it(api, run_worker, jobs,
                                                                    short_mp3):
    with CallbackReceiver(answer=204) as receiver:
        # A worker with a shorter limit than the gateway's: the separation itself ends the job.
        run_worker(CALLBACK_ALLOW_PRIVATE="true", MAX_DURATION_S="1")
        url = f"{receiver.url}?x=1"
        song_hash = submit(api, short_mp3, {"url": url, "data": {"mine": "back"}})
        assert wait_until_separated(jobs, song_hash).error.startswith("too_long")
        wait_for(lambda: receiver.count, 30, "no callback arrived", interval=0.1)
        (request,) = receiver.requests
        assert (request["path"], json.loads(request["body"])) == ("/hook?x=1", {"mine": "back"})
        assert request["headers"]["X-Delivery-Id"].startswith(song_hash)
        wait_for(lambda: api.get(f"/apiv1/status/{song_hash}").json["callback"], 30,
                 "the callback was not recorded")
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
    wait_for(lambda: jobs.get(song_hash).callback_status, 30, "the callback was not recorded")
    assert jobs.get(song_hash).callback_status == "delivered: HTTP 204"
    assert jobs.owed_callbacks(dead_worker) == [] and jobs.owed_callbacks(own_id) == []
    reaper_passes(redis_client, 3)  # two whole passes more: the callback is not sent again
    assert receiver.count == 1
