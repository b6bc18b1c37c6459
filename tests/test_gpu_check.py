"""scripts/bench/gpu-check's CPU rehearsal: every step runs and the report has every field."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_cpu_rehearsal_writes_every_figure(tmp_path):
    report_path = tmp_path / "gpu-check.json"
    done = subprocess.run(
        [str(ROOT / "scripts" / "bench" / "gpu-check"), "--allow-cpu", "--seconds", "8",
         "--json", str(report_path)],
        env={**os.environ, "PYTHON": sys.executable}, cwd=tmp_path, capture_output=True,
        text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    fields = dict(item.split("=", 1) for item in summary.split())
    assert set(fields) == {"gpu_model_speedup", "bf16_snr_db", "oom_backoff", "compile_first_s",
                           "compile_cached_s", "busy", "busy_inside", "roformer"}
    report = json.loads(report_path.read_text())
    assert report["summary"] == summary

    stage = {row["name"]: row for row in report["model_stage"]}
    assert "stock apply_model fp32" in stage
    precisions = [row.get("precision") for row in report["model_stage"][1:]]
    assert precisions == ["fp32", "bf16", "fp16", "bf16"]
    fp32 = report["model_stage"][1]
    assert fp32["snr_db"] == "inf" or fp32["snr_db"] > 100  # batched fp32 equals stock
    assert all(row["seconds"] > 0 and "peak_mib" in row for row in report["model_stage"])

    backoff = report["oom_backoff"]
    assert fields["oom_backoff"] == "ok" and backoff["ok"]
    assert backoff["batch_from_free_memory"] == 8 and backoff["batch_after"] == 2
    assert len(backoff["halvings"]) == 2 and backoff["snr_db"] >= 60

    compiled = report["compile"]
    assert compiled["ok"] and compiled["first"]["seconds"] > 0
    assert compiled["cached"]["seconds"] > 0

    for how in ("apart", "inside"):
        busy = report["busy"][how]
        assert busy["songs"] == 2 and 0 < busy["busy"] <= 1
        assert busy["separating_s"] <= busy["wall_s"]
    # FLAC of one stem takes far more bytes than 320 kbps mp3: the writers really wrote.
    assert report["busy"]["apart"]["last_song_bytes"] > report["busy"]["inside"]["last_song_bytes"]


def test_cpu_rehearsal_serves_a_roformer_like_its_reference(tmp_path):
    """Step 5 alone, as the rehearsal runs it: fp32 meets the reference, each precision runs."""
    import torch

    from scripts.bench.gpu_check_roformer import roformer_check

    report = roformer_check(torch.device("cpu"), 9.0, small=True)
    assert report["ok"] and report["tiny"]
    names = [row["name"] for row in report["rows"]]
    assert names[0] == "reference fp32" and len(names) == 5
    assert report["rows"][1]["snr_db"] >= 60
