"""A 60-minute song in Debian's chromium: playback streams, so it starts within seconds, seeks
anywhere at once, and the browser's memory stays bounded (under 500 MB, all its processes
summed). Render-only setup: the song's mp3 tracks are put straight into the store as a render
worker leaves them, so neither a separation nor an encode of an hour runs."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import lameenc
import numpy as np
import pytest
from playwright.sync_api import expect

from common import keys, tracks
from common.jobs import JobStatus, JobStore, render_id
from common.storage import rendition_object
from scripts.local import stack
from tests.conftest import LiveStack
from tests.helpers import fresh_stores
from tests.test_page import browser  # noqa: F401  (the module's chromium)

pytestmark = pytest.mark.slow

MODEL = "demucs_unittest"
STEMS = list(tracks.FOUR_STEMS)
MINUTES = 60
RATE = 22050  # a cheap mp3: mono, 22.05 kHz, 32 kbps (14 MB an hour)
MEMORY_LIMIT = 500 << 20


def long_mp3(path: Path, minutes: int) -> None:
    """A tone that wanders, with a little noise, `minutes` long, encoded a minute at a time."""
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(32)
    encoder.set_in_sample_rate(RATE)
    encoder.set_channels(1)
    encoder.set_quality(7)
    rng = np.random.default_rng(3)
    t = np.arange(60 * RATE) / RATE
    with open(path, "wb") as out:
        for minute in range(minutes):
            tone = 0.2 * np.sin(2 * np.pi * (220 + 20 * minute) * t) + 0.02 * rng.standard_normal(
                len(t))
            out.write(encoder.encode((tone * 32767).astype("<i2").tobytes()))
        out.write(encoder.flush())


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


@pytest.fixture(scope="module")
def long_song(redis_server, s3_server, tmp_path_factory):
    """(base URL, hash): a gateway, and an hour-long song done, its mp3 tracks stored."""
    folder = tmp_path_factory.mktemp("long")
    env = stack.service_env(redis_server, s3_server, SONGS_BUCKET="long-songs",
                            OUTPUT_BUCKET="long-output", DEMUCS_MODEL=MODEL, DEMUCS_MODELS=MODEL,
                            DEFAULT_MODEL=MODEL)
    client, storage = fresh_stores(env)
    jobs = JobStore(client, MODEL)
    song_hash, rendition = "f" * 63 + "6", "mp3-32"
    jobs.register_model(MODEL, STEMS)
    jobs.enqueue(song_hash, None, 100, model=MODEL, rendition=rendition)
    separation = jobs.claim("test-separator", 1, queue=jobs.queue_for(MODEL))
    token = jobs.start(separation, "test-separator")
    render = render_id(song_hash, MODEL, rendition)
    assert jobs.hand_off(separation, "test-separator", token, song_hash, render, {}) == "rendering"
    # As the render worker would: its tracks stored, then its job ended (and the song with it).
    assert jobs.claim("test-render", 1, queue=keys.RENDER_QUEUE) == render
    token = jobs.start(render, "test-render")
    mp3 = folder / "hour.mp3"
    long_mp3(mp3, MINUTES)
    names = [tracks.track_name(stem, "mp3") for stem in STEMS]
    for name in names:
        storage.put_output_file(rendition_object(song_hash, MODEL, rendition, name), str(mp3),
                                "audio/mpeg")
    assert jobs.finish(render, "test-render", token, JobStatus.DONE, tracks=names,
                       parent=separation)
    live = LiveStack(env, folder)
    yield live.start_rest(), song_hash
    live.stop()
    storage.close()
    client.close()


def test_an_hour_long_song_starts_at_once_and_memory_stays_bounded(browser, long_song):  # noqa: F811
    base_url, song_hash = long_song
    name = f"Song {song_hash[:12]}"
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    problems: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.goto(f"{base_url}/#{song_hash}")
        clock = page.get_by_label(f"Playback time of {name}")
        expect(clock).to_have_text(re.compile(r" / 60:0\d\.\d$"), timeout=30_000)
        before = chromium_memory()
        started = time.monotonic()
        page.get_by_role("button", name=f"Play {name}").click()
        expect(page.get_by_role("button", name=f"Pause {name}")).to_be_visible(timeout=10_000)
        expect(clock).not_to_have_text(re.compile(r"^0:00\.0 "))
        start_s = time.monotonic() - started
        peak = chromium_memory()
        player = "document.querySelector('.player').player"
        for minutes in (30, 59, 10):  # far ahead, near the end, back
            page.evaluate(f"{player}.seek({minutes * 60})")
            page.wait_for_function(f"() => {player}.transport.position() > {minutes * 60 + 1}",
                                   timeout=15_000)
            # In step. Measured by the elements' currentTime, which for these mp3s moves in
            # steps of a few ms (the 6 s WAV song of test_page_studio.py reads one render
            # block): within 20 ms, well before a second has passed.
            page.wait_for_function(f"() => {player}.transport.drift() < 0.02", timeout=1500)
            peak = max(peak, chromium_memory())
        print(f"\n60-minute song: playing after {start_s:.2f} s; chromium memory (PSS, all "
              f"processes) {before / 2**20:.0f} MB before Play, at most {peak / 2**20:.0f} MB")
        assert start_s < 5
        assert peak < MEMORY_LIMIT
        assert problems == []
    finally:
        context.close()
