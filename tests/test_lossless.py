"""Lossless stems in the real S3 server: what separate_to_store writes, refuses and cleans up."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile
import torch

from common.storage import LOSSLESS_HEADROOM, lossless_object
from scripts.bench_model import snr_db
from worker.audio import decode
from worker.errors import InputMissing, TooLong
from worker.lossless import separate_to_store
from worker.separator import Separator

MODEL = "demucs_unittest"


class Stop(Exception):
    """What a cancelled job's progress callback raises."""


@pytest.fixture(scope="module")
def separator() -> Separator:
    from common.settings import Settings

    return Separator(Settings.from_env({"DEMUCS_MODEL": MODEL, "DEMUCS_PRECISION": "fp32",
                                        "DEMUCS_DEVICE": "cpu"}))


def stored_objects(storage) -> list[str]:
    return sorted(obj.object_name for obj in
                  storage.client.list_objects(storage.output_bucket, recursive=True))


def read_stem(storage, song_hash: str, stem: str) -> tuple[np.ndarray, int]:
    response = storage.client.get_object(storage.output_bucket,
                                         lossless_object(song_hash, MODEL, stem))
    try:
        data, rate = soundfile.read(io.BytesIO(response.read()), dtype="float32",
                                    always_2d=True)
    finally:
        response.close()
        response.release_conn()
    return data.T * LOSSLESS_HEADROOM, rate


def put_upload(storage, name: str, data: bytes) -> None:
    storage.client.put_object(storage.songs_bucket, name, io.BytesIO(data), len(data))


def test_each_stem_is_stored_as_24_bit_flac_equal_to_the_separation(storage, separator,
                                                                      make_mp3):
    mp3 = make_mp3(5, seed=3)
    put_upload(storage, "abc.mp3", mp3)
    seen: list[float] = []
    timings = separate_to_store(separator, storage, "abc", "abc.mp3", MODEL, max_seconds=60,
                                progress=seen.append)
    assert stored_objects(storage) == sorted(lossless_object("abc", MODEL, stem)
                                             for stem in separator.sources)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert set(timings) >= {"fetch", "decode", "separate", "store", "audio_seconds"}
    wav = decode(mp3, separator.samplerate, separator.audio_channels)
    assert timings["audio_seconds"] == pytest.approx(wav.shape[-1] / separator.samplerate,
                                                     abs=1e-3)
    expected = separator.separate(wav)
    for stem in separator.sources:
        info = soundfile.info(io.BytesIO(storage.client.get_object(
            storage.output_bucket, lossless_object("abc", MODEL, stem)).read()))
        assert (info.format, info.subtype, info.channels) == ("FLAC", "PCM_24", 2)
        data, rate = read_stem(storage, "abc", stem)
        assert rate == separator.samplerate and data.shape == tuple(expected[stem].shape)
        assert snr_db(expected[stem], torch.from_numpy(data)) >= 60


def test_a_progress_that_raises_stops_it_and_leaves_nothing(storage, separator, make_mp3):
    put_upload(storage, "abc.mp3", make_mp3(5, seed=3))
    calls = []

    def cancel(fraction: float) -> None:
        calls.append(fraction)
        if len(calls) == 1:
            raise Stop

    with pytest.raises(Stop):
        separate_to_store(separator, storage, "abc", "abc.mp3", MODEL, max_seconds=60,
                          progress=cancel)
    assert len(calls) == 1 and stored_objects(storage) == []


def test_too_long_and_missing_uploads_are_refused(storage, separator, make_mp3):
    put_upload(storage, "abc.mp3", make_mp3(5, seed=3))
    with pytest.raises(TooLong, match="limit is 3 s"):
        separate_to_store(separator, storage, "abc", "abc.mp3", MODEL, max_seconds=3,
                          progress=lambda _: None)
    with pytest.raises(InputMissing):
        separate_to_store(separator, storage, "def", "def.mp3", MODEL, max_seconds=60,
                          progress=lambda _: None)
    assert stored_objects(storage) == []
