"""A long song in Debian's chromium: its lossless stems (24-bit stereo FLAC, as the separation
worker stores them) play by byte range, so playing starts within seconds, seeks anywhere at
once, and the browser's memory stays bounded (under 500 MB, all its processes summed); with a
key for every read, the page fetches byte ranges only, a small part of the stems.

Render-only setup: one long FLAC is encoded once and stored under each stem's name, with the
seek index the render worker would make of it, so neither a separation nor a render of hours
runs. The stems are quiet tone bursts (small objects); decoded, they take the browser as much
memory as any music. 60 minutes by default; PAGE_LONG_MINUTES=180 measures three hours."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

from common import flac, keys, operations, tracks
from common.flacindex import build_index
from common.jobs import JobStatus, JobStore, render_id
from common.storage import lossless_object, rendition_object
from scripts.local import stack
from tests.conftest import LiveStack
from tests.helpers import fresh_stores
from tests.test_page import browser  # noqa: F401  (the module's chromium)

pytestmark = pytest.mark.slow

MODEL = "demucs_unittest"
STEMS = list(tracks.FOUR_STEMS)
MINUTES = int(os.environ.get("PAGE_LONG_MINUTES", "60"))
RATE = 44100
MEMORY_LIMIT = 500 << 20
KEY = "long-song-admin-key"


def long_flac(path: Path, minutes: int) -> None:
    """A 24-bit stereo stem `minutes` long: a half-second tone every 5 s, silence between
    (FLAC keeps silence in a few bytes a frame), written a minute at a time."""
    t = np.arange(60 * RATE) / RATE
    burst = (t % 5) < 0.5
    with flac.writer(str(path), RATE, 2) as stem:
        for minute in range(minutes):
            block = np.zeros((len(t), 2), np.float32)
            tone = 0.2 * np.sin(2 * np.pi * (220 + 20 * (minute % 12)) * t[burst])
            block[burst] = tone[:, None]
            flac.write_block(stem, block)


def chromium_memory() -> int:
    """Proportional set size, in bytes, of every chromium process started from this one."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    total, pending = 0, [os.getpid()]
    while pending:
        pid = pending.pop()
        pending += children.get(pid, [])
        try:
            if "chrom" not in Path(f"/proc/{pid}/comm").read_text():
                continue
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += int(re.search(r"^Pss:\s+(\d+) kB", rollup, re.MULTILINE).group(1)) << 10
    return total


def finish_renders(jobs: JobStore, done: dict[str, tuple[list[str], str]]) -> None:
    """Claim every queued render job, as a render worker would, and end those of `done`
    ({job id: (tracks, parent)}) done; the others stay claimed and unmade."""
    claimed = set()
    while (job_id := jobs.claim("test-render", 1, queue=keys.RENDER_QUEUE)) is not None:
        claimed.add(job_id)
    assert set(done) <= claimed, f"{set(done) - claimed} not queued"
    for job_id, (made, parent) in done.items():
        token = jobs.start(job_id, "test-render")
        assert jobs.finish(job_id, "test-render", token, JobStatus.DONE, tracks=made,
                           parent=parent)


@pytest.fixture(scope="module")
def long_song(redis_server, s3_server, tmp_path_factory):
    """(base URL, keyed base URL, hash, stem bytes): a gateway, another that wants a key for
    every read, and a song `MINUTES` long, separated, its lossless stems and index stored."""
    folder = tmp_path_factory.mktemp("long")
    env = stack.service_env(redis_server, s3_server, SONGS_BUCKET="long-songs",
                            OUTPUT_BUCKET="long-output", DEMUCS_MODEL=MODEL, DEMUCS_MODELS=MODEL,
                            DEFAULT_MODEL=MODEL)
    client, storage = fresh_stores(env)
    jobs = JobStore(client, MODEL)
    song_hash, rendition = "f" * 63 + "6", "mp3-320"
    jobs.register_model(MODEL, STEMS)
    jobs.enqueue(song_hash, None, 100, model=MODEL, rendition=rendition)
    separation = jobs.claim("test-separator", 1, queue=jobs.queue_for(MODEL))
    token = jobs.start(separation, "test-separator")
    stem_file = folder / "stem.flac"
    long_flac(stem_file, MINUTES)
    for stem in STEMS:  # as the separation worker leaves them
        storage.put_output_file(lossless_object(song_hash, MODEL, stem), str(stem_file),
                                "audio/flac")
    render = render_id(song_hash, MODEL, rendition)
    assert jobs.hand_off(separation, "test-separator", token, song_hash, render, {}) == "rendering"
    # As the render worker would: the seek index stored, then the rendition's job ended (the
    # song with it; its tracks are never fetched here).
    index = folder / "seekindex.json"
    with open(stem_file, "rb") as stem:
        one = build_index(stem).as_json()
    index.write_text(json.dumps({"stems": dict.fromkeys(STEMS, one)}))
    jobs.request_rendition(song_hash, MODEL, operations.SEEKINDEX)  # or the hand-off did
    storage.put_output_file(rendition_object(song_hash, MODEL, operations.SEEKINDEX,
                                             "seekindex.json"), str(index), "application/json")
    finish_renders(jobs, {
        render_id(song_hash, MODEL, operations.SEEKINDEX): (["seekindex.json"], ""),
        render: ([tracks.track_name(stem, "mp3") for stem in STEMS], separation)})
    live = LiveStack(env, folder)
    base_url = live.start_rest()
    keyed_port = stack.free_port()
    keyed = stack.start_rest(keyed_port, {**env, "API_KEYS": f"{KEY}:admin",
                                          "PROTECT_READS": "true"}, folder / "keyed-rest.log")
    yield base_url, f"http://127.0.0.1:{keyed_port}", song_hash, stem_file.stat().st_size
    stack.stop(keyed, timeout=10)
    live.stop()
    storage.close()
    client.close()


