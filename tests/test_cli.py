"""The command-line client `micro-demucs` (`python -m client`) against the local stack: real
gunicorn, a worker on the tiny model, real Redis and S3 servers; the client as a subprocess."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import requests
import sphn

from client.api import Api, ApiError
from client.cli import main
from scripts.local import stack

ROOT = Path(__file__).resolve().parent.parent
STEMS = ["bass.mp3", "drums.mp3", "other.mp3", "vocals.mp3"]
SIX = "htdemucs_6s"


def cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run `python -m client ARGS` to its end (stdout a pipe: plain lines)."""
    return subprocess.run([sys.executable, "-m", "client", *args], cwd=ROOT,
                          env=_env(env), capture_output=True, text=True, timeout=timeout)


def call(*args: str) -> tuple[int, str, str]:
    """`micro-demucs ARGS` in this process (quicker than a new one): exit status, out, err."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as stop:  # argparse's usage errors
            code = stop.code if isinstance(stop.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def refusal(base_url: str, song: Path) -> str:
    """The server's own words when this file is uploaded."""
    api = Api(base_url)
    with pytest.raises(ApiError) as refused:
        api.submit(song, {}, lambda sent, total: None)
    api.close()
    assert refused.value.status == 400
    return refused.value.message


def _env(extra: dict | None) -> dict:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("MICRO_DEMUCS_")}
    return {**env, "PYTHONPATH": str(ROOT), **(extra or {})}


def song_hash(path: Path) -> str:
    return hashlib.sha256(base64.b64encode(path.read_bytes())).hexdigest()


def assert_stems(folder: Path, seconds: float, names: list[str] = STEMS) -> None:
    """These tracks and no others are there, decodable, as long as the song."""
    assert sorted(path.name for path in folder.iterdir()) == sorted(names)
    for path in folder.iterdir():
        audio, rate = sphn.read(str(path))
        assert audio.shape[0] == 2 and abs(audio.shape[1] / rate - seconds) < 0.1, path


