"""Render operations made by a render worker process from stored stems: a mix (equal to the
two-stem track it amounts to, and to numpy's sum at the gains and region asked), waveform peaks
of each stem and of the mix, and the song's analysis; then the same through the gateway."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyloudnorm
import pytest
import requests
import soundfile

from client import cli
from common import mixes, operations
from common.jobs import JobStatus, JobStore, Kind, render_id
from common.storage import rendition_object
from scripts.local import stack
from tests.conftest import LiveStack
from tests.helpers import fresh_stores, wait_for, wait_for_job
from tests.stems import read_lossless, render_track
from tests.test_render_worker import MODEL, STEMS, pcm, separated
from worker.render.encode import clip_scale, quantize
from worker.render.peaks import LEVELS, read_peaks

pytestmark = pytest.mark.slow
RATE = 44100
_rigs, _songs = itertools.count(), itertools.count(1)


def made(jobs, storage, song_hash: str, params: dict | None, kind: str) -> dict[str, bytes]:
    """Ask for an operation of the song; its files once the render worker made them."""
    op = mixes.mix_id(params) if params else operations.operation_id(kind)
    canonical = operations.canonical_params(params) if params else ""
    # The studio operations were queued by the song's hand-off: asking finds them.
    expected = {"queued", "processing", "stored"} if kind in operations.STUDIO else {"enqueued"}
    assert jobs.request_rendition(song_hash, MODEL, op, canonical) in expected
    job = wait_for_job(jobs, render_id(song_hash, MODEL, op),
                       lambda j: j.status in (JobStatus.DONE, JobStatus.FAILED))
    assert (job.status, job.error) == (JobStatus.DONE, "")
    return {name: storage.get_output(rendition_object(song_hash, MODEL, op, name))
            for name in job.tracks}


@pytest.fixture(scope="module")
def rig(redis_server, s3_server, tmp_path_factory):
    """One gateway and one render worker for the module, on buckets of its own."""
    number = next(_rigs)
    env = stack.service_env(redis_server, s3_server, SONGS_BUCKET=f"ops-songs-{number}",
                            OUTPUT_BUCKET=f"ops-output-{number}", DEMUCS_MODEL=MODEL,
                            DEMUCS_MODELS=MODEL, DEFAULT_MODEL=MODEL, HEARTBEAT_TTL_S="3")
    client, storage = fresh_stores(env)
    live = LiveStack(env, tmp_path_factory.mktemp("operations"))
    base = live.start_rest()
    live.start_render(RENDER_PROCESSES="2")
    yield SimpleNamespace(env=env, jobs=JobStore(client, MODEL), storage=storage, base=base,
                          folder=live.folder)
    live.stop()
    storage.close()
    client.close()


@pytest.fixture(scope="module")
def jobs(rig):
    return rig.jobs


@pytest.fixture(scope="module")
def storage(rig):
    return rig.storage


@pytest.fixture
def song(rig):
    """A separated song of 2 s of its own (stems in the store, its wav-16 rendition made)."""
    song_hash = f"{next(_songs):064x}"
    stems = separated(rig.jobs, rig.storage, song_hash, 2, "wav-16")
    wait_for_job(rig.jobs, song_hash, lambda j: j.status is JobStatus.DONE)
    return song_hash, stems


def test_a_mix_without_vocals_is_the_no_vocals_track(jobs, storage, song):
    song_hash, stems = song
    params = mixes.mix_params({"mute": ["vocals"], "format": "wav"}, STEMS)
    files = made(jobs, storage, song_hash, params, "mix")
    others = [stems[s] for s in STEMS if s != "vocals"]
    assert list(files) == ["mix.wav"]
    assert files["mix.wav"] == render_track(others, "wav", 16)


def test_a_mix_at_gains_over_a_region_is_their_sum_there(jobs, storage, song):
    song_hash, stems = song
    params = mixes.mix_params({"gains": {"drums": -6, "bass": 3}, "solo": ["drums", "bass"],
                               "start": 0.5, "end": 1.25, "format": "flac", "bits": 24}, STEMS)
    data = made(jobs, storage, song_hash, params, "mix")["mix.flac"]
    whole = {s: read_lossless(stems[s])[0] for s in STEMS}
    region = slice(int(0.5 * RATE), int(1.25 * RATE))
    expected = (whole["drums"][:, region] * np.float32(10 ** (-6 / 20))
                + whole["bass"][:, region] * np.float32(10 ** (3 / 20)))
    wanted = quantize(expected, clip_scale(np.abs(expected).max()), 24)
    got = pcm(data) >> 8  # libsndfile gives 24-bit samples in the top bits of int32
    assert got.shape == wanted.shape
    assert np.abs(got - wanted).max() <= 1  # float summation order: one step of 24 bits


def test_peaks_of_each_stem_and_the_mix_at_every_level(jobs, storage, song):
    song_hash, stems = song
    files = made(jobs, storage, song_hash, None, "peaks")
    assert sorted(files) == sorted(f"{name}.{spp}.dat" for name in [*STEMS, "mix"]
                                   for spp in LEVELS)
    vocals = read_lossless(stems["vocals"])[0]
    for spp in LEVELS:
        rate, level, pairs = read_peaks(files[f"vocals.{spp}.dat"])
        assert (rate, level, len(pairs)) == (RATE, spp, -(-vocals.shape[1] // spp))
        first = vocals[:, :spp]
        assert tuple(pairs[0]) == (round(first.min() * 127), round(first.max() * 127))


def test_the_analysis_names_tempo_key_and_loudness_of_the_mix_and_each_stem(
        jobs, storage, song):
    song_hash, stems = song
    report = json.loads(made(jobs, storage, song_hash, None, "analysis")["analysis.json"])
    assert list(report["stems"]) == STEMS
    mix = sum(read_lossless(stems[s])[0].astype(np.float64) for s in STEMS)
    reference = pyloudnorm.Meter(RATE).integrated_loudness(mix.T)
    assert abs(report["mix"]["loudness_lufs"] - reference) < 0.1
    for figures in [report["mix"], *report["stems"].values()]:
        assert set(figures) == {"tempo_bpm", "key", "loudness_lufs", "duration_s"}
        assert figures["duration_s"] == 2.0


def test_the_gateway_queues_a_mix_then_serves_it(rig, song):
    song_hash, stems = song
    base = rig.base
    asked = {"model": MODEL, "mute": ["vocals"], "format": "wav"}
    answer = requests.post(f"{base}/apiv1/mix/{song_hash}", json=asked, timeout=10)
    assert answer.status_code == 202 and answer.headers["Retry-After"]
    location = answer.headers["Location"]
    assert answer.json()["operation"] == location.split("/")[-1].split("?")[0]

    def fetched():
        got = requests.get(base + location, timeout=10)
        return got if got.status_code == 200 else None

    got = wait_for(fetched, 60, "the mix to be made")
    assert got.headers["Content-Type"] == "audio/wav"
    assert got.content == render_track([stems[s] for s in STEMS if s != "vocals"], "wav", 16)
    again = requests.post(f"{base}/apiv1/mix/{song_hash}", json=dict(reversed(asked.items())),
                          timeout=10)
    assert again.status_code == 200 and again.headers["Location"] == location
    assert soundfile.info(io.BytesIO(got.content)).frames == 2 * RATE
    # By byte range, as a player asks for a long file: the part asked for, and its place.
    part = requests.get(base + location, headers={"Range": "bytes=100-199"}, timeout=10)
    assert (part.status_code, part.content) == (206, got.content[100:200])
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(got.content)}"
    tail = requests.get(base + location, headers={"Range": "bytes=-10"}, timeout=10)
    assert (tail.status_code, tail.content) == (206, got.content[-10:])
    beyond = requests.get(base + location, headers={"Range": "bytes=99999999-"}, timeout=10)
    assert beyond.status_code == 416 and "outside" in beyond.json()["error"]
    assert beyond.headers["Content-Range"] == f"bytes */{len(got.content)}"
    stem = requests.get(f"{base}/apiv1/track/{song_hash}/vocals.wav?bits=16",
                        headers={"Range": "bytes=0-43"}, timeout=10)  # a WAV header
    assert stem.status_code == 206 and stem.content[:4] == b"RIFF" and len(stem.content) == 44


BAD_MIXES = [
    ({"mute": ["kazoo"]}, "no stem kazoo"),
    ({"mute": STEMS}, "every stem is muted"),
    ({"gains": {"drums": "loud"}}, "number of dB"),
    ({"start": 5, "end": 2}, "end must come after start"),
    ({"format": "ogg"}, "unknown format"),
    ({"format": "wav", "bits": 12}, "bits 12 is not offered"),
]


def test_a_bad_mix_request_says_what_to_fix(rig, jobs, song):
    song_hash, _ = song
    base = rig.base
    for body, words in BAD_MIXES:
        answer = requests.post(f"{base}/apiv1/mix/{song_hash}", json=body, timeout=10)
        assert answer.status_code == 400 and words in answer.json()["error"], (body, answer.text)
    not_json = requests.post(f"{base}/apiv1/mix/{song_hash}", data="mute", timeout=10)
    assert not_json.status_code == 415 and "application/json" in not_json.json()["error"]
    for body in ('["vocals"]', '{"gains": {"vocals": NaN}}'):
        answer = requests.post(f"{base}/apiv1/mix/{song_hash}", data=body, timeout=10,
                               headers={"Content-Type": "application/json"})
        assert answer.status_code == 400 and "JSON" in answer.json()["error"], answer.text
    missing = requests.get(f"{base}/apiv1/mix/{song_hash}/mix-0123456789abcdef", timeout=10)
    assert missing.status_code == 404 and "POST" in missing.json()["error"]
    made = {job.rendition for job in jobs.song_jobs(song_hash) if job.kind is Kind.RENDER}
    assert made == {"wav-16", *operations.STUDIO}  # nothing was queued for any of them


def test_mixes_count_against_the_render_limits(rig, jobs, song):
    song_hash, _ = song  # its wav-16 rendition is one render job already (the studio's none)
    port = stack.free_port()
    gateway = stack.start_rest(port, {**rig.env, "MAX_RENDITIONS_PER_SONG": "2"},
                               rig.folder / "limited-rest.log")
    try:
        limited(f"http://127.0.0.1:{port}", jobs, song_hash)
    finally:
        stack.stop(gateway, timeout=10)


def limited(base: str, jobs, song_hash: str) -> None:
    """What a gateway that allows a song two render jobs answers."""
    first = requests.post(f"{base}/apiv1/mix/{song_hash}", json={"mute": ["drums"]}, timeout=10)
    assert first.status_code in (200, 202)
    second = requests.post(f"{base}/apiv1/mix/{song_hash}", json={"mute": ["bass"]}, timeout=10)
    assert second.status_code == 409 and "2 renditions already" in second.json()["error"]
    again = requests.post(f"{base}/apiv1/mix/{song_hash}", json={"mute": ["drums"]}, timeout=10)
    assert again.status_code in (200, 202)  # the same mix is no new job
    head = requests.head(f"{base}/apiv1/track/{song_hash}/vocals.flac?bits=24", timeout=10)
    assert head.status_code == 404 and jobs.get(render_id(song_hash, MODEL, "flac-24")) is None


def test_the_cli_saves_a_karaoke_loop_in_one_step(rig, song, tmp_path, capsys):
    song_hash, _ = song
    base = rig.base
    status = cli.main(["--server", base, "mix", song_hash, "--mute", "vocals", "--gain",
                       "drums=-3", "--from", "0.5", "--to", "1.5", "--format", "flac",
                       "-o", str(tmp_path)])
    assert status == 0
    saved = Path(capsys.readouterr().out.splitlines()[-1])  # after the progress lines
    assert saved.parent == tmp_path and saved.name.startswith(f"{song_hash}-mix-")
    info = soundfile.info(str(saved))
    assert (info.frames, info.format) == (RATE, "FLAC")
    with pytest.raises(SystemExit, match="must be STEM=DB"):
        cli.main(["--server", base, "mix", song_hash, "--gain", "drums"])


def test_waveforms_and_analysis_are_made_for_a_separated_song_nobody_looked_at(rig, jobs,
                                                                              storage, song):
    """Queued by the separation's hand-off: made without any status read or request."""
    song_hash, _ = song
    for op in operations.STUDIO:
        job = wait_for_job(jobs, render_id(song_hash, MODEL, op),
                           lambda j: j.status in (JobStatus.DONE, JobStatus.FAILED))
        assert (job.status, job.error, job.parent) == (JobStatus.DONE, "", song_hash)
    report = json.loads(storage.get_output(
        rendition_object(song_hash, MODEL, operations.ANALYSIS, "analysis.json")))
    assert report["mix"]["duration_s"] == 2.0
    assert jobs.get(render_id(song_hash, MODEL, operations.PEAKS)).tracks
    status = requests.get(f"{rig.base}/apiv1/status/{song_hash}", timeout=10).json()
    assert status["analysis"] == report