PLAYER = "document.querySelector('.player').player"


def play_and_seek(page, name: str) -> tuple[float, int]:
    """Play, then seek far ahead, near the end and back, playing a little at each; the time
    from Play to the first sound and the most memory chromium took meanwhile."""
    clock = page.get_by_label(f"Playback time of {name}")
    expect(clock).to_have_text(re.compile(rf" / {MINUTES}:00\.0$"), timeout=60_000)
    started = time.monotonic()
    page.get_by_role("button", name=f"Play {name}").click()
    page.wait_for_function(f"() => {PLAYER}.transport.position() > 0", polling=10,
                           timeout=10_000)
    first_sound_s = time.monotonic() - started
    peak = chromium_memory()
    for minutes in (MINUTES // 2, MINUTES - 1, 10):
        page.evaluate(f"{PLAYER}.seek({minutes * 60})")
        page.wait_for_function(f"() => {PLAYER}.transport.position() > {minutes * 60 + 1}",
                               timeout=15_000)
        peak = max(peak, chromium_memory())
    for _ in range(15):  # playing on: stretches decoded, played and let go
        time.sleep(1)
        peak = max(peak, chromium_memory())
    return first_sound_s, peak


def test_a_long_song_starts_at_once_and_memory_stays_bounded(browser, long_song):  # noqa: F811
    base_url, _, song_hash, _ = long_song
    name = f"Song {song_hash[:12]}"
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    problems: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.goto(f"{base_url}/#{song_hash}")
        expect(page.get_by_label(f"Playback time of {name}")).to_have_text(
            re.compile(rf" / {MINUTES}:00\.0$"), timeout=60_000)
        before = chromium_memory()
        first_sound_s, peak = play_and_seek(page, name)
        drift = page.evaluate(f"{PLAYER}.transport.drift()")
        print(f"\n{MINUTES}-minute song: first sound {first_sound_s:.2f} s after Play; chromium "
              f"memory (PSS, all processes) {before / 2**20:.0f} MB before Play, at most "
              f"{peak / 2**20:.0f} MB; drift between stems {drift} s")
        assert first_sound_s < 5
        assert peak < MEMORY_LIMIT
        assert drift == 0
        assert problems == []
    finally:
        context.close()


def test_with_a_key_for_every_read_it_plays_by_byte_range_only(browser, long_song):  # noqa: F811
    _, keyed_url, song_hash, stem_bytes = long_song
    name = f"Song {song_hash[:12]}"
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    lossless = []
    try:
        page = context.new_page()
        page.goto(keyed_url + "/")
        page.get_by_label("API key").fill(KEY)
        page.get_by_role("button", name="Save key").click()
        page.on("requestfinished", lambda r: "/apiv1/lossless/" in r.url and lossless.append(r))
        page.goto(f"{keyed_url}/#{song_hash}")
        page.reload()  # the song opened afresh with the key saved
        play_and_seek(page, name)
        fetched = 0
        for request in lossless:
            headers = request.all_headers()
            assert headers["authorization"] == f"Bearer {KEY}"
            assert re.fullmatch(r"bytes=\d+-\d+", headers["range"]), headers.get("range")
            response = request.response()
            assert response is not None and response.status == 206
            fetched += int(response.headers["content-length"])
        whole = stem_bytes * len(STEMS)
        print(f"\nwith PROTECT_READS: {len(lossless)} range requests, {fetched / 2**20:.2f} MB "
              f"of the stems' {whole / 2**20:.0f} MB ({100 * fetched / whole:.1f} %)")
        assert lossless and fetched < whole / 10
    finally:
        context.close()
