"""The web page at `/`, used as a person would: Debian's chromium driven by Playwright against a
live stack (gunicorn + a worker on the tiny `demucs_unittest` model, real Redis and S3 servers).
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import sphn
from playwright.sync_api import expect, sync_playwright

from tests.helpers import STEMS

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and quiet on a machine without a network: no background fetches, updates or sync.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "page.png"
SLOW = 120_000  # ms: a worker's start (torch import, model) and a separation on a shared CPU

pytestmark = pytest.mark.slow

# Whether every stem's waveform canvas has more than `least` pixels drawn.
INKED = """(least) => [...document.querySelectorAll("canvas.waveform")].every((canvas) => {
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let drawn = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i]) drawn += 1;
    return drawn > least;
})"""


def missing_tool(message: str) -> None:
    """A tool the page tests need is missing: a failure under CI=true, a skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    """One chromium for this module; missing, it fails under CI=true and is skipped elsewhere."""
    if not CHROMIUM.exists():
        missing_tool(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def watch(page, origin: str, problems: list[str], elsewhere: list[str]) -> None:
    """Collect the page's console errors and uncaught exceptions in `problems`, and the URL of
    every request outside `origin` in `elsewhere`."""
    page.on("request", lambda request: request.url.startswith(origin) or elsewhere.append(
        request.url))
    page.on("console", lambda message: message.type == "error" and problems.append(
        message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))


@pytest.fixture
def open_page(browser):
    """Factory of pages, each in a fresh browser profile (another person's browser)."""
    contexts, problems, elsewhere = [], [], []

    def open_at(url: str):
        context = browser.new_context(accept_downloads=True, viewport={"width": 900, "height": 900})
        contexts.append(context)
        page = context.new_page()
        watch(page, "/".join(url.split("/")[:3]) + "/", problems, elsewhere)
        response = page.goto(url)
        assert response is not None and response.ok
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        return page, response

    yield open_at
    for context in contexts:
        context.close()
    # Refused uploads are logged by the browser as failed loads; everything else is a fault.
    assert [text for text in problems if "Failed to load resource" not in text] == []
    assert elsewhere == [], "the page loaded something from another origin"


def upload(page, *files: tuple[str, bytes], mime: str = "audio/mpeg") -> None:
    """Pick `(name, bytes)` files in the file field, then press Separate."""
    page.get_by_label("Songs to separate").set_input_files(
        files=[{"name": name, "mimeType": mime, "buffer": data} for name, data in files])
    page.get_by_role("button", name="Separate", exact=True).click()


def drop(page, name: str, data: bytes, mime: str) -> None:
    """Drop one file on the page's drop zone, as a file manager would."""
    transfer = page.evaluate_handle(
        """([name, bytes, type]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], name, {type}));
            return transfer;
        }""", [name, list(data), mime])
    page.get_by_role("group", name="Drop songs here").dispatch_event(
        "drop", {"dataTransfer": transfer})
    transfer.dispose()


# Every state a bar shows, recorded as the page sets it (polling from here could miss some).
RECORD_PROGRESS = """
window.progressSeen = [];
new MutationObserver((changes) => {
  for (const {target} of changes) {
    if (target.getAttribute("role") === "progressbar") {
      window.progressSeen.push([target.getAttribute("aria-label"),
                                target.getAttribute("aria-valuetext")]);
    }
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["aria-valuetext"]});
"""


PHASES = ["Uploading", "Checking", "Queued", "Separating", "Done"]


def progress_values(page, label: str) -> list[str]:
    """The states the bar named `label` went through, repeats folded."""
    states = [text for name, text in page.evaluate("window.progressSeen") if name == label]
    return [text for index, text in enumerate(states) if index == 0 or states[index - 1] != text]


def sticking_out(page) -> list[str]:
    """Elements that reach past the right edge of the viewport (a page too wide for a phone)."""
    return page.evaluate("""[...document.querySelectorAll("body *")]
        .filter((e) => e.getBoundingClientRect().right > window.innerWidth)
        .map((e) => `${e.tagName}#${e.id}.${e.className}`)""")


def song_hash_of(page, name: str = "") -> str:
    """The hash of the song named `name` (the only one when empty), from its link."""
    row = page.get_by_role("listitem").filter(has_text=name) if name else page
    return row.get_by_role("link", name="Link to this song").get_attribute("href")[1:]


def unnamed_controls(page) -> list[str]:
    """Controls without an accessible name, from the page's accessibility tree."""
    tree = page.locator("body").aria_snapshot()
    return re.findall(r"^\s*- (?:button|slider|combobox|textbox|link|spinbutton|meter|"
                      r"progressbar)(?::.*)?$", tree, re.MULTILINE)


def stored_objects(storage) -> list[str]:
    return [obj.object_name for bucket in (storage.songs_bucket, storage.output_bucket)
            for obj in storage.client.list_objects(bucket, recursive=True)]


def test_a_song_is_uploaded_separated_played_mixed_and_downloaded(
        live_stack, storage, open_page, make_mp3, tmp_path):
    song = make_mp3(8, seed=5)
    base_url = live_stack.start_rest()
    page, response = open_page(base_url + "/")
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    page.evaluate(RECORD_PROGRESS)

    upload(page, ("groove.mp3", song), ("intro.mp3", make_mp3(2, seed=6)))
    bar = page.get_by_role("progressbar", name="Progress of groove.mp3")
    second = page.get_by_role("progressbar", name="Progress of intro.mp3")
    # No worker yet: both songs wait in the queue, in the order they were sent.
    queued = re.compile(r"^Queued, (1st|2nd) of 2 in the queue$")
    expect(bar).to_have_attribute("aria-valuetext", queued)
    expect(second).to_have_attribute("aria-valuetext", queued)
    assert bar.get_attribute("aria-valuetext") != second.get_attribute("aria-valuetext")
    live_stack.start_worker()
    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=SLOW)
    expect(second).to_have_attribute("aria-valuetext", "Done", timeout=SLOW)
    seen = progress_values(page, "Progress of groove.mp3")
    assert seen[0].startswith("Uploading") and "Uploading: 100 % of" in " ".join(seen)
    phases = [re.match(r"\w+", text).group() for text in seen]
    assert phases == sorted(phases, key=PHASES.index), seen  # never backwards
    assert {"Uploading", "Queued", "Done"} <= set(phases), seen

    song_hash = song_hash_of(page, "groove.mp3")
    page.get_by_role("button", name="Remove from list: intro.mp3").click()
    for stem in STEMS:
        expect(page.get_by_role("link", name=f"Download {stem}.mp3")).to_have_attribute(
            "href", f"/apiv1/track/{song_hash}/{stem}.mp3")
        expect(page.get_by_role("button", name=f"Mute {stem}")).to_be_visible()
        expect(page.get_by_label(f"{stem} volume")).to_be_visible()

    assert unnamed_controls(page) == []

    play = page.get_by_role("button", name="Play groove.mp3")
    play.click()
    expect(page.get_by_role("button", name="Pause groove.mp3")).to_be_visible(timeout=30_000)
    clock = page.get_by_label("Playback time of groove.mp3")
    expect(clock).to_have_text(re.compile(r"^0:0[1-7]\.\d / 0:08\.0$"))  # the context's clock

    loud = [stem for stem in STEMS
            if page.get_by_role("meter", name=f"{stem} level").get_attribute("aria-valuenow")
            != "-60"]
    assert loud, "no stem makes a sound"
    page.get_by_role("button", name=f"Mute {loud[0]}").click()
    expect(page.get_by_role("button", name=f"Mute {loud[0]}")).to_have_attribute(
        "aria-pressed", "true")
    expect(page.get_by_role("meter", name=f"{loud[0]} level")).to_have_attribute(
        "aria-valuetext", "silent")
    # Once separated, the song's analysis and waveforms are made by the render worker.
    expect(page.locator(".player .analysis")).to_have_text(re.compile(r"LUFS$"), timeout=SLOW)
    page.wait_for_function(INKED, arg=500, timeout=SLOW)
    shot = tmp_path / "page.png"
    page.screenshot(path=shot, full_page=True)
    if os.environ.get("UPDATE_SCREENSHOT") == "1":  # `make screenshot`
        shutil.copyfile(shot, SCREENSHOT)

    with page.expect_download() as download:
        page.get_by_role("link", name="Download vocals.mp3").click()
    saved = tmp_path / "vocals.mp3"
    download.value.save_as(saved)
    audio, rate = sphn.read(str(saved))
    assert audio.shape[0] == 2 and abs(audio.shape[1] / rate - 8) < 0.2
    with page.expect_download() as download:
        page.get_by_role("link", name="Download all stems (zip)").click()
    download.value.save_as(tmp_path / "stems.zip")
    with zipfile.ZipFile(tmp_path / "stems.zip") as archive:
        assert sorted(archive.namelist()) == sorted(f"{stem}.mp3" for stem in STEMS)

    page.get_by_role("button", name="Remove other").click()
    expect(page.get_by_role("link", name="Download other.mp3")).to_have_count(0)
    page.reload()
    expect(page.get_by_role("progressbar", name="Progress of groove.mp3")).to_have_attribute(
        "aria-valuetext", "Done")
    expect(page.get_by_role("link", name="Download drums.mp3")).to_be_visible()
    expect(page.get_by_role("link", name="Download other.mp3")).to_have_count(0)

    # The song's address opens its result in a browser that never saw it: a phone, used
    # with the keyboard alone.
    other, _ = open_page(f"{base_url}/#{song_hash}")
    other.set_viewport_size({"width": 390, "height": 844})
    expect(other.get_by_role("progressbar")).to_have_attribute("aria-valuetext", "Done")
    expect(other.get_by_role("link", name="Download bass.mp3")).to_be_visible()
    assert sticking_out(other) == []
    other.get_by_role("button", name=re.compile("^Play ")).focus()
    other.keyboard.press("Enter")
    expect(other.get_by_label(re.compile("^Playback time"))).not_to_have_text(
        re.compile(r"^0:00\.0 "))
    other.keyboard.press("Tab")
    expect(other.get_by_label(re.compile("^Position in"))).to_be_focused()
    other.keyboard.press("End")  # to the end of the song, which stops it
    expect(other.get_by_role("button", name=re.compile("^Play "))).to_be_visible()


