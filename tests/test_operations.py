"""Render operation ids (common/operations.py) and the parameters a render job keeps."""

from __future__ import annotations

import pytest

from common import operations
from common.jobs import JobStatus, render_id
from common.operations import OperationError, canonical_params, operation_id, parse_operation

MODEL = "demucs_unittest"


def test_each_kind_parses_from_its_id():
    assert parse_operation("peaks").kind == "peaks"
    assert parse_operation("analysis").kind == "analysis"
    assert parse_operation("stems").kind == "stems"
    mix = parse_operation("mix-0123456789abcdef")
    assert (mix.kind, mix.id, mix.rendition) == ("mix", "mix-0123456789abcdef", None)
    rendition = parse_operation("flac-24+vocals")
    assert rendition.kind == "rendition" and rendition.rendition.two_stems == "vocals"


@pytest.mark.parametrize("bad", ["mix", "mix-12", "mix-0123456789ABCDEF", "peak", "mp3-999",
                                 "ogg-1", ""])
def test_an_id_of_no_operation_says_what_one_looks_like(bad):
    with pytest.raises(OperationError, match="must be|neither"):
        parse_operation(bad)


def test_the_same_parameters_give_the_same_id_in_any_key_order():
    one = operation_id("mix", {"gains": {"drums": -3}, "format": "wav"})
    other = operation_id("mix", {"format": "wav", "gains": {"drums": -3}})
    assert one == other and parse_operation(one).kind == "mix"
    assert operation_id("mix", {"format": "mp3"}) != one
    assert canonical_params({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert operation_id("peaks") == "peaks"
    with pytest.raises(OperationError):
        operation_id("transpose", {})


def test_a_render_job_keeps_its_parameters(jobs):
    song_hash = "c" * 64
    jobs.register_model(MODEL, ["drums", "bass", "other", "vocals"])
    jobs.enqueue(song_hash, None, 100, model=MODEL)
    job_id = jobs.claim("test-separator", 1, queue=jobs.queue_for(MODEL))
    token = jobs.start(job_id, "test-separator")
    render = render_id(song_hash, MODEL, "mp3-320")
    jobs.hand_off(job_id, "test-separator", token, song_hash, render, {})
    params = {"format": "wav", "mute": ["vocals"]}
    op = operations.operation_id("mix", params)
    assert jobs.request_rendition(song_hash, MODEL, op, canonical_params(params)) == "enqueued"
    job = jobs.get(render_id(song_hash, MODEL, op))
    assert job.status is JobStatus.QUEUED and job.params == params
    assert jobs.get(render).params == {}  # a rendition has none
