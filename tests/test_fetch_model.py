"""worker/separation/fetch_model.py: one line out, exit 0 when the model loads, 1 when it cannot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fetch(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m worker.separation.fetch_model` with these settings and empty caches."""
    caches = {"HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "torch"),
              "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "worker.separation.fetch_model"], cwd=ROOT,
                          env={**os.environ, **caches, **env}, capture_output=True,
                          text=True, timeout=120, check=False)


def test_loads_a_model(tmp_path: Path) -> None:
    out = fetch(tmp_path, DEMUCS_MODEL="demucs_unittest")
    assert out.returncode == 0, out.stderr
    summary = "demucs_unittest: drums, bass, other, vocals at 44100 Hz"
    assert out.stdout == f"fetch_model: loaded {summary}\n"


def test_missing_repo_folder_is_one_clear_line(tmp_path: Path) -> None:
    out = fetch(tmp_path, DEMUCS_MODEL="htdemucs", DEMUCS_REPO=str(tmp_path / "absent"))
    assert out.returncode == 1
    reason = f"DEMUCS_REPO={tmp_path / 'absent'} is not a folder"
    assert out.stderr == f"fetch_model: cannot load Demucs model 'htdemucs': {reason}\n"


def test_unknown_model_in_local_repo_fails(tmp_path: Path) -> None:
    out = fetch(tmp_path, DEMUCS_MODEL="no_such_model", DEMUCS_REPO=str(tmp_path))
    assert out.returncode == 1 and out.stdout == ""
    (line,) = out.stderr.splitlines()
    assert line.startswith(f"fetch_model: cannot load Demucs model 'no_such_model' from the local "
                           f"folder {tmp_path}: ")
    assert line.endswith("set DEMUCS_MODEL/DEMUCS_REPO")


def test_bad_setting_fails_before_loading(tmp_path: Path) -> None:
    out = fetch(tmp_path, DEMUCS_MODEL="demucs_unittest", DEMUCS_OVERLAP="2")
    assert out.returncode == 1
    assert out.stderr.startswith("fetch_model: cannot load Demucs model: SettingsError:")
    assert "DEMUCS_OVERLAP" in out.stderr
