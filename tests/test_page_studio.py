"""The page as a stem studio, in Debian's chromium against one live stack for the module: a
gateway and a render worker over stems put straight into the store (no separation runs).
Waveforms from the server's peaks, the keys, the mix export (equal to the browser's own mix),
the analysis, the model picker, streaming playback in sync, and no console error anywhere."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from playwright.sync_api import expect

from common import tracks
from common.jobs import JobStatus, JobStore, render_id
from common.storage import Storage
from scripts.local import stack
from scripts.local.make_samples import synthesize
from tests.conftest import LiveStack
from tests.helpers import fresh_stores, wait_for_job
from tests.stems import write_lossless
from tests.test_page import INKED, browser, missing_tool, watch  # noqa: F401  (the module's chromium)

pytestmark = pytest.mark.slow

MODEL = "demucs_unittest"
STEMS = list(tracks.FOUR_STEMS)
SECONDS = 6
RATE = 44100
_numbers = itertools.count()
KEY = "studio-admin-key"
STUDIO: dict[str, Any] = {}  # the module stack's other gateway and its job store
# axe-core, fetched from the npm registry by `make test` (Makefile: AXE), injected by the test.
AXE = next(Path(__file__).parent.glob(".axe/axe-core-*/axe.min.js"), None)


def put_separated(jobs: JobStore, storage: Storage, song_hash: str, seconds: float,
                  rendition: str = "wav-16") -> None:
    """A song as a separation worker leaves it (lossless stems stored, its claim handed to the
    render job of `rendition`): a render-only setup."""
    jobs.register_model(MODEL, STEMS)
    jobs.enqueue(song_hash, None, 100, model=MODEL, rendition=rendition)
    job_id = jobs.claim("test-separator", 1, queue=jobs.queue_for(MODEL))
    token = jobs.start(job_id, "test-separator")
    for n, stem in enumerate(STEMS):
        wav = (synthesize(seconds, seed=n + 1) / 3).astype("f4")
        storage.put_lossless(song_hash, MODEL, stem, write_lossless(wav, RATE))
    render = render_id(song_hash, MODEL, rendition)
    assert jobs.hand_off(job_id, "test-separator", token, song_hash, render, {}) == "rendering"


@pytest.fixture(scope="module")
def studio(redis_server, s3_server, tmp_path_factory):
    """(base URL, song hash): a gateway and a render worker, and one separated song."""
    number = next(_numbers)
    env = stack.service_env(redis_server, s3_server, SONGS_BUCKET=f"studio-songs-{number}",
                            OUTPUT_BUCKET=f"studio-output-{number}", DEMUCS_MODEL=MODEL,
                            DEMUCS_MODELS=MODEL, DEFAULT_MODEL=MODEL, HEARTBEAT_TTL_S="3",
                            LOG_LEVEL="INFO")
    client, storage = fresh_stores(env)
    jobs = JobStore(client, MODEL)
    song_hash = "e" * 63 + "5"
    put_separated(jobs, storage, song_hash, SECONDS)
    live = LiveStack(env, tmp_path_factory.mktemp("studio"))
    base_url = live.start_rest()
    live.start_render(RENDER_PROCESSES="2")
    wait_for_job(jobs, song_hash, lambda j: j.status is JobStatus.DONE)
    # A second gateway over the same song that wants a key for every read, as some do.
    keyed_port = stack.free_port()
    keyed = stack.start_rest(keyed_port, {**env, "API_KEYS": f"{KEY}:admin",
                                          "PROTECT_READS": "true"},
                             live.folder / "keyed-rest.log")
    STUDIO["keyed"], STUDIO["jobs"] = f"http://127.0.0.1:{keyed_port}", jobs
    yield base_url, song_hash
    stack.stop(keyed, timeout=10)
    live.stop()
    storage.close()
    client.close()


@pytest.fixture
def open_song(browser, studio):  # noqa: F811
    """A fresh browser profile on the song's page; after the test, no console error and
    nothing fetched from another origin."""
    base_url, song_hash = studio
    contexts, problems, elsewhere = [], [], []

    def open_at(viewport: dict | None = None, **options):
        context = browser.new_context(accept_downloads=True,
                                      viewport=viewport or {"width": 1000, "height": 1000},
                                      **options)
        contexts.append(context)
        page = context.new_page()
        watch(page, base_url, problems, elsewhere)
        page.goto(f"{base_url}/#{song_hash}")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuetext", "Done")
        return page

    yield open_at
    for context in contexts:
        context.close()
    assert problems == []
    assert elsewhere == []


def player_name(song_hash: str) -> str:
    return f"Song {song_hash[:12]}"




def seconds_shown(page, name: str) -> float:
    text = page.get_by_label(f"Playback time of {name}").text_content()
    minutes, seconds = text.split(" / ")[0].split(":")
    return int(minutes) * 60 + float(seconds)


def test_waveforms_come_from_the_servers_peaks_and_a_click_seeks(open_song, studio):
    _, song_hash = studio
    name = player_name(song_hash)
    page = open_song()
    peaks = []
    page.on("request", lambda request: "/apiv1/peaks/" in request.url and peaks.append(
        request.url))
    clock = page.get_by_label(f"Playback time of {name}")
    expect(clock).to_have_text(f"0:00.0 / 0:0{SECONDS}.0")  # the duration before any Play
    for stem in STEMS:
        expect(page.locator(f'canvas.waveform[data-stem="{stem}"]')).to_be_visible()
    # Drawn once the render worker made the peaks: far more than the playhead's line.
    page.wait_for_function(INKED, arg=500, timeout=60_000)
    drums = page.locator('canvas.waveform[data-stem="drums"]')
    box = drums.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    expect(clock).to_have_text(re.compile(r"^0:0[23]\.\d / "))
    assert abs(seconds_shown(page, name) - SECONDS / 2) < 0.2
    page.get_by_role("button", name=f"Zoom in to {name}").click()
    expect(page.get_by_role("status").filter(has_text="Zoom 2×")).to_have_count(1)
    # Shift and drag selects the region that loops.
    page.keyboard.down("Shift")
    page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + 10)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.75, box["y"] + 10, steps=5)
    page.mouse.up()
    page.keyboard.up("Shift")
    expect(page.get_by_role("button", name=f"Loop {name}")).to_have_attribute(
        "aria-pressed", "true")
    expect(page.get_by_role("status").filter(has_text="Loop on, from")).to_have_count(1)
    assert peaks and all(".dat" in url or url.split("?")[0].endswith(song_hash) for url in peaks)


def test_the_keys_play_seek_mute_solo_loop_and_list_themselves(open_song, studio):
    _, song_hash = studio
    name = player_name(song_hash)
    page = open_song()
    play = page.get_by_role("button", name=f"Play {name}")
    play.focus()
    page.keyboard.press(" ")
    expect(page.get_by_role("button", name=f"Pause {name}")).to_be_visible()
    expect(page.get_by_role("button", name=f"Pause {name}")).to_be_focused()
    announcer = page.locator(".player [role=status]")
    expect(announcer).to_have_text(f"Playing {name}")
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "() => document.querySelector('.player').player.transport.position() >= 5")
    page.keyboard.press(" ")
    expect(page.get_by_role("button", name=f"Play {name}")).to_be_visible()
    expect(announcer).to_have_text(re.compile(r"^Paused at 0:0[56]\.\d$"))
    mute = page.get_by_role("button", name="Mute vocals")
    mute.focus()
    page.keyboard.press("m")
    expect(mute).to_have_attribute("aria-pressed", "true")
    expect(announcer).to_have_text("vocals muted")
    page.keyboard.press("s")
    expect(page.get_by_role("button", name="Solo vocals")).to_have_attribute(
        "aria-pressed", "true")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("l")
    expect(page.get_by_role("button", name=f"Loop {name}")).to_have_attribute(
        "aria-pressed", "true")
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    # Typing in a field is never taken over.
    page.get_by_label("API key").focus()
    page.keyboard.type("ms l")
    expect(page.get_by_label("API key")).to_have_value("ms l")
    expect(mute).to_have_attribute("aria-pressed", "true")


def test_the_exported_mix_is_the_browsers_mix_of_the_same_stems(open_song, studio, tmp_path):
    base_url, song_hash = studio
    name = player_name(song_hash)
    page = open_song()
    page.get_by_label("drums volume").fill("0.5")
    page.get_by_role("button", name="Mute vocals").click()
    page.get_by_label(f"Mix format for {name}").select_option("wav")
    page.get_by_role("button", name=f"Export mix of {name}").click()
    link = page.get_by_role("link", name="Download the mix (WAV)")
    expect(link).to_be_visible(timeout=60_000)
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "mix.wav"
    download.value.save_as(saved)
    exported, rate = soundfile.read(saved, dtype="float32", always_2d=True)
    assert rate == RATE and exported.shape == (SECONDS * RATE, 2)
    # The browser mixes the lossless stems it plays at the gains its controls set, offline.
    mixed = page.evaluate("""async ([stems, length]) => {
        const player = document.querySelector('.player').player;
        await player.transport.ready;
        const ctx = new OfflineAudioContext(2, length, 44100);
        for (const stem of player.stems) {
            const bytes = await (await fetch(stem.voice.url)).arrayBuffer();
            const source = ctx.createBufferSource();
            source.buffer = await ctx.decodeAudioData(bytes);
            const gain = ctx.createGain();
            gain.gain.value = (player.audible(stem) ? stem.volume : 0) * player.transport.gain;
            source.connect(gain).connect(ctx.destination);
            source.start();
        }
        const out = await ctx.startRendering();
        return [Array.from(out.getChannelData(0)), Array.from(out.getChannelData(1))];
    }""", [STEMS, SECONDS * RATE])
    browser_mix = np.array(mixed, dtype=np.float32).T
    # The mix is 16-bit: the difference is a few of its quantization steps.
    assert np.abs(browser_mix - exported).max() < 4 / 32768
    assert np.abs(exported).max() > 0.05  # not silence compared with silence


def test_the_analysis_is_shown_for_the_mix_and_each_stem(open_song, studio):
    page = open_song()
    expect(page.locator(".player .analysis")).to_have_text(
        re.compile(r"^Tempo, key, loudness: .*LUFS$"), timeout=60_000)
    for stem in STEMS:
        expect(page.locator(f'.stem[data-stem="{stem}"] .stem-analysis')).to_have_text(
            re.compile(r"LUFS$"))


# A Transport made in the page over the same stem twice, the second at gain -1: their sum is
# silent if and only if both play the same sample at once. An analyser on the output (its
# window of 4096 samples read every 10 ms, so no sample goes unread) holds the loudest sum and
# the loudest of the first voice alone.
TWIN = """async (hash) => {
    const { Transport } = await import('/static/transport.js');
    const api = await import('/static/api.js');
    const noop = () => {};
    const twin = new Transport([{ stem: 'a', name: 'vocals' }, { stem: 'b', name: 'vocals' }],
                               api.fetchJson(api.playbackUrl({ hash })),
                               { onTick: noop, onState: noop, onDuration: noop,
                                 onError: (error) => (window.twinError = String(error)) });
    await twin.ready;
    twin.setLevel(twin.stems[1], -1);
    twin.connect();
    const sum = twin.context.createAnalyser();
    sum.fftSize = 4096;
    twin.bus.connect(sum);
    const lone = twin.stems[0].analyser;
    const samples = new Float32Array(4096);
    const peak = (analyser) => {
        analyser.getFloatTimeDomainData(samples);
        return samples.reduce((most, value) => Math.max(most, Math.abs(value)), 0);
    };
    const heard = { sum: 0, lone: 0, gap: 0, last: performance.now() };
    window.heard = heard;
    setInterval(() => {
        if (!twin.playing) return;
        heard.sum = Math.max(heard.sum, peak(sum));
        heard.lone = Math.max(heard.lone, peak(lone));
        const now = performance.now();
        heard.gap = Math.max(heard.gap, now - heard.last);
        heard.last = now;
    }, 10);
    window.twin = twin;
    await twin.play();
    heard.last = performance.now();
}"""


def test_stems_play_sample_exact_through_seeks_and_a_loop(open_song, studio):
    _, song_hash = studio
    page = open_song()
    page.evaluate(TWIN, song_hash)
    page.wait_for_function("() => twin.position() > 0.5")
    for target in (4.0, 1.0, 3.0):
        page.evaluate(f"twin.seek({target})")
        page.wait_for_function(f"() => twin.position() > {target} + 0.5")
    page.evaluate("twin.setRegion({start: 1, end: 1.6})")
    page.wait_for_function("""() => {
        window.loops = (window.loops || 0) + (twin.position() < 1.2 ? 1 : 0);
        return window.loops > 3 && twin.position() < 1.6; }""", polling=50)
    heard = page.evaluate("twin.pause(), window.heard")
    log = page.evaluate("twin.log")
    print(f"\nsame stem twice, the second at -1: loudest sum {heard['sum']:.2e}, loudest "
          f"voice alone {heard['lone']:.3f}, longest read gap {heard['gap']:.0f} ms; "
          f"{len(log)} stretches, drift {page.evaluate('twin.drift()')} s")
    assert page.evaluate("window.twinError || ''") == ""
    assert heard["lone"] > 0.05  # a voice alone is loud
    assert heard["gap"] < 4096 / RATE * 1000 * 0.8  # every sample was read
    assert heard["sum"] < 1e-6  # and the two cancel exactly: the same sample at once
    # Every stretch starts all stems at one context time, and abuts the one before it.
    assert all(len(set(entry["when"])) == 1 for entry in log)
    rate = RATE
    for before, after in itertools.pairwise(log):
        if before["generation"] != after["generation"]:
            continue
        assert after["start"] in (before["end"], round(rate), rate)
        assert abs(after["when"][0] - before["when"][0]
                   - (before["end"] - before["start"]) / rate) < 1e-9
    assert sum(entry["start"] == RATE for entry in log) >= 3  # the loop wrapped


@pytest.mark.parametrize("webcodecs", [True, False], ids=["webcodecs", "decodeaudiodata"])
def test_a_stretch_decodes_to_exactly_the_stems_samples(open_song, studio, webcodecs):
    _, song_hash = studio
    page = open_song()
    if not webcodecs:  # as on a page served over plain http from another host
        page.evaluate("window.AudioDecoder = undefined")
    found = page.evaluate("""async (hash) => {
        const { FlacStem } = await import('/static/flacstream.js');
        const api = await import('/static/api.js');
        const index = (await api.fetchJson(api.playbackUrl({ hash }))).stems.vocals;
        const context = new OfflineAudioContext(2, 1, index.sample_rate);
        const whole = await context.decodeAudioData(
            await (await fetch(index.url)).arrayBuffer());
        const stem = new FlacStem(index, 2);
        const worst = [];
        // The third stretch reuses the first one's buffer (two are cached).
        for (const [start, end] of [[0, 44100], [100000, 190000], [200000, index.total_samples]]) {
            const part = await stem.stretch(context, start, end);
            if (part.first > start || part.first + part.length < end) return `${start} uncovered`;
            let most = 0;
            for (let channel = 0; channel < 2; channel++) {
                const got = part.buffer.getChannelData(channel);
                const wanted = whole.getChannelData(channel);
                for (let i = start; i < end; i++) {
                    most = Math.max(most, Math.abs(got[i - part.first] - wanted[i]));
                }
            }
            worst.push(most);
        }
        return { worst, webCodecs: Boolean(await stem.config), spare: stem.spare.length };
    }""", song_hash)
    assert found == {"worst": [0, 0, 0], "webCodecs": webcodecs, "spare": 0}, found


def test_the_page_asks_for_no_missing_file_and_fits_a_phone(open_song):
    page = open_song(viewport={"width": 390, "height": 844})
    favicon = page.evaluate("fetch(document.querySelector('link[rel=icon]').href)"
                            ".then((r) => r.status)")
    assert favicon == 200
    wide = page.evaluate("""[...document.querySelectorAll("body *")]
        .filter((e) => e.getBoundingClientRect().right > window.innerWidth)
        .map((e) => `${e.tagName}.${e.className}`)""")
    assert wide == []


def test_no_serious_or_critical_accessibility_violation(open_song, studio):
    if AXE is None:
        missing_tool("axe-core is missing: `make test` fetches it (tests/.axe/)")
    # The page's policy forbids injected scripts; this profile alone lets the checker in.
    page = open_song(bypass_csp=True)
    expect(page.locator(".player .analysis")).to_have_text(re.compile("LUFS"), timeout=60_000)
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => (await axe.run(document, {resultTypes: ["violations"]}))
        .violations.map((v) => ({id: v.id, impact: v.impact,
                                 nodes: v.nodes.map((n) => n.target.join(" "))}))""")
    assert [v for v in found if v["impact"] in ("serious", "critical")] == []
    page.keyboard.press("?")  # the keys' list, open
    dialog = page.evaluate("""async () => (await axe.run("#keys")).violations
        .filter((v) => ["serious", "critical"].includes(v.impact)).map((v) => v.id)""")
    assert dialog == []


