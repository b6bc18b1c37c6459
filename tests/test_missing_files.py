"""A file the song's records list but the object store no longer holds (removed behind their
back): every route that serves one answers the same 404, which says to resubmit the song,
instead of a 500 or a cut answer. On the real Redis and S3 servers (tests/songflow.py)."""

from __future__ import annotations

import pytest

from common import operations
from common.jobs import render_id
from common.storage import rendition_object
from tests import songflow
from tests.audio_files import audio_file
from tests.helpers import b64

MODEL = "demucs_unittest"


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture
def song(client, jobs, storage) -> str:
    """A song separated, its mp3s and its studio operations made."""
    response = client.post("/apiv1/separate", json={"mp3": b64(audio_file("wav", 1))})
    assert response.status_code == 200, response.json
    song_hash = response.json["hash"]
    songflow.separate_and_render(jobs, storage, song_hash)
    return song_hash


def test_every_file_gone_from_the_store_is_a_404_saying_to_resubmit(client, jobs, storage,
                                                                    song):
    peaks = jobs.get(render_id(song, MODEL, operations.PEAKS)).tracks[0]
    gone = {("mp3-320", "vocals.mp3"), (operations.ANALYSIS, "analysis.json"),
            (operations.PEAKS, peaks), (operations.SEEKINDEX, "seekindex.json")}
    storage.remove_output([rendition_object(song, MODEL, op, name) for op, name in gone])
    answers = {
        f"/apiv1/track/{song}/vocals.mp3": "track vocals.mp3",
        f"/apiv1/zip/{song}": "a track",
        f"/apiv1/analysis/{song}": "the analysis",
        f"/apiv1/peaks/{song}/{peaks}": peaks,
        f"/apiv1/playback/{song}": "the playback index",
    }
    for url, what in answers.items():
        response = client.get(url)
        assert response.status_code == 404, (url, response.status_code)
        assert response.json == {"error": f"{what} of song {song} is missing from the object "
                                          "store; resubmit the song"}, url
    assert client.get(f"/apiv1/track/{song}/drums.mp3").status_code == 200  # the others stay