def test_a_file_that_is_not_audio_is_refused_with_an_alert_and_nothing_is_stored(
        live_stack, storage, redis_client, open_page):
    page, _ = open_page(live_stack.start_rest() + "/")
    drop(page, "notes.txt", b"these are words, not a song\n" * 200, "text/plain")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("notes.txt was refused")
    expect(alert).to_contain_text("Pick an audio file")
    expect(page.get_by_text("No songs yet.")).to_be_visible()
    assert stored_objects(storage) == []
    assert redis_client.keys("job:*") == []


def test_each_refusal_says_what_to_do_next(live_stack, storage, open_page, make_mp3):
    # Reads need a key too: the page's status requests carry it as well.
    base_url = live_stack.start_rest(API_KEYS="writer,other,reader:ro", PROTECT_READS="true",
                                     RATE_LIMIT_PER_MIN="1", MAX_UPLOAD_MB="1",
                                     MAX_DURATION_S="2", MAX_QUEUE_LENGTH="1")
    page, _ = open_page(base_url + "/")
    alert = page.get_by_role("alert")
    short, other = make_mp3(1.5, seed=1), make_mp3(1.5, seed=2)

    def answer_to(name: str, data: bytes, says: str) -> None:
        upload(page, (name, data))
        expect(alert).to_contain_text(f"{name} was refused")
        expect(alert).to_contain_text(says)
        page.get_by_role("button", name="Dismiss").click()

    def use_key(key: str) -> None:
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Save key").click()

    answer_to("a.mp3", short, "Enter a valid API key under Settings")  # 401
    use_key("reader")
    answer_to("b.mp3", short, "Ask for a read-write API key")  # 403
    use_key("writer")
    answer_to("big.mp3", os.urandom(1_200_000), "The file is too large")  # 413
    answer_to("long.mp3", make_mp3(3, seed=3), "Trim the song or pick a shorter one")  # 422
    upload(page, ("fits.mp3", short))  # takes this key's one write a minute and the queue
    expect(page.get_by_role("progressbar", name="Progress of fits.mp3")).to_have_attribute(
        "aria-valuetext", "Queued, 1st of 1 in the queue")
    answer_to("more.mp3", other, "Too many submissions")  # 429
    use_key("other")
    answer_to("more.mp3", other, "The service is unavailable: the queue is full")  # 503
    expect(page.get_by_role("listitem")).to_have_count(1)


