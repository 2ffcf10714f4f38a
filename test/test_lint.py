# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Lint as tests (ament-style): ruff (pycodestyle, pyflakes, pep257 docstrings), copyright headers."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ["sam4d_model", "sam4d_ros", "launch", "test", "benchmarks", "scripts"]


def _sources():
    files = []
    for d in SOURCE_DIRS:
        root = REPO / d
        if root.is_dir():
            files += [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                      and (p.suffix == ".py" or (p.parent.name == "scripts" and p.suffix in ("", ".sh")))]
    return sorted(files)


def test_ruff():
    ruff = shutil.which("ruff")
    cmd = [ruff] if ruff else [sys.executable, "-m", "ruff"]
    targets = [d for d in SOURCE_DIRS if (REPO / d).is_dir() and d != "scripts"]
    r = subprocess.run(cmd + ["check", "--no-cache", *targets], cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0 and "No module named ruff" in r.stderr:
        pytest.skip("ruff not installed")
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]


def test_copyright_headers():
    missing = []
    for p in _sources():
        head = "\n".join(p.read_text(errors="replace").splitlines()[:4])
        if "Copyright" not in head or "Apache-2.0" not in head:
            missing.append(str(p.relative_to(REPO)))
    assert not missing, f"files without the copyright/SPDX header: {missing}"