@pytest.fixture
def songs(tmp_path, make_mp3):
    """Three short songs and a file that is not audio."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name, seed in (("first", 1), ("second", 2), ("third", 3)):
        (folder / f"{name}.mp3").write_bytes(make_mp3(2, seed=seed))
    (folder / "notes.mp3").write_text("not a song\n" * 50)
    return folder


@pytest.mark.slow
def test_separate_then_every_command(live_stack, songs, tmp_path):
    base_url = live_stack.start_rest()
    live_stack.start_worker()
    out = tmp_path / "out"
    result = cli("separate", str(songs / "first.mp3"), str(songs / "second.mp3"),
                 str(songs / "notes.mp3"), "-o", str(out), "--server", base_url)
    assert result.returncode == 1, result.stdout + result.stderr + live_stack.worker_log()
    for name in ("first", "second"):
        assert_stems(out / name, 2)
    assert not (out / "notes").exists()
    lines = result.stdout.splitlines()
    assert f"notes: failed: {refusal(base_url, songs / 'notes.mp3')}" in lines
    for phase in ("queued", "separating", "done, 4 tracks in"):
        assert any(line.startswith("first: " + phase) for line in lines), (phase, lines)
    first = song_hash(songs / "first.mp3")
    api_bytes = requests.get(f"{base_url}/apiv1/track/{first}/vocals.mp3", timeout=30).content
    assert (out / "first" / "vocals.mp3").read_bytes() == api_bytes

    # Everything again, only the good songs, with the result as JSON: 0, nothing uploaded twice.
    code, out, err = call("separate", str(songs / "first.mp3"), str(songs / "second.mp3"),
                          "--json", "-o", str(tmp_path / "again"), "--server", base_url)
    assert code == 0, err
    answer = json.loads(out)
    assert [(item["song"], item["status"], item["hash"]) for item in answer] == [
        ("first", "done", first), ("second", "done", song_hash(songs / "second.mp3"))]
    assert sorted(Path(path).name for path in answer[0]["files"]) == STEMS
    check_commands(base_url, first, tmp_path)
    check_options(base_url, songs, tmp_path)


def check_options(base_url: str, songs: Path, tmp_path: Path) -> None:
    """Job options: a two-stem WAV of a new song, another rendition of a separated one."""
    server = ("--server", base_url)
    code, out, err = call("separate", str(songs / "third.mp3"), "--two-stems", "vocals",
                          "--format", "wav", "--bits", "24", "-o", str(tmp_path / "wav"),
                          *server)
    assert code == 0, out + err
    assert_stems(tmp_path / "wav" / "third", 2, ["vocals.wav", "no_vocals.wav"])
    assert b"WAVE" in (tmp_path / "wav" / "third" / "vocals.wav").read_bytes()[:12]
    third = song_hash(songs / "third.mp3")  # separated for a pair: all four stems on request
    code, out, err = call("download", third, "-o", str(tmp_path / "all"), *server)
    assert code == 0, out + err
    assert_stems(tmp_path / "all" / third, 2)

    second = song_hash(songs / "second.mp3")
    code, out, err = call("download", second, "--format", "flac", "-o", str(tmp_path / "flac"),
                          *server)
    assert code == 0, out + err
    assert_stems(tmp_path / "flac" / second, 2, [name.replace(".mp3", ".flac")
                                                 for name in STEMS])
    code, out, err = call("separate", str(songs / "first.mp3"), "--model", "htdemucs_9s",
                          *server)
    assert code == 1 and "first: failed: unknown model 'htdemucs_9s'" in out, out + err


def check_commands(base_url: str, first: str, tmp_path: Path) -> None:
    """status, queue, download, remove on a separated song, in words and in JSON."""
    server = ("--server", base_url)
    code, out, _ = call("status", first, "--json", *server)
    status = json.loads(out)
    assert code == 0 and status["hash"] == first and status["status"] == "done"
    assert sorted(status["tracks"]) == STEMS
    words = call("status", first, *server)[1].splitlines()
    assert words[0] == f"{first}: done"
    assert words[1:] == ["  tracks: " + ", ".join(status["tracks"]),
                         "  options: model=demucs_unittest format=mp3 bitrate=320"]
    assert json.loads(call("queue", "--json", *server)[1]) == {"queue": [], "length": 0,
                                                               "in_flight": 0}
    assert call("queue", *server)[1].strip() == "the queue is empty"

    code, out, err = call("download", first, "-o", str(tmp_path / "dl"), "--json", *server)
    assert code == 0 and json.loads(out)["status"] == "done", err
    assert_stems(tmp_path / "dl" / first, 2)

    code, out, _ = call("remove", first, "vocals.mp3", "--json", *server)
    assert code == 0 and json.loads(out)["track"] == "vocals.mp3"
    assert sorted(json.loads(call("status", first, "--json", *server)[1])["tracks"]) == [
        "bass.mp3", "drums.mp3", "other.mp3"]
    code, _, err = call("remove", first, "vocals.mp3", *server)
    assert code == 1 and "has no track vocals.mp3" in err

    unknown = "0" * 64
    for command in (("status", unknown), ("download", unknown), ("wait", unknown)):
        code, out, err = call(*command, *server)
        assert code == 1 and f"no song with hash {unknown}" in out + err, (command, out, err)


def test_usage_errors_exit_2(tmp_path):
    for args in ([], ["separate"], ["separate", str(tmp_path / "missing.mp3")],
                 ["separate", "--format", "ogg", str(tmp_path)], ["status"], ["frobnicate"]):
        code, _, err = call(*args)
        assert code == 2 and err.startswith("usage: micro-demucs"), (args, err)


def test_a_server_that_is_down_is_named(songs, monkeypatch):
    down = f"http://127.0.0.1:{stack.free_port()}"
    monkeypatch.setenv("MICRO_DEMUCS_URL", down)
    for args in (["separate", str(songs / "first.mp3"), "--server", down], ["queue"]):
        code, _, err = call(*args)
        assert code == 1
        assert err.strip().endswith(
            f"cannot reach the server at {down} (Connection refused); is it running? "
            "Set --server or MICRO_DEMUCS_URL"), err


@pytest.mark.slow
def test_ctrl_c_leaves_the_job_running_and_wait_takes_it_up(live_stack, songs, tmp_path):
    base_url = live_stack.start_rest(API_KEYS="k-write")
    song = songs / "first.mp3"
    refused = cli("separate", str(song), "--server", base_url)
    assert refused.returncode == 1 and "(HTTP 401)" in refused.stderr, refused.stderr

    env = {"MICRO_DEMUCS_URL": base_url, "MICRO_DEMUCS_API_KEY": "k-write"}
    process = subprocess.Popen([sys.executable, "-m", "client", "separate", str(song), "-o",
                                str(tmp_path / "out")], cwd=ROOT, env=_env(env),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for line in process.stdout:  # no worker yet: the song waits in the queue
        if line.startswith("first: queued"):
            break
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stdout + stderr
    resume = re.search(r"^  (micro-demucs wait .*)$", stderr, re.MULTILINE)
    assert resume, stderr
    assert resume.group(1) == (f"micro-demucs wait {song_hash(song)} --server {base_url} "
                               f"-o {tmp_path / 'out'}")
    # With API_KEYS, the queue shows a key its own songs; anonymous readers only counts.
    queue = requests.get(f"{base_url}/apiv1/queue", timeout=30,
                         headers={"Authorization": "Bearer k-write"}).json()
    assert queue["queue"] == [song_hash(song)] and queue["length"] == 1
    assert requests.get(f"{base_url}/apiv1/queue", timeout=30).json()["queue"] == []
    assert call("queue", "--server", base_url)[1].splitlines() == [
        "1 waiting in all, 1 of them other keys' songs"]
    assert call("queue", "--server", base_url, "--api-key", "k-write")[1].splitlines() == [
        f"   1  {song_hash(song)}"]
    check_cancel_and_delete(base_url, songs / "second.mp3")

    live_stack.start_worker()
    output = run_in_terminal(resume.group(1).split()[1:], env)
    assert "━" in output and "done, 4 tracks in" in output, output
    assert_stems(tmp_path / "out" / song_hash(song), 2)


@pytest.mark.slow
def test_a_song_of_another_model_shows_its_place_in_that_models_queue(live_stack, songs):
    base_url = live_stack.start_rest(DEMUCS_MODELS=f"demucs_unittest,{SIX}",
                                     DEFAULT_MODEL="demucs_unittest")
    api = Api(base_url)
    api.submit(songs / "second.mp3", {}, lambda sent, total: None)  # the default model's queue
    ahead = api.submit(songs / "third.mp3", {"model": SIX}, lambda sent, total: None)["hash"]
    api.close()
    song = songs / "first.mp3"
    process = subprocess.Popen([sys.executable, "-m", "client", "separate", str(song),
                                "--model", SIX, "--server", base_url], cwd=ROOT, env=_env(None),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = ""
    for line in process.stdout:  # no worker: the song waits behind the other of its model
        if line.startswith("first: queued"):
            break
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert line == "first: queued #2 of 2\n", stdout + stderr
    server = ("--server", base_url)
    code, out, _ = call("queue", "--model", SIX, "--json", *server)
    assert code == 0 and json.loads(out) == {"queue": [ahead, song_hash(song)], "length": 2,
                                             "in_flight": 0}
    code, out, _ = call("status", song_hash(song), "--model", SIX, *server)
    assert code == 0 and out.splitlines()[0] == f"{song_hash(song)}: queued #2 of 2"


def check_cancel_and_delete(base_url: str, song: Path) -> None:
    """A song waiting in the queue, cancelled, then deleted, with the key given by --api-key."""
    api = Api(base_url, "k-write")
    second = api.submit(song, {}, lambda sent, total: None)["hash"]
    api.close()
    server = ("--server", base_url, "--api-key", "k-write")
    code, out, err = call("cancel", second, "--json", *server)
    assert code == 0 and json.loads(out)["status"] == "cancelled", out + err
    code, out, err = call("wait", second, *server)
    assert code == 1 and f"{second[:12]}: cancelled" in out, out + err
    code, out, err = call("remove", second, *server)
    assert code == 0 and out.strip() == "Song deleted", out + err
    code, out, err = call("status", second, *server)
    assert code == 1 and f"no song with hash {second}" in err, out + err


def run_in_terminal(args: list[str], env: dict, timeout: float = 180) -> str:
    """Run `python -m client ARGS` with a terminal as its stdout; all it wrote, once it exits 0."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "client", *args], cwd=ROOT,
                               env={**_env(env), "COLUMNS": "120", "TERM": "xterm"},
                               stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    written = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([leader], [], [], 0.5)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process has ended
                break
            if not chunk:
                break
            written += chunk
    os.close(leader)
    assert process.wait(timeout=10) == 0, written.decode(errors="replace")
    return written.decode(errors="replace")