def test_a_waiting_song_is_cancelled_then_deleted_and_nothing_of_it_remains(
        live_stack, storage, redis_client, open_page, short_mp3):
    base_url = live_stack.start_rest(DEMUCS_MODELS="demucs_unittest,htdemucs_6s",
                                     DEFAULT_MODEL="demucs_unittest")
    page, _ = open_page(base_url + "/")
    page.get_by_label("Model").select_option("htdemucs_6s")
    page.get_by_label("Stems").select_option("guitar")  # a stem of that model only
    page.get_by_label("Format").select_option("FLAC")
    upload(page, ("waiting.mp3", short_mp3))
    bar = page.get_by_role("progressbar", name="Progress of waiting.mp3")
    # Its place in its own model's queue (`toWorker:htdemucs_6s`, not `toWorker`).
    expect(bar).to_have_attribute("aria-valuetext", "Queued, 1st of 1 in the queue")
    song_hash, model = song_hash_of(page).split(":")
    assert model == "htdemucs_6s"
    assert redis_client.hget(f"job:{song_hash}:{model}", "rendition") == "flac-16+guitar"

    page.get_by_role("button", name="Cancel waiting.mp3").click()
    expect(bar).to_have_attribute("aria-valuetext", re.compile("^Cancelled"))
    upload(page, ("waiting.mp3", short_mp3))  # sent again, it waits again, in the same row
    expect(page.get_by_role("progressbar")).to_have_count(1)
    expect(bar).to_have_attribute("aria-valuetext", re.compile("^Queued"))
    page.get_by_role("button", name="Delete from server: waiting.mp3").click()
    expect(page.get_by_text("No songs yet.")).to_be_visible()
    assert stored_objects(storage) == []
    assert redis_client.keys("job:*") == []


