"""Ensembles end to end: gunicorn, three separation workers (demucs_unittest and two tiny
six-stem HTDemucs written by the test), a render worker, real Redis and S3 servers, and
`micro-demucs ensemble` as a subprocess."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import soundfile

from tests import uvr_reference
from tests.helpers import wait_for, write_tiny_htdemucs
from tests.test_ensemble_dsp import snr_db

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parent.parent
MODEL, TINY, TINY_B = "demucs_unittest", "tiny6", "tiny6b"


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICRO_DEMUCS_")}
    return subprocess.run([sys.executable, "-m", "client", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=400, check=False)


def stem_of(storage, song: str, model: str, stem: str):
    data = storage.get_output(f"{song}/{model}/stems/{stem}.flac")
    return soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)[0].T


def test_ensembles_of_real_models_through_the_cli(live_stack, storage, tmp_path, make_mp3):
    folder = tmp_path / "models"
    folder.mkdir()
    six = write_tiny_htdemucs(folder, TINY, seed=0)
    write_tiny_htdemucs(folder, TINY_B, seed=1)
    served = {"DEMUCS_MODELS": f"{MODEL},{TINY},{TINY_B}", "DEFAULT_MODEL": MODEL}
    url = live_stack.start_rest(**served)
    live_stack.start_worker(**served)
    for name in (TINY, TINY_B):
        live_stack.start_worker(**served, DEMUCS_MODEL=name, DEMUCS_REPO=str(folder),
                                WORKER_ID=f"test-{name}")
    # The tiny models' stems are known once their workers registered them (503 before).
    wait_for(lambda: all(m["ready"] for m in requests.get(f"{url}/apiv1/models", timeout=10
                                                          ).json()["models"]), 180,
             "the workers never became ready")
    song = tmp_path / "song.mp3"
    song.write_bytes(make_mp3(3, seed=7))
    out = tmp_path / "out"

    # Vocals from one model, guitar from another: the song uploaded, both separated first.
    picked = cli("ensemble", str(song), "--algorithm", "pick", "--pick", f"vocals={MODEL}",
                 "--pick", f"guitar={TINY}", "-o", str(out), "--server", url)
    assert picked.returncode == 0, picked.stdout + picked.stderr + live_stack.render_log()
    (folder_out,) = out.iterdir()
    song_hash = folder_out.name
    assert sorted(p.name for p in folder_out.iterdir()) == ["guitar.mp3", "vocals.mp3"]
    name = picked.stderr.split("ensemble ")[1].split(" ")[0]
    assert storage.get_output(f"{song_hash}/{name}/stems/vocals.flac") == storage.get_output(
        f"{song_hash}/{MODEL}/stems/vocals.flac")  # a pick is the member's own stem

    # max_spec of the two six-stem models, by hash: every stem, as UVR's ensembling makes it.
    spec = cli("ensemble", song_hash, "--members", f"{TINY},{TINY_B}", "--algorithm",
               "max_spec", "--format", "flac", "-o", str(tmp_path / "max"), "--server", url)
    assert spec.returncode == 0, spec.stdout + spec.stderr + live_stack.render_log()
    assert sorted(p.name for p in (tmp_path / "max" / song_hash).iterdir()) == sorted(
        f"{stem}.flac" for stem in six)
    made = spec.stderr.split("ensemble ")[1].split(" ")[0]
    for stem in six:
        members = [stem_of(storage, song_hash, m, stem) for m in (TINY, TINY_B)]
        expected = uvr_reference.uvr_spec(members, loudest=True)
        assert snr_db(expected, stem_of(storage, song_hash, made, stem)) > 60, stem

    # Averaging models with different stems is refused, saying why.
    refused = cli("ensemble", song_hash, "--members", f"{MODEL},{TINY}", "--server", url)
    assert refused.returncode == 1
    assert refused.stderr.startswith("micro-demucs: avg needs members with the same stems "
                                     f"({MODEL}: drums, bass, other, vocals; {TINY}: ")
