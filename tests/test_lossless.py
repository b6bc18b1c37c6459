"""Lossless stems in the real S3 server: what separate_to_store writes, refuses and cleans up."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile
import torch

from common.flac import LOSSLESS_HEADROOM
from common.settings import Settings
from common.storage import PartUpload, lossless_object
from scripts.bench.bench_model import snr_db
from tests.stems import decode, read_lossless
from worker.runtime.errors import InputMissing, TooLong
from worker.separation.lossless import StemSink, separate_to_store
from worker.separation.separator import Separator

MODEL = "demucs_unittest"


class Stop(Exception):
    """What a cancelled job's progress callback raises."""


@pytest.fixture(scope="module")
def separator() -> Separator:
    """demucs_unittest cut into 4 s segments, so that short songs have several."""
    separator = Separator(Settings.from_env({"DEMUCS_MODEL": MODEL, "DEMUCS_PRECISION": "fp32",
                                             "DEMUCS_DEVICE": "cpu"}))
    separator.model.segment = 4
    return separator


def stored(storage) -> list[str]:
    """Every object of the output bucket, and every multipart upload still open there."""
    objects = [obj.object_name for obj in
               storage.client.list_objects(storage.output_bucket, recursive=True)]
    uploads = storage.client._list_multipart_uploads(storage.output_bucket).uploads
    return sorted(objects + [f"open upload {upload.object_name}" for upload in uploads])


def read_stem(storage, song_hash: str, stem: str) -> tuple[bytes, torch.Tensor, int]:
    response = storage.client.get_object(storage.output_bucket,
                                         lossless_object(song_hash, MODEL, stem))
    try:
        data = response.read()
    finally:
        response.close()
        response.release_conn()
    wav, rate = read_lossless(data)
    return data, torch.from_numpy(wav), rate


def put_upload(storage, name: str, data: bytes) -> None:
    storage.client.put_object(storage.songs_bucket, name, io.BytesIO(data), len(data))


def test_each_stem_is_stored_as_24_bit_flac_equal_to_the_whole_song_separation(
        storage, separator, make_mp3):
    mp3 = make_mp3(9, seed=3)
    put_upload(storage, "abc.mp3", mp3)
    seen: list[float] = []
    timings = separate_to_store(separator, storage, "abc", "abc.mp3", MODEL, max_seconds=60,
                                progress=seen.append)
    assert stored(storage) == sorted(lossless_object("abc", MODEL, stem)
                                     for stem in separator.sources)
    wav = decode(mp3, separator.samplerate, separator.audio_channels)
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) > 2
    assert set(timings) == {"fetch", "decode", "separate", "store", "audio_seconds"}
    assert timings["audio_seconds"] == pytest.approx(wav.shape[-1] / separator.samplerate,
                                                     abs=1e-3)
    expected = separator.separate(wav)
    for stem in separator.sources:
        data, got, rate = read_stem(storage, "abc", stem)
        info = soundfile.info(io.BytesIO(data))
        assert (info.format, info.subtype, info.channels) == ("FLAC", "PCM_24", 2)
        assert info.frames == wav.shape[-1]  # the header was filled in at the end
        assert rate == separator.samplerate and got.shape == expected[stem].shape
        assert snr_db(expected[stem], got) >= 60


def test_a_progress_that_raises_stops_at_that_segment_and_leaves_nothing(storage, separator,
                                                                        make_mp3):
    put_upload(storage, "abc.mp3", make_mp3(9, seed=3))
    calls = []

    def cancel(fraction: float) -> None:
        calls.append(fraction)
        if fraction > 0.5:
            raise Stop

    with pytest.raises(Stop):
        separate_to_store(separator, storage, "abc", "abc.mp3", MODEL, max_seconds=60,
                          progress=cancel)
    assert calls[-1] > 0.5 and calls[-2] <= 0.5 and stored(storage) == []


def test_too_long_and_missing_uploads_are_refused(storage, separator, make_mp3):
    put_upload(storage, "abc.mp3", make_mp3(5, seed=3))
    with pytest.raises(TooLong, match="more than 3 s"):
        separate_to_store(separator, storage, "abc", "abc.mp3", MODEL, max_seconds=3,
                          progress=lambda _: None)
    with pytest.raises(InputMissing):
        separate_to_store(separator, storage, "def", "def.mp3", MODEL, max_seconds=60,
                          progress=lambda _: None)
    assert stored(storage) == []


def noise_stem(seconds: float) -> np.ndarray:
    """A `[2, samples]` stem that FLAC cannot shrink much: about 0.2 MB per second."""
    return np.random.default_rng(0).uniform(-4, 4, (2, int(seconds * 44100))).astype(np.float32)


@pytest.mark.parametrize("finish", [True, False])
def test_a_long_stem_goes_in_parts_and_is_visible_only_when_whole(storage, finish):
    """Over three parts of 5 MiB, the header part sent last; or aborted, leaving nothing."""
    stem = noise_stem(75)
    sink = StemSink(storage.lossless_upload("abc", MODEL, "drums"), 44100, 2)
    for start in range(0, stem.shape[-1], 100_000):
        sink.write(stem[:, start:start + 100_000])
    sink.finish()
    assert len(sink.upload.parts) >= 3 and stored(storage) == [
        f"open upload {lossless_object('abc', MODEL, 'drums')}"]
    if not finish:
        sink.abort()
        assert stored(storage) == []
        return
    sink.file.complete()
    data, got, rate = read_stem(storage, "abc", "drums")
    assert len(data) > 3 * PartUpload.PART_SIZE and rate == 44100
    assert soundfile.info(io.BytesIO(data)).frames == stem.shape[-1]
    assert np.abs(got.numpy() - stem).max() <= LOSSLESS_HEADROOM / 2**23
    assert stored(storage) == [lossless_object("abc", MODEL, "drums")]


@pytest.mark.parametrize("stems_left", [1, 3])
def test_a_retry_aborts_the_uploads_an_earlier_attempt_left_open(storage, separator, make_mp3,
                                                                  stems_left):
    """A worker killed mid-upload and restarted before any reaper saw it dead."""
    noise = noise_stem(45)  # more than two parts of FLAC: the first part after the head is sent
    for stem in ["drums", "bass", "vocals"][:stems_left]:
        sink = StemSink(storage.lossless_upload("abc", MODEL, stem), 44100, 2)
        sink.write(noise)
        sink.queued[-1][0].result()
        assert sink.upload.parts
    put_upload(storage, "abc.mp3", make_mp3(5, seed=2))
    separate_to_store(separator, storage, "abc", "abc.mp3", MODEL, max_seconds=60,
                      progress=lambda _: None)
    assert stored(storage) == sorted(lossless_object("abc", MODEL, stem)
                                     for stem in separator.sources)
