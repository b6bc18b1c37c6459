"""RoFormer models: our streamed, batched inference against audio-separator's own pipeline on
the same tiny random-weight checkpoints (tests/roformer_reference.py), stem sets, and strict
loading."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from common.settings import Settings
from scripts.bench.bench_model import snr_db
from tests.helpers import one_fast
from tests.roformer_reference import reference_demix, reference_network, write_model
from worker.runtime.errors import ModelLoadError
from worker.separation import roformer
from worker.separation.audio import Summary
from worker.separation.chunking import ChunkedModel, chunk_starts
from worker.separation.roformer import mel_filter_bank
from worker.separation.roformer_load import load_roformer
from worker.separation.separator import Separator

FAMILIES = ["bs_roformer", "mel_band_roformer"]


def song(seconds: float, seed: int = 0) -> torch.Tensor:
    """A stereo mix peaking below 0.9, where the reference changes no level."""
    generator = torch.Generator().manual_seed(seed)
    mix = torch.randn(2, int(44100 * seconds), generator=generator)
    return (0.8 * mix / mix.abs().max()).float()


def reference(folder: Path, name: str, family: str, section: dict, mix: torch.Tensor):
    network, config = load_roformer(name, str(folder))
    ref = reference_network(family, section)
    ref.load_state_dict(torch.load(folder / f"{name}.ckpt", weights_only=True))
    out = reference_demix(ref, mix.numpy(), config.chunk, config.overlap, config.instruments,
                          config.target)
    return network, config, out


FOUR = ["bass", "drums", "vocals", "other"]
STEM_SETS = (["vocals", "other"], FOUR, [*FOUR, "guitar", "piano"])


# Each family with four stems in the fast tier; every stem set in `make test`.
@pytest.mark.parametrize(("family", "instruments"), one_fast(
    [(family, stems) for stems in STEM_SETS for family in FAMILIES],
    *((family, FOUR) for family in FAMILIES)))
def test_stems_equal_the_reference_in_fp32(tmp_path, family, instruments):
    section = write_model(tmp_path, "m", family, instruments=instruments)
    mix = song(0.4)
    network, config, expected = reference(tmp_path, "m", family, section, mix)
    ours = ChunkedModel(network, config, "cpu", "fp32", batch=3).separate(mix)
    assert config.sources == instruments and ours.shape == (len(instruments), *mix.shape)
    for index, name in enumerate(instruments):
        assert snr_db(torch.from_numpy(expected[name]), ours[index]) >= 60


@pytest.mark.parametrize("family", FAMILIES)
def test_one_target_gives_it_and_the_mix_minus_it(tmp_path, family):
    section = write_model(tmp_path, "m", family, instruments=["vocals", "other"],
                          target="vocals")
    mix = song(0.4, seed=1)
    network, config, expected = reference(tmp_path, "m", family, section, mix)
    ours = ChunkedModel(network, config, "cpu", "fp32", batch=2).separate(mix)
    assert config.sources == ["vocals", "instrumental"]
    assert snr_db(torch.from_numpy(expected["primary"]), ours[0]) >= 60
    assert snr_db(torch.from_numpy(expected["secondary"]), ours[1]) >= 60
    assert torch.allclose(ours[0] + ours[1], mix, atol=1e-6)


def test_streamed_in_small_blocks_equals_whole_and_progress_counts_chunks(tmp_path):
    write_model(tmp_path, "m", "bs_roformer", instruments=["vocals", "other"], overlap=3)
    network, config = load_roformer("m", str(tmp_path))
    runner = ChunkedModel(network, config, "cpu", "fp32", batch=2)
    mix = song(0.9, seed=2)
    whole = runner.separate(mix)
    seen: list[float] = []
    blocks = mix.split(1000, dim=-1)
    stretches = list(runner.stream(iter(blocks), mix.shape[-1], seen.append))
    assert len(stretches) > 2 and torch.equal(torch.cat(stretches, -1), whole)
    starts = chunk_starts(mix.shape[-1], config.chunk, config.chunk // 3)
    assert seen[-1] == 1.0 and len(seen) == -(-len(starts) // 2)


def test_a_song_shorter_than_a_chunk_is_one_short_chunk(tmp_path):
    section = write_model(tmp_path, "m", "mel_band_roformer", instruments=["vocals", "other"])
    mix = song(0.03)  # under the 2,048-sample chunk
    network, config, expected = reference(tmp_path, "m", "mel_band_roformer", section, mix)
    ours = ChunkedModel(network, config, "cpu", "fp32").separate(mix)
    assert chunk_starts(mix.shape[-1], config.chunk, 512) == [0]
    for index, name in enumerate(config.sources):
        assert snr_db(torch.from_numpy(expected[name]), ours[index]) >= 60


@pytest.mark.parametrize("family", one_fast(FAMILIES, "bs_roformer"))
def test_bf16_stays_close(tmp_path, family):
    section = write_model(tmp_path, "m", family, instruments=["vocals", "other"])
    mix = song(0.5, seed=3)
    network, config, expected = reference(tmp_path, "m", family, section, mix)
    ours = ChunkedModel(network, config, "cpu", "bf16").separate(mix)
    assert snr_db(torch.from_numpy(expected["vocals"]), ours[0]) >= 35


def test_linear_attention_and_a_deeper_mask_estimator_equal_the_reference(tmp_path):
    section = write_model(tmp_path, "m", "bs_roformer", instruments=["vocals", "other"],
                          linear_transformer_depth=1, mask_estimator_depth=3)
    mix = song(0.2, seed=4)
    network, config, expected = reference(tmp_path, "m", "bs_roformer", section, mix)
    ours = ChunkedModel(network, config, "cpu", "fp32").separate(mix)
    assert snr_db(torch.from_numpy(expected["vocals"]), ours[0]) >= 60


def _axial_whole(network: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The axial transformers over whole transposed copies, out of place (MSST's way)."""
    b, t, f, d = x.shape
    store: list[torch.Tensor] = []
    for block in network.layers:
        if len(block) == 3:
            x = block[0](x.reshape(b, t * f, d)).view(b, t, f, d)
        for earlier in store:
            x = x + earlier
        x = block[-2](x.transpose(1, 2).reshape(b * f, t, d))
        x = block[-1](x.view(b, f, t, d).transpose(1, 2).reshape(b * t, f, d)).view(b, t, f, d)
        if network.skip_connection:
            store.append(x)
    return x


