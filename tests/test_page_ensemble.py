"""The page's ensemble form, in Debian's chromium against a live gateway and render worker
serving two models whose stems are put straight into the store (no separation runs): members
and algorithm chosen by keyboard, the result listed as the song's `#<hash>:<ensemble>` entry
that plays and downloads, a per-stem pick, the API's refusals in the alert region, and no
serious or critical axe violation."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from common import tracks
from common.jobs import JobStatus, JobStore, render_id
from common.storage import Storage
from scripts.local import stack
from scripts.local.make_samples import synthesize
from tests.conftest import LiveStack
from tests.helpers import fresh_stores, wait_for_job
from tests.stems import write_lossless
from tests.test_page import browser, missing_tool, watch  # noqa: F401  (the module's chromium)
from tests.test_page_studio import AXE

pytestmark = pytest.mark.slow

MODEL, OTHER, LATE = "demucs_unittest", "htdemucs", "htdemucs_ft"  # LATE: not separated yet
STEMS = list(tracks.FOUR_STEMS)
SONG = "d" * 63 + "7"
NAME = f"Song {SONG[:12]}"
SLOW = 90_000  # ms: render jobs on a shared 2-core CPU


def put_separated(jobs: JobStore, storage: Storage, model: str, seed: int) -> None:
    """The song as `model`'s separation worker leaves it: lossless stems, claim handed off."""
    jobs.register_model(model, STEMS)
    jobs.enqueue(SONG, None, 100, model=model, rendition="wav-16")
    separate_queued(jobs, storage, model, seed, "wav-16")


def separate_queued(jobs: JobStore, storage: Storage, model: str, seed: int,
                    rendition: str) -> None:
    """Separate the song's queued job of `model` as its worker would."""
    job_id = jobs.claim("test-separator", 1, queue=jobs.queue_for(model))
    token = jobs.start(job_id, "test-separator")
    for n, stem in enumerate(STEMS):
        wav = (synthesize(4, seed=seed + n) / 3).astype("f4")
        storage.put_lossless(SONG, model, stem, write_lossless(wav, 44100))
    render = render_id(SONG, model, rendition)
    assert jobs.hand_off(job_id, "test-separator", token, SONG, render, {}) == "rendering"


@pytest.fixture(scope="module")
def served(redis_server, s3_server, tmp_path_factory):
    """(base URL, storage, jobs): a gateway and a render worker over the song separated by
    two of the three models served."""
    env = stack.service_env(redis_server, s3_server, SONGS_BUCKET="ens-page-songs",
                            OUTPUT_BUCKET="ens-page-output", DEMUCS_MODEL=MODEL,
                            DEMUCS_MODELS=f"{MODEL},{OTHER},{LATE}", DEFAULT_MODEL=MODEL,
                            HEARTBEAT_TTL_S="3", LOG_LEVEL="INFO")
    client, storage = fresh_stores(env)
    jobs = JobStore(client, MODEL)
    put_separated(jobs, storage, MODEL, seed=1)
    put_separated(jobs, storage, OTHER, seed=11)
    live = LiveStack(env, tmp_path_factory.mktemp("ensemble-page"))
    base_url = live.start_rest()
    live.start_render(RENDER_PROCESSES="1")
    for model in (MODEL, OTHER):
        wait_for_job(jobs, jobs.separation_id(SONG, model),
                     lambda j: j.status is JobStatus.DONE)
    jobs.register_model(LATE, STEMS)
    yield base_url, storage, jobs
    live.stop()
    storage.close()
    client.close()


@pytest.fixture
def open_song(browser, served):  # noqa: F811
    """The song's page in a fresh profile; after the test, no console error, nothing fetched
    from another origin."""
    base_url = served[0]
    contexts, problems, elsewhere = [], [], []

    def open_at(**options):
        context = browser.new_context(viewport={"width": 1000, "height": 1000}, **options)
        contexts.append(context)
        page = context.new_page()
        watch(page, base_url, problems, elsewhere)
        page.goto(f"{base_url}/#{SONG}")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(page.get_by_role("progressbar", name=f"Progress of {NAME}")).to_have_attribute(
            "aria-valuetext", "Done")
        return page

    yield open_at
    for context in contexts:
        context.close()
    # The API's refusals are logged by the browser as failed loads; anything else is a fault.
    assert [text for text in problems if "Failed to load resource" not in text] == []
    assert elsewhere == []


def song_item(page, name: str):
    return page.get_by_role("listitem").filter(
        has=page.get_by_role("heading", name=name, exact=True))


def form_of(page):
    """The song's ensemble form, opened."""
    summary = song_item(page, NAME).locator("summary", has_text="Make an ensemble of models")
    summary.focus()
    page.keyboard.press("Enter")
    form = page.get_by_role("form", name=f"Ensemble of {NAME}")
    expect(form).to_be_visible()
    return form


def member(form, model: str):
    """A member's checkbox: its accessible name is the model's name, then its title."""
    return form.get_by_role("checkbox", name=re.compile(rf"^{model}( \(|$)"))


def fetch_made(page, url: str) -> bytes:
    """A track's bytes once the render worker made it (202 until then)."""
    deadline = time.monotonic() + SLOW / 1000
    while time.monotonic() < deadline:
        response = page.request.get(url)
        if response.status == 200:
            return response.body()
        assert response.status == 202, (response.status, response.text())
        time.sleep(0.5)
    raise AssertionError(f"{url} was never made")


