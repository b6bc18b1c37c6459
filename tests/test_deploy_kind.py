"""scripts/deploy/kind-check, the deployment proven on a kind cluster: no Docker engine here,
so what runs is its shell (bash -n, shellcheck) and the overlay it applies (--render), with
the secrets it makes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

from common.settings import Settings
from tests.k8s import K8S_VERSION, ROOT, app_containers, container_env, one, pod_spec

SCRIPT = ROOT / "scripts" / "deploy" / "kind-check"
CRD_APIS = ("keda.sh/",)


def kind_render(cache: Path) -> tuple[dict, ...]:
    """What the script applies, made in `cache` (its secrets are kept there)."""
    out = subprocess.run([str(SCRIPT), "--render"], capture_output=True, text=True, timeout=120,
                         check=False, env={**os.environ, "XDG_CACHE_HOME": str(cache)})
    assert out.returncode == 0, out.stderr
    return tuple(o for o in yaml.safe_load_all(out.stdout) if o)


def test_the_script_is_sound_shell() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], timeout=10, check=False).returncode == 0
    shellcheck = Path(sys.executable).parent / "shellcheck"
    out = subprocess.run([str(shellcheck), str(SCRIPT)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stdout


def test_it_applies_the_cpu_overlay_with_real_secrets_it_keeps(tmp_path: Path) -> None:
    objs = kind_render(tmp_path)
    for obj in objs:
        if not obj["apiVersion"].startswith(CRD_APIS):
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    for _, container in app_containers(objs):
        Settings.from_env(container_env(objs, container, decode=True)).require_secrets()
    assert {o["kind"] for o in objs} >= {"ScaledObject", "StatefulSet", "Deployment"}
    again = kind_render(tmp_path)  # a second run: the same secrets, so nothing restarts
    assert [o for o in again if o["kind"] == "Secret"] == [o for o in objs if o["kind"] == "Secret"]
    assert kind_render(tmp_path / "other") != objs  # another cluster, its own secrets


def test_it_fits_a_laptop_and_builds_the_images_it_names(tmp_path: Path) -> None:
    objs = kind_render(tmp_path)
    spec = pod_spec(one(objs, "Deployment", "render"))
    (render,) = spec["containers"]
    (tmp,) = [v for v in spec["volumes"] if v["name"] == "tmp"]
    assert render["resources"]["requests"]["ephemeral-storage"] == tmp["emptyDir"]["sizeLimit"]
    text = SCRIPT.read_text()
    images = {c["image"].split("/")[-1].split(":")[0] for _, c in app_containers(objs)}
    assert images == {"rest", "worker", "render"}
    for dockerfile in ("rest/Dockerfile", "worker/Dockerfile", "worker/render/Dockerfile"):
        assert re.search(rf"docker build -q -f {dockerfile} ", text), dockerfile
    song = re.search(r"SONG=\$\{SONG:-([^}]+)\}", text).group(1)
    assert (ROOT / song).stat().st_size > 0