@pytest.mark.parametrize("options", [{}, {"skip_connection": True}, {
    "skip_connection": True, "linear_transformer_depth": 1}])
def test_transformers_in_blocks_in_place_equal_whole_sequences(tmp_path, monkeypatch, options):
    write_model(tmp_path, "m", "bs_roformer", instruments=["vocals", "other"], depth=3,
                **options)
    network, _ = load_roformer("m", str(tmp_path))
    x = torch.randn(1, 33, 7, 16, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        expected = _axial_whole(network, x.clone())
        monkeypatch.setattr(roformer, "BLOCK_ELEMENTS", 33 * 16 * 2)  # 2 bands, 9 frames
        got = network._axial(x.clone())
    assert torch.allclose(got, expected, atol=1e-5)


def test_options_audio_separator_ignores_follow_msst(tmp_path):
    """skip_connection, linear_transformer_depth and a deeper mask estimator load and run."""
    write_model(tmp_path, "m", "bs_roformer", instruments=["vocals", "other"],
                skip_connection=True, linear_transformer_depth=1, mask_estimator_depth=3,
                depth=2)
    network, config = load_roformer("m", str(tmp_path))
    out = ChunkedModel(network, config, "cpu", "fp32").separate(song(0.1))
    assert out.shape[0] == 2 and torch.isfinite(out).all()


def test_the_separator_serves_a_roformer_from_the_models_folder(tmp_path):
    write_model(tmp_path, "tiny_mel", "mel_band_roformer", instruments=["vocals", "other"],
                target="vocals")
    settings = Settings.from_env({"DEMUCS_MODEL": "tiny_mel", "DEMUCS_MODELS": "tiny_mel",
                                  "DEMUCS_REPO": str(tmp_path), "DEMUCS_DEVICE": "cpu",
                                  "DEMUCS_PRECISION": "fp32", "TORCH_THREADS": "1"})
    separator = Separator(settings)
    assert separator.sources == ["vocals", "instrumental"] and separator.samplerate == 44100
    mix = song(0.2)
    stretches = list(separator.stream([mix], Summary(mix.shape[-1], 0.0, 1.0, 0.2)))
    stems = torch.cat(stretches, -1)
    assert torch.allclose(stems.sum(0), mix, atol=1e-6)  # the level is kept, not normalised


def test_mel_bands_are_librosas():
    """Which STFT bins each mel band holds, as librosa 0.11.0's filters.mel gives them."""
    expected = {(44100, 2048, 60): "7709006e045f8b5f", (44100, 2048, 32): "996bc433e14bcde7",
                (48000, 2048, 60): "1e99b5f2c7c20ca5", (44100, 1024, 16): "37ca8a1576ba23b4",
                (44100, 2048, 128): "43d37d0f9c074793"}
    for (rate, n_fft, bands), digest in expected.items():
        positive = mel_filter_bank(rate, n_fft, bands) > 0
        assert hashlib.sha256(np.packbits(positive).tobytes()).hexdigest()[:16] == digest


# -- strict loading -------------------------------------------------------------------------

def load_error(folder: Path, name: str = "m") -> str:
    with pytest.raises(ModelLoadError) as caught:
        load_roformer(name, str(folder))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_missing_configuration_is_named(tmp_path):
    write_model(tmp_path, "m", "bs_roformer", instruments=["vocals", "other"])
    (tmp_path / "m.yaml").unlink()
    assert load_error(tmp_path).startswith(f"{tmp_path / 'm.yaml'}: missing")


def test_an_unknown_config_key_is_named(tmp_path):
    write_model(tmp_path, "m", "bs_roformer", instruments=["vocals", "other"],
                config_only={"dimm": 3})
    expected = f"{tmp_path / 'm.yaml'}: unknown key model.dimm for a bs_roformer"
    assert load_error(tmp_path) == expected


def test_a_family_is_read_from_the_bands(tmp_path):
    write_model(tmp_path, "m", "bs_roformer", instruments=["vocals", "other"],
                config_only={"num_bands": 4})
    assert "exactly one of freqs_per_bands" in load_error(tmp_path)


def test_python_objects_in_yaml_are_refused(tmp_path):
    write_model(tmp_path, "m", "bs_roformer", instruments=["vocals", "other"])
    path = tmp_path / "m.yaml"
    path.write_text(path.read_text() + "evil: !!python/object/apply:os.system ['true']\n")
    assert load_error(tmp_path).startswith(f"{path}: not a readable YAML configuration")


def test_missing_and_unexpected_keys_are_named(tmp_path):
    write_model(tmp_path, "m", "bs_roformer", instruments=["vocals", "other"])
    state = torch.load(tmp_path / "m.ckpt", weights_only=True)
    gone = state.pop("final_norm.gamma")
    torch.save(state, tmp_path / "m.ckpt")
    assert load_error(tmp_path).endswith("does not match m.yaml: missing key final_norm.gamma")
    state["final_norm.gamma"], state["extra.weight"] = gone, gone
    torch.save(state, tmp_path / "m.ckpt")
    assert load_error(tmp_path).endswith("unexpected key extra.weight")


def test_a_shape_mismatch_is_named(tmp_path):
    write_model(tmp_path, "m", "mel_band_roformer", instruments=["vocals", "other"])
    write_model(tmp_path, "wide", "mel_band_roformer", instruments=["vocals", "other"], dim=24)
    (tmp_path / "wide.ckpt").replace(tmp_path / "m.ckpt")
    message = load_error(tmp_path)
    assert message.startswith(f"{tmp_path / 'm.ckpt'}: does not match m.yaml: key ")
    assert "has shape [24]" in message and "makes [16]" in message


def test_an_unreadable_checkpoint_is_named(tmp_path):
    write_model(tmp_path, "m", "bs_roformer", instruments=["vocals", "other"])
    (tmp_path / "m.ckpt").write_bytes(b"not a checkpoint")
    assert load_error(tmp_path).startswith(f"{tmp_path / 'm.ckpt'}: not a readable PyTorch")


def test_a_stem_count_that_disagrees_with_the_instruments_is_named(tmp_path):
    write_model(tmp_path, "m", "bs_roformer", instruments=["vocals", "other"], num_stems=3)
    assert "model.num_stems is 3 but training names 2 output(s)" in load_error(tmp_path)
