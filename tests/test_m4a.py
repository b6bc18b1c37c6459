"""An M4A from upload to stems, on the real Redis and S3 servers: sent to the gateway as a file,
separated by a worker on the tiny model, rendered, its stems fetched and decoded; one whose
header understates its length stopped by the worker at the cap."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from common.settings import Settings
from rest.probe import probe
from tests import songflow
from tests.audio_files import audio_file
from tests.helpers import wait_for_job
from worker.runtime.errors import TooLong
from worker.separation.lossless import separate_to_store
from worker.separation.separator import Separator

pytestmark = pytest.mark.timeout(240)


def test_an_m4a_sent_as_a_file_comes_back_as_stems_of_its_length(make_client, run_worker, jobs,
                                                                   storage):
    client = make_client()
    m4a = audio_file("m4a", 3, seed=5)
    seconds = probe(m4a).duration_s
    response = client.post("/apiv1/separate", content_type="multipart/form-data",
                           data={"file": (io.BytesIO(m4a), "song.m4a"), "format": "flac"})
    assert response.status_code == 200, response.json
    song_hash = response.json["hash"]
    run_worker()
    wait_for_job(jobs, song_hash, lambda job: bool(job.awaiting), timeout=180,
                 what="the m4a was never separated")
    songflow.render_next(jobs, storage)
    assert client.get(f"/apiv1/status/{song_hash}").json["status"] == "done"
    for stem in ("bass", "drums", "other", "vocals"):
        track = client.get(f"/apiv1/track/{song_hash}/{stem}.flac")
        assert track.status_code == 200, track.json
        audio, rate = soundfile.read(io.BytesIO(track.data), always_2d=True)
        assert rate == 44100 and audio.shape[1] == 2, stem
        # The decoder plays the encoder's priming and the last frame's padding too.
        assert abs(audio.shape[0] / rate - seconds) < 0.05, (stem, audio.shape)
        assert np.abs(audio).max() > 0.001, stem


def test_an_m4a_whose_header_understates_its_length_stops_at_the_worker_cap(storage):
    m4a = bytearray(audio_file("m4a", 4))
    mdhd = m4a.index(b"mdhd") + 4  # a version 0 media header: timescale, then duration
    m4a[mdhd + 16:mdhd + 20] = m4a[mdhd + 12:mdhd + 16]  # one second, it says
    assert probe(bytes(m4a)).duration_s == 1
    storage.client.put_object(storage.songs_bucket, "lie.m4a", io.BytesIO(m4a), len(m4a))
    separator = Separator(Settings.from_env({"DEMUCS_MODEL": "demucs_unittest",
                                             "DEMUCS_DEVICE": "cpu"}))
    with pytest.raises(TooLong, match="limit"):
        separate_to_store(separator, storage, "lie", "lie.m4a", "demucs_unittest",
                          max_seconds=2, progress=lambda fraction: None)
    assert not list(storage.client.list_objects(storage.output_bucket, recursive=True))
