"""The render worker as a process against real Redis and S3 servers: it makes the rendition a
separation asked for and ends that separation, makes any other rendition asked later, loses
nothing when killed, and leaves nothing behind for a song deleted while it renders."""

from __future__ import annotations

import io

import numpy as np
import pytest
import requests
import soundfile
import sphn

from common import keys, operations
from common.jobs import JobStatus, render_id
from common.storage import rendition_object
from common.tracks import parse_rendition
from scripts.local import stack
from scripts.local.make_samples import synthesize
from tests.helpers import wait_for, wait_for_claim, wait_for_job
from tests.stems import render_track, write_lossless

pytestmark = pytest.mark.slow

RATE = 44100
MODEL = "demucs_unittest"
STEMS = ["drums", "bass", "other", "vocals"]
LAME_FRAME = 1152


@pytest.fixture
def renderers(service_env, tmp_path, redis_client, storage):
    """Factory of render worker processes (`renderers(count, **env)`), all stopped after."""
    started = []

    def start(count: int = 1, **extra: str) -> list[tuple[str, object]]:
        workers = []
        for _ in range(count):
            worker_id = f"test-render-{len(started) + 1}"
            env = {**service_env, "HEARTBEAT_TTL_S": "3", "REAPER_INTERVAL_S": "1",
                   "RENDER_PROCESSES": "1", "WORKER_ID": worker_id, **extra}
            process = stack.start_render(env, tmp_path / f"{worker_id}.log")
            started.append(process)
            workers.append((worker_id, process))
        return workers

    yield start
    for process in started:
        if process.poll() is None:
            stack.stop(process, timeout=10)
        stack.kill_group(process)  # leftover render processes


def separated(jobs, storage, song_hash: str, seconds: float, rendition: str) -> dict[str, bytes]:
    """A song as a separation worker leaves it: its lossless stems stored and its claim
    handed off to the render job of `rendition`. Returns the stems' FLAC bytes."""
    # Music-like stems, each its own synthetic song at a third of its level: none clips alone
    # or summed, so the mp3 sums below compare like with like.
    seed = int(song_hash[-6:], 16)
    stems = {stem: write_lossless((synthesize(seconds, seed=seed + n) / 3).astype("f4"), RATE)
             for n, stem in enumerate(STEMS)}
    jobs.register_model(MODEL, STEMS)
    jobs.enqueue(song_hash, None, 100, model=MODEL, rendition=rendition)
    job_id = jobs.claim("test-separator", 1, queue=jobs.queue_for(MODEL))
    token = jobs.start(job_id, "test-separator")
    for stem, data in stems.items():
        storage.put_lossless(song_hash, MODEL, stem, data)
    render = render_id(song_hash, MODEL, rendition)
    assert jobs.hand_off(job_id, "test-separator", token, song_hash, render, {}) == "rendering"
    return stems


def stored(storage, song_hash: str, rendition: str, track: str) -> bytes:
    return storage.get_output(rendition_object(song_hash, MODEL, rendition, track))


def tracks_stored(storage, song_hash: str, rendition: str) -> list[str]:
    return sorted(storage.names_under(f"{song_hash}/{MODEL}/{rendition}/"))


def pcm(data: bytes) -> np.ndarray:
    return soundfile.read(io.BytesIO(data), dtype="int32")[0]


def mp3_samples(data: bytes, tmp_path) -> np.ndarray:
    path = tmp_path / "track.mp3"
    path.write_bytes(data)
    samples, rate = sphn.read(str(path))
    assert rate == RATE
    return samples


def test_the_rendition_a_separation_asked_for_ends_it(jobs, storage, renderers):
    song_hash = "a" * 63 + "1"
    stems = separated(jobs, storage, song_hash, 2, "wav-16")
    port = stack.free_port()
    renderers(1, METRICS_PORT=str(port))
    job = wait_for_job(jobs, song_hash, lambda j: j.status in (JobStatus.DONE, JobStatus.FAILED))
    assert (job.status, job.error) == (JobStatus.DONE, "")
    assert job.tracks == [f"{stem}.wav" for stem in STEMS]
    render = jobs.get(render_id(song_hash, MODEL, "wav-16"))
    assert render.status is JobStatus.DONE and render.complete and render.tracks == job.tracks
    for stem in STEMS:  # exactly what the render module makes of the stored stem
        assert stored(storage, song_hash, "wav-16", f"{stem}.wav") == render_track(
            [stems[stem]], "wav", 16)
    # The hand-off also queued the song's studio operations: count once all of them are done.
    for op in operations.STUDIO:
        studio_job = wait_for_job(jobs, render_id(song_hash, MODEL, op),
                                  lambda j: j.status in (JobStatus.DONE, JobStatus.FAILED))
        assert studio_job.status is JobStatus.DONE, studio_job.error
    done = f'micro_demucs_worker_jobs_total{{outcome="done"}} {1 + len(operations.STUDIO)}.0'
    wait_for(lambda: done in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text,
             10, f"the render worker's metrics never said {done}")