def test_a_song_whose_hand_off_found_the_render_queue_full_gets_them_from_its_status(
        rig, jobs, storage):
    """The render queue full at its hand-off, a song gets its rendition only; the first read
    of its status asks for the rest (as for a song separated before they were queued so)."""
    song_hash = f"{next(_songs):064x}"
    separated(JobStore(jobs.redis, MODEL, max_render_queue=1), storage, song_hash, 2, "wav-16")
    assert all(jobs.get(render_id(song_hash, MODEL, op)) is None for op in operations.STUDIO)
    wait_for_job(jobs, song_hash, lambda j: j.status is JobStatus.DONE)
    url = f"{rig.base}/apiv1/status/{song_hash}"
    assert requests.get(url, timeout=10).json()["analysis"] == {"status": "enqueued"}
    assert all(jobs.get(render_id(song_hash, MODEL, op)) for op in operations.STUDIO)

    def figures():
        return (requests.get(url, timeout=10).json()["analysis"] or {}).get("mix")

    mix = wait_for(figures, 60, "the analysis in the status")
    assert mix["duration_s"] == 2.0 and mix["loudness_lufs"] < 0


def test_the_playback_index_points_at_frames_the_lossless_route_serves_by_range(rig, song):
    song_hash, stems = song
    url = f"{rig.base}/apiv1/playback/{song_hash}"
    first = requests.get(url, timeout=10)  # queued at the separation's end: maybe made already
    assert first.status_code == 200 or first.headers["Location"].startswith(
        f"/apiv1/playback/{song_hash}")
    answer = wait_for(lambda: (r := requests.get(url, timeout=10)).status_code == 200 and r.json(),
                      60, "the seek index")
    assert (answer["format"], answer["gain"], list(answer["stems"])) == ("flac", 8.0, STEMS)
    vocals = answer["stems"]["vocals"]
    assert (vocals["sample_rate"], vocals["channels"], vocals["total_samples"]) == (
        RATE, 2, 2 * RATE)
    assert vocals["bytes"] == len(stems["vocals"]) and vocals["frames"][0] == [
        0, vocals["header_bytes"]]
    _, offset = vocals["frames"][1]
    part = requests.get(rig.base + vocals["url"], headers={"Range": f"bytes={offset}-"},
                        timeout=10)
    assert part.status_code == 206 and part.content == stems["vocals"][offset:]
    header = requests.get(rig.base + vocals["url"],
                          headers={"Range": f"bytes=0-{vocals['header_bytes'] - 1}"}, timeout=10)
    assert header.content == stems["vocals"][:vocals["header_bytes"]]
    missing = requests.get(f"{rig.base}/apiv1/lossless/{song_hash}/kazoo.flac", timeout=10)
    assert missing.status_code == 404 and "has no stem 'kazoo'" in missing.json()["error"]