def test_with_a_key_for_every_read_the_page_still_plays_draws_and_exports(browser, studio):  # noqa: F811
    _, song_hash = studio
    name = player_name(song_hash)
    context = browser.new_context(accept_downloads=True, viewport={"width": 1000, "height": 1000})
    problems: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.goto(STUDIO["keyed"] + "/")
        page.get_by_label("API key").fill(KEY)
        page.get_by_role("button", name="Save key").click()
        page.goto(f"{STUDIO['keyed']}/#{song_hash}")
        problems.clear()  # before the key, a read was refused (401), as it should be
        lossless: list = []
        page.on("requestfinished", lambda r: "/apiv1/lossless/" in r.url and lossless.append(r))
        page.reload()  # the key saved, the song opened afresh with it
        expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuetext", "Done")
        page.wait_for_function(INKED, arg=500, timeout=60_000)
        page.get_by_role("button", name=f"Play {name}").click()
        expect(page.get_by_role("button", name=f"Pause {name}")).to_be_visible(timeout=10_000)
        page.wait_for_function(
            "() => document.querySelector('.player').player.transport.position() > 1")
        # The stems play from byte ranges fetched with the key, never from a whole file.
        assert {r.url.split("?")[0].rsplit("/", 1)[1] for r in lossless} == {
            f"{stem}.flac" for stem in STEMS}
        for request in lossless:
            headers = request.all_headers()
            assert headers["authorization"] == f"Bearer {KEY}"
            assert re.fullmatch(r"bytes=\d+-\d+", headers["range"])
            assert request.response().status == 206
        page.get_by_role("button", name=f"Export mix of {name}").click()
        link = page.get_by_role("link", name="Download the mix (WAV)")
        expect(link).to_be_visible(timeout=60_000)
        with page.expect_download() as download:
            link.click()
        assert soundfile.info(download.value.path()).frames == SECONDS * RATE
        assert problems == []
    finally:
        context.close()


def test_focus_stays_on_a_songs_control_while_its_status_changes(browser, studio):  # noqa: F811
    base_url, _ = studio
    jobs = STUDIO["jobs"]
    waiting = "a" * 63 + "7"
    jobs.enqueue(waiting, None, 100, model=MODEL)  # no separation worker: it waits
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{base_url}/#{waiting}")
        name = f"Song {waiting[:12]}"
        state = page.get_by_role("listitem", name=name).get_by_role("status")
        expect(state).to_have_text(re.compile("^Queued"))
        delete = page.get_by_role("button", name=f"Delete from server: {name}")
        delete.focus()
        job_id = jobs.claim("test-separator", 1, queue=jobs.queue_for(MODEL))
        jobs.start(job_id, "test-separator")
        expect(state).to_have_text("Separating: 0 %")
        expect(delete).to_be_focused()
    finally:
        context.close()