def test_a_song_the_worker_fails_says_why_in_words(live_stack, open_page, make_mp3):
    base_url = live_stack.start_rest()
    live_stack.start_worker(MAX_DURATION_S="1")  # a worker stricter than its gateway
    page, _ = open_page(base_url + "/")
    upload(page, ("long.mp3", make_mp3(3, seed=8)))
    # The page's words, then the worker's reason, which names the limit.
    expect(page.get_by_role("progressbar", name="Progress of long.mp3")).to_have_attribute(
        "aria-valuetext", re.compile(r"^Failed: the song is longer than this server separates "
                                     r"\(.*\b1 s\b, the limit"), timeout=SLOW)


def test_the_page_and_every_file_it_loads_come_from_the_gateway(make_client):
    client = make_client()
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"].split("; ")[0] == "default-src 'self'"
    html = page.get_data(as_text=True)
    page.close()
    pending = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    served = {}
    while pending:  # the page's files, and the modules they import, transitively
        path = pending.pop()
        if path in served:
            continue
        answer = client.get(path)
        assert answer.status_code == 200, path
        served[path] = answer.get_data(as_text=True)
        answer.close()
        pending += [f"/static/{name}" for name in re.findall(r'from "\./([\w.]+)"', served[path])]
    assert {"/static/style.css", "/static/favicon.svg", "/static/main.js", "/static/api.js",
            "/static/songs.js", "/static/player.js", "/static/stemrow.js",
            "/static/transport.js", "/static/flacstream.js", "/static/flacframes.js",
            "/static/waveform.js", "/static/studio.js", "/static/keys.js", "/static/upload.js",
            "/static/ensemble.js", "/static/dom.js"} == set(served)
    # An XML namespace (the favicon's xmlns) names, it is never fetched.
    assert not [path for path, text in {"/": html, **served}.items()
                if re.search(r"(https?:)?//[\w.-]+\.\w", re.sub(r'xmlns="[^"]*"', "", text))], \
        "a reference to another origin"
