"""A RoFormer song end to end: gunicorn, a separation worker serving a tiny Mel-Band RoFormer
from a models folder (N.yaml + N.ckpt), and a render worker, over HTTP with real Redis and S3;
and a worker whose checkpoint does not match its configuration, which stops with one line."""

from __future__ import annotations

import io

import requests
import soundfile

from tests.helpers import submit, wait_for, wait_for_status
from tests.roformer_reference import write_model


def test_a_roformer_song_goes_through_the_worker_and_the_render_worker(live_stack, make_mp3,
                                                                        tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    write_model(models, "tiny_mel", "mel_band_roformer", instruments=["vocals", "other"],
                target="vocals")
    env = {"DEMUCS_MODEL": "tiny_mel", "DEMUCS_MODELS": "tiny_mel", "MODELS_DIR": str(models)}
    base_url = live_stack.start_rest(**env)
    live_stack.start_worker(**env)
    song = submit(base_url, make_mp3(3, seed=11))
    done = wait_for_status(base_url, song, timeout=180)
    assert done["status"] == "done", (done, live_stack.worker_log())
    lengths = {}
    for stem in ("vocals", "instrumental"):
        url = f"{base_url}/apiv1/track/{song}/{stem}.wav"  # made on demand: 202 until then
        response = wait_for(lambda url=url: (answer := requests.get(url, timeout=30)).status_code
                            != 202 and answer, 120, f"{stem}.wav not rendered", interval=0.5)
        assert response.status_code == 200, response.text
        audio, rate = soundfile.read(io.BytesIO(response.content))
        assert rate == 44100 and audio.shape[1] == 2
        lengths[stem] = audio.shape[0]
    assert abs(lengths["vocals"] - 3 * 44100) < 4410 and len(set(lengths.values())) == 1
    assert "stems: vocals, instrumental" in live_stack.worker_log()


def test_a_mismatched_checkpoint_stops_the_worker_with_one_line(live_stack, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    write_model(models, "tiny_bs", "bs_roformer", instruments=["vocals", "other"])
    write_model(models, "other", "bs_roformer", instruments=["vocals", "other"], dim=24)
    (models / "other.ckpt").replace(models / "tiny_bs.ckpt")
    process = live_stack.start_worker(DEMUCS_MODEL="tiny_bs", DEMUCS_MODELS="tiny_bs",
                                      MODELS_DIR=str(models))
    assert process.wait(timeout=120) == 3  # EXIT_MODEL_UNAVAILABLE: no restart would help
    log = live_stack.worker_log()
    assert f"{models / 'tiny_bs.ckpt'}: does not match tiny_bs.yaml: key " in log
    assert "Traceback" not in log
