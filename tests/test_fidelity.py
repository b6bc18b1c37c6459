"""Fidelity, end to end: the service's WAV stems of a song equal those of the Demucs CLI
(`python -m demucs.separate --shifts 0`, 16-bit WAV) within 60 dB SNR, sample by sample.

The service's path is the real one: the upload in the songs bucket, a separation worker
(DEMUCS_PRECISION=fp32) storing lossless stems, a render worker making the `wav-16`
rendition the job asked for, both against the real Redis and S3 servers. The model is
`demucs_unittest`'s architecture with weights drawn once (seed 0) and saved as a model file,
so that the CLI and the worker load the same weights offline (`demucs_unittest` by name is
drawn afresh in each process). Every other format and the two-stem sums, made from the same
kind of lossless stems, are checked in tests/test_render_worker.py.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from demucs.hdemucs import HDemucs
from demucs.pretrained import SOURCES

from common.jobs import JobStatus, JobStore
from common.storage import rendition_object, song_object
from scripts.local import stack
from tests.helpers import b64, put_song, wait_for_job

pytestmark = pytest.mark.slow

MODEL = "demucs_unittest_seed0"


@pytest.fixture(scope="module")
def model_repo(tmp_path_factory):
    """A model folder holding demucs_unittest (HDemucs, 4 channels) with seed-0 weights."""
    folder = tmp_path_factory.mktemp("models")
    kwargs = {"channels": 4, "sources": SOURCES}  # as demucs.pretrained.demucs_unittest
    torch.manual_seed(0)
    model = HDemucs(**kwargs)
    torch.save({"klass": HDemucs, "args": (), "kwargs": kwargs, "state": model.state_dict()},
               folder / f"{MODEL}.th")
    return folder


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    error = np.sum((reference - other) ** 2)
    return float("inf") if error == 0 else 10 * np.log10(np.sum(reference ** 2) / error)


def cli_stems(song, model_repo, out) -> dict[str, np.ndarray]:
    """The 16-bit WAV stems the stock CLI writes, as int16 samples."""
    subprocess.run([sys.executable, "-m", "demucs.separate", "--shifts", "0", "-n", MODEL,
                    "--repo", str(model_repo), "-o", str(out), str(song)], check=True,
                   capture_output=True)
    return {stem: soundfile.read(out / MODEL / song.stem / f"{stem}.wav", dtype="int16")[0]
            for stem in SOURCES}


def test_service_wav_stems_equal_the_demucs_cli(service_env, redis_client, storage, make_mp3,
                                                model_repo, tmp_path):
    song = tmp_path / "song.mp3"
    song.write_bytes(make_mp3(4, seed=11))
    env = {**service_env, "DEMUCS_MODEL": MODEL, "DEMUCS_REPO": str(model_repo),
           "DEMUCS_PRECISION": "fp32", "TORCH_THREADS": "1", "RENDER_PROCESSES": "1"}
    processes = [stack.start_worker({**env, "WORKER_ID": "fidelity-separator"},
                                    tmp_path / "worker.log"),
                 stack.start_render({**env, "WORKER_ID": "fidelity-render"},
                                    tmp_path / "render.log")]
    try:
        # Submitted as the gateway does: the upload stored, then the job queued.
        song_hash = hashlib.sha256(b64(song.read_bytes()).encode()).hexdigest()
        put_song(storage, song_hash, song.read_bytes())
        jobs = JobStore(redis_client, MODEL)
        jobs.enqueue(song_hash, None, 10, model=MODEL, rendition="wav-16",
                     input_object=song_object(song_hash))
        expected = cli_stems(song, model_repo, tmp_path / "cli")  # while the service works
        job = wait_for_job(jobs, song_hash,
                           lambda j: j.status in (JobStatus.DONE, JobStatus.FAILED), 300)
    finally:
        for process in processes:
            stack.stop(process, timeout=20)
            stack.kill_group(process)
    assert (job.status, job.error) == (JobStatus.DONE, ""), (tmp_path / "worker.log").read_text()
    assert job.tracks == [f"{stem}.wav" for stem in SOURCES]
    for stem in SOURCES:
        data = storage.get_output(rendition_object(song_hash, MODEL, "wav-16", f"{stem}.wav"))
        ours, rate = soundfile.read(io.BytesIO(data), dtype="int16")
        assert rate == 44100 and ours.shape == expected[stem].shape, stem
        assert np.abs(expected[stem]).max() > 100, f"{stem}: the CLI wrote near silence"
        assert snr_db(expected[stem].astype(np.float64), ours.astype(np.float64)) >= 60, stem
