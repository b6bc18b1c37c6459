"""The project as an installable package: its commands resolve, its packages are all shipped,
its requirements are pinned, and nothing patches sys.path to find the code."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_command_resolves_to_a_function():
    scripts = PROJECT["project"]["scripts"]
    assert {"micro-demucs", "micro-demucs-worker", "micro-demucs-render"} <= set(scripts)
    for name, target in scripts.items():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name


def _imported_after(statement: str) -> set[str]:
    """Top-level packages a fresh interpreter has imported after `statement`."""
    code = f"{statement}; import sys; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=True)
    return {name.split(".")[0] for name in result.stdout.split()}


def test_the_worker_commands_import_no_torch_before_they_run():
    # Their spawned encoding processes re-import the command's module: it must stay light.
    assert "torch" not in _imported_after("import worker.__main__, worker.render.__main__")


def test_the_client_speaks_only_http():
    imported = _imported_after("import client.cli")
    assert not imported & {"rest", "worker", "common", "flask", "redis", "torch"}


def test_every_package_is_shipped():
    include = PROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    tops = [top for top in ROOT.iterdir() if (top / "__init__.py").exists()
            and top.name not in ("tests", "scripts")]  # not installed: run from the tree
    for init in (init for top in tops for init in top.glob("**/__init__.py")):
        package = ".".join(init.parent.relative_to(ROOT).parts)
        assert any(re.fullmatch(pattern.replace(".", r"\.").replace("*", ".+"), package)
                   for pattern in include), package


def test_requirements_are_pinned():
    for path in ROOT.glob("*/requirements.txt"):
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r"):
                assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", line), (path, line)


def test_no_module_patches_sys_path():
    patch = re.compile(r"sys\.path\.(insert|append)\(")
    patched = [str(path.relative_to(ROOT)) for path in ROOT.glob("**/*.py")
               if ".venv" not in path.parts and path.name != "test_packaging.py"
               and patch.search(path.read_text())]
    assert patched == []
