"""GET /apiv1/models: each served model with the catalogue's facts and quality, what its
workers registered, whether one is alive, and its speed measured on finished jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common import catalogue, keys, modelinfo
from tests.audio_files import audio_file
from tests.helpers import b64, wait_for, wait_for_job

pytestmark = pytest.mark.timeout(240)
MODEL = "demucs_unittest"


def served(client, name: str) -> dict:
    (entry,) = [m for m in client.get("/apiv1/models").json["models"] if m["name"] == name]
    return entry


def test_catalogued_and_unknown_models_before_any_worker(make_client, redis_client) -> None:
    client = make_client(DEMUCS_MODELS=f"{MODEL},htdemucs_ft,my_own", DEFAULT_MODEL=MODEL)
    models = client.get("/apiv1/models").json["models"]
    assert [m["name"] for m in models] == [MODEL, "htdemucs_ft", "my_own"]
    ft = models[1]
    assert ft["family"] == "demucs" and ft["default"] is False and ft["catalogued"] is True
    assert ft["stems"] == ["drums", "bass", "other", "vocals"]
    assert (ft["sample_rate"], ft["chunk_s"], ft["parameters"]) == (44100, 7.8, None)
    assert (ft["ready"], ft["workers"], ft["speed"]) == (False, 0, {})
    assert ft["quality"][0] == {
        "dataset": "MUSDB18-HQ, 13 tracks",
        "source": "python-audio-separator 0.47.1, models-scores.json (median SDR per stem)",
        "sdr": {"vocals": 10.79, "drums": 10.02, "bass": 12.02}}
    # Not catalogued: what is known (Demucs publishes its stems), the rest null.
    assert models[0] == {"name": MODEL, "stems": ["drums", "bass", "other", "vocals"],
                         "default": True, "family": None, "title": None, "sample_rate": None,
                         "chunk_s": None, "parameters": None, "ready": False, "workers": 0,
                         "catalogued": False, "quality": [], "speed": {}}
    assert models[2]["stems"] == [] and models[2]["family"] is None


def test_a_worker_registers_its_model_and_its_speed_is_counted(make_client, run_worker, jobs,
                                                              redis_client) -> None:
    from worker.separation.model import load_model

    client = make_client()
    worker = run_worker()
    wait_for(lambda: served(client, MODEL)["ready"], 60, "the worker never became ready")
    entry = served(client, MODEL)
    unittest = load_model(MODEL, "")
    assert entry["family"] == "demucs" and entry["workers"] == 1
    assert entry["sample_rate"] == 44100 and entry["chunk_s"] == float(unittest.segment)
    assert entry["parameters"] == sum(p.numel() for p in unittest.parameters())
    assert jobs.models() == {MODEL: ["drums", "bass", "other", "vocals"]}  # the old hash

    response = client.post("/apiv1/separate", json={"mp3": b64(audio_file("wav", 3))})
    song = response.json["hash"]
    wait_for_job(jobs, song, lambda job: bool(job.awaiting), timeout=180,
                 what="the song was never separated")
    speed = served(client, MODEL)["speed"]
    assert list(speed) == ["cpu"]
    assert speed["cpu"]["jobs"] == 1 and speed["cpu"]["audio_s"] == 3.0
    assert speed["cpu"]["rtf"] == speed["cpu"]["rtf_recent"] > 0

    worker.stop()  # its heartbeat goes with it
    wait_for(lambda: not served(client, MODEL)["ready"], 30, "a stopped worker stayed ready")


def test_speed_keeps_totals_and_a_recent_weighted_factor(redis_client) -> None:
    modelinfo.record_speed(redis_client, "m", "cpu", 10.0, 5.0)
    modelinfo.record_speed(redis_client, "m", "cpu", 10.0, 15.0)
    modelinfo.record_speed(redis_client, "m", "cuda NVIDIA H100", 60.0, 3.0)
    modelinfo.record_speed(redis_client, "m", "cpu", 0.0, 1.0)  # no audio: not counted
    assert modelinfo.speeds(redis_client, "m") == {
        "cpu": {"jobs": 2, "audio_s": 20.0, "rtf": 1.0, "rtf_recent": 0.7},  # .2*1.5 + .8*.5
        "cuda NVIDIA H100": {"jobs": 1, "audio_s": 60.0, "rtf": 0.05, "rtf_recent": 0.05}}


def test_registering_forgets_dead_workers_and_keeps_the_old_hash(redis_client) -> None:
    redis_client.sadd(keys.model_workers("m"), "gone", "alive")
    redis_client.set(keys.heartbeat("alive"), "1", ex=30)
    facts = {"family": "bs_roformer", "stems": ["vocals", "other"], "sample_rate": 44100,
             "chunk_s": 8.0, "parameters": 123}
    modelinfo.register(redis_client, "m", "new", facts)
    assert redis_client.smembers(keys.model_workers("m")) == {"alive", "new"}
    assert json.loads(redis_client.hget(keys.MODELS, "m")) == ["vocals", "other"]
    assert modelinfo.registered(redis_client)["m"] == facts
    assert modelinfo.ready_workers(redis_client, "m") == 1  # `new` has no heartbeat yet


def test_shipped_catalogue_names_sources_for_every_figure() -> None:
    entries = catalogue.load()
    assert {"htdemucs", "htdemucs_ft", "htdemucs_6s", "mdx_extra", "bs_roformer_viperx_1297",
            "mel_band_roformer_kim", "bs_roformer_sw"} <= set(entries)
    assert entries["bs_roformer_viperx_1297"].quality[0].sdr == {"vocals": 12.97}
    for entry in entries.values():
        assert entry.files and entry.files[-1].name.endswith(".yaml"), entry.name
        for quality in entry.quality:
            assert quality.dataset and quality.source and quality.sdr, entry.name


def test_a_broken_catalogue_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[models.x]\nfamily = "wavenet"\nstems = []\nsample_rate = 1\n')
    with pytest.raises(catalogue.CatalogueError, match="family 'wavenet' is not one of demucs"):
        catalogue.load(path)
    path.write_text('[models.x]\nfamily = "demucs"\nstems = []\nsample_rate = 1\n'
                    'files = [{ name = "a.th", url = "http://127.0.0.1/a", sha256 = "12" }]\n')
    with pytest.raises(catalogue.CatalogueError, match="not 64 hex digits"):
        catalogue.load(path)