def test_every_format_and_two_stems_from_the_same_stems(jobs, storage, renderers, tmp_path):
    song_hash = "b" * 63 + "2"
    stems = separated(jobs, storage, song_hash, 1.5, "mp3-320")
    renderers(1, RENDER_PROCESSES="2")
    wait_for_job(jobs, song_hash, lambda j: j.status is JobStatus.DONE)
    asked = ["wav-24", "flac-16", "flac-24", "mp3-128", "wav-16+vocals", "flac-24+vocals",
             "mp3-320+vocals"]
    for rendition in asked:
        assert jobs.request_rendition(song_hash, MODEL, rendition) == "enqueued"
    for rendition in asked:
        job = wait_for_job(jobs, render_id(song_hash, MODEL, rendition),
                           lambda j: j.status in (JobStatus.DONE, JobStatus.FAILED))
        assert job.status is JobStatus.DONE, job.error
    length = int(1.5 * RATE)
    for rendition in ["mp3-320", "wav-24", "flac-16", "flac-24", "mp3-128"]:
        ext = rendition.split("-")[0]
        for stem in STEMS:
            data = stored(storage, song_hash, rendition, f"{stem}.{ext}")
            if ext == "mp3":  # LAME adds its encoder delay and pads the last frame
                assert length <= mp3_samples(data, tmp_path).shape[1] <= length + 2 * LAME_FRAME
            else:
                info = soundfile.info(io.BytesIO(data))
                assert (info.frames, info.channels, info.subtype) == (
                    length, 2, f"PCM_{rendition[-2:]}")
    others = [stems[s] for s in STEMS if s != "vocals"]
    for rendition, ext in [("wav-16+vocals", "wav"), ("flac-24+vocals", "flac")]:
        quality = parse_rendition(rendition).quality
        # Exactly the sum of the other lossless stems, rescaled and quantized as the CLI does.
        assert pcm(stored(storage, song_hash, rendition, f"no_vocals.{ext}")).tolist() == pcm(
            render_track(others, ext, quality)).tolist()
        assert stored(storage, song_hash, rendition, f"vocals.{ext}") == render_track(
            [stems["vocals"]], ext, quality)
    # mp3: the decoded no_vocals against the sum of the decoded others, within mp3's error.
    no_vocals = mp3_samples(stored(storage, song_hash, "mp3-320+vocals", "no_vocals.mp3"),
                            tmp_path)
    summed = sum(mp3_samples(stored(storage, song_hash, "mp3-320", f"{s}.mp3"), tmp_path)
                 for s in STEMS if s != "vocals")
    error = np.sum((no_vocals - summed) ** 2)
    assert 10 * np.log10(np.sum(summed ** 2) / error) > 25  # 33 dB measured


def test_a_render_worker_killed_mid_job_loses_nothing(jobs, storage, renderers, redis_client):
    song_hash = "c" * 63 + "3"
    separated(jobs, storage, song_hash, 12, "mp3-320")
    workers = dict(renderers(2))
    render = render_id(song_hash, MODEL, "mp3-320")
    holder = wait_for_claim(redis_client, render, list(workers))
    wait_for_job(jobs, render, lambda j: j.status is JobStatus.PROCESSING and j.token)
    stack.kill_group(workers[holder])  # kill -9, with its render processes
    job = wait_for_job(jobs, song_hash, lambda j: j.status in (JobStatus.DONE, JobStatus.FAILED),
                       timeout=120)
    assert (job.status, job.error) == (JobStatus.DONE, "")
    render_job = jobs.get(render)
    assert render_job.deaths == 1 and render_job.attempts == 2
    assert render_job.worker != holder
    assert tracks_stored(storage, song_hash, "mp3-320") == sorted(f"{s}.mp3" for s in STEMS)
    for op in operations.STUDIO:  # queued behind it by the hand-off
        wait_for_job(jobs, render_id(song_hash, MODEL, op), lambda j: j.status in (
            JobStatus.DONE, JobStatus.FAILED), timeout=120)
    assert redis_client.llen(keys.inflight(keys.RENDER_QUEUE)) == 0


def test_a_song_deleted_while_rendering_leaves_no_track(jobs, storage, renderers, redis_client,
                                                        tmp_path):
    song_hash = "d" * 63 + "4"
    separated(jobs, storage, song_hash, 12, "mp3-320")
    ((worker_id, _),) = renderers(1)
    wait_for(lambda: tracks_stored(storage, song_hash, "mp3-320"), 60,
             "no track stored yet", interval=0.02)
    # What DELETE does: every record first (the running attempt loses its token), then objects.
    jobs.delete_song(song_hash)
    storage.remove_song_everything(song_hash)
    wait_for(lambda: not redis_client.lrange(keys.processing(worker_id), 0, -1), 60,
             "the render worker still holds the deleted job")
    wait_for(lambda: not tracks_stored(storage, song_hash, "mp3-320"), 10,
             "tracks of the deleted song remain")
    assert not storage.names_under(f"{song_hash}/")
    # Only the gateway's deletion counter stays, on purpose (it outlives the song a day).
    assert redis_client.keys(f"*{song_hash}*") == [keys.deletions(song_hash)]
    # The worker itself removed what it stored (the deletion may have listed objects first).
    assert "tracks of an unfinished rendition" in (
        tmp_path / f"{worker_id}.log").read_text()