def test_an_average_ensemble_made_by_keyboard_plays_and_downloads(open_song, served):
    base_url = served[0]
    page = open_song()
    form = form_of(page)
    own = member(form, MODEL)
    expect(own).to_be_checked()  # the song's own model
    page.keyboard.press("Tab")
    expect(own).to_be_focused()
    page.keyboard.press("Tab")
    expect(member(form, OTHER)).to_be_focused()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    expect(member(form, LATE)).to_be_focused()
    page.keyboard.press("Tab")
    expect(form.get_by_label("Algorithm")).to_be_focused()
    expect(form.get_by_label("Algorithm")).to_have_value("avg")
    page.keyboard.press("Tab")  # the per-stem picks are hidden: straight to the button
    expect(form.get_by_role("button", name="Make ensemble")).to_be_focused()
    page.keyboard.press("Enter")

    name = f"{NAME}: ensemble, avg of {MODEL}, {OTHER}"
    item = song_item(page, name)
    expect(item.get_by_role("progressbar")).to_have_attribute("aria-valuetext", "Done",
                                                              timeout=SLOW)
    expect(form.get_by_role("status")).to_have_text(f"Ensemble ready: listed as “{name}”.",
                                                    timeout=SLOW)
    link = item.get_by_role("link", name="Link to this song").get_attribute("href")
    match = re.fullmatch(rf"#{SONG}:(ensemble-[0-9a-f]{{16}})", link)
    assert match, link
    for stem in STEMS:
        download = item.get_by_role("link", name=f"Download {stem}.flac")
        expect(download).to_have_attribute("href", re.compile(
            rf"^/apiv1/track/{SONG}/{stem}\.flac\?model={match[1]}&bits=24$"))
    data = fetch_made(page, base_url + item.get_by_role(
        "link", name="Download vocals.flac").get_attribute("href"))
    assert data[:4] == b"fLaC"
    play = item.get_by_role("button", name=f"Play {name}")
    play.click()
    expect(item.get_by_role("button", name=f"Pause {name}")).to_be_visible(timeout=SLOW)
    # Reloaded, the page lists it again, as any song with its model.
    page.reload()
    expect(song_item(page, name).get_by_role("progressbar")).to_have_attribute(
        "aria-valuetext", "Done", timeout=SLOW)


def test_a_pick_takes_each_stem_from_its_model(open_song, served):
    storage = served[1]
    page = open_song()
    form = form_of(page)
    form.get_by_label("Algorithm").select_option("pick")
    expect(form.get_by_role("group", name="Member models")).to_be_hidden()
    form.get_by_label("Model for vocals").select_option(OTHER)
    form.get_by_label("Model for drums").select_option(MODEL)
    form.get_by_role("button", name="Make ensemble").click()
    name = f"{NAME}: ensemble, drums from {MODEL}, vocals from {OTHER}"
    item = song_item(page, name)
    expect(item.get_by_role("progressbar")).to_have_attribute("aria-valuetext", "Done",
                                                              timeout=SLOW)
    expect(item.get_by_role("link", name=re.compile(r"^Download \w+\.flac$"))).to_have_count(2)
    model = item.get_by_role("link", name="Link to this song").get_attribute("href").split(":")[1]
    assert storage.get_output(f"{SONG}/{model}/stems/vocals.flac") == storage.get_output(
        f"{SONG}/{OTHER}/stems/vocals.flac")  # a pick is the member's own stem


def test_the_apis_refusals_are_shown_in_the_alert_region(open_song):
    page = open_song()
    form = form_of(page)
    form.get_by_role("button", name="Make ensemble").click()  # avg of the song's model alone
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(f"The ensemble of {NAME} was refused: avg combines two or "
                                  "more members; name them in members.")
    page.get_by_role("button", name="Dismiss").click()
    form.get_by_label("Algorithm").select_option("pick")
    form.get_by_role("button", name="Make ensemble").click()  # no stem picked
    expect(alert).to_contain_text("pick needs picks: the member each stem is taken from")
    expect(page.get_by_role("heading", name=re.compile("ensemble,"))).to_have_count(0)


def test_no_serious_or_critical_accessibility_violation_with_the_form_open(open_song):
    if AXE is None:
        missing_tool("axe-core is missing: `make test` fetches it (tests/.axe/)")
    page = open_song(bypass_csp=True)  # the page's policy forbids the injected checker
    form = form_of(page)
    form.get_by_label("Algorithm").select_option("pick")
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => (await axe.run(document, {resultTypes: ["violations"]}))
        .violations.map((v) => ({id: v.id, impact: v.impact,
                                 nodes: v.nodes.map((n) => n.target.join(" "))}))""")
    assert [v for v in found if v["impact"] in ("serious", "critical")] == []


def test_progress_follows_a_member_still_to_separate_then_the_render(open_song, served):
    _, storage, jobs = served
    page = open_song()
    form = form_of(page)
    form.get_by_label("Algorithm").select_option("pick")
    form.get_by_label("Model for bass").select_option(LATE)
    form.get_by_label("Model for other").select_option(MODEL)
    form.get_by_role("button", name="Make ensemble").click()
    progress = form.get_by_role("status")
    expect(progress).to_have_text(f"Waiting for the members: {MODEL} done, {LATE} queued.")
    item = song_item(page, f"{NAME}: ensemble, bass from {LATE}, other from {MODEL}")
    expect(item.get_by_role("progressbar")).to_have_attribute(
        "aria-valuetext", re.compile("^Queued"))
    separate_queued(jobs, storage, LATE, 21, "mp3-320")  # as LATE's worker would
    expect(progress).to_have_text(re.compile(r"^Ensemble ready: listed as "), timeout=SLOW)
    expect(item.get_by_role("progressbar")).to_have_attribute("aria-valuetext", "Done")
