# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The bundled sample drive: a small synthetic drive regenerated deterministically into a cache folder.

``ensure_sample_drive()`` returns a folder holding the Waymo-4DSeg layout (sequence ``sample``, lossless PNG images
plus JPEGs) and the rosbag2 ``sample/`` (``sample/sample.mcap``) of the same drive. It regenerates only when the
completion stamp (which records the generator parameters) is missing or different, so an interrupted generation is
redone and an up-to-date cache costs nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Optional

from .io_utils import atomic_write_bytes

SAMPLE_SEED = 4
SAMPLE_FRAMES = 50
SAMPLE_SEQ = "sample"
SAMPLE_BAG = "sample"  # rosbag2 folder; storage file sample/sample.mcap
STAMP_FILE = ".complete.json"
SAMPLE_VERSION = 1
ENV_VAR = "SAM4D_SAMPLE_DIR"


def _sample_config():
    from .synth import sample_config

    return sample_config()


def sample_config_small():
    """A tiny variant of the sample config (tests)."""
    from .synth import sample_config

    return sample_config(width=128, height=96, beams=16, azimuths=256)


def default_sample_dir() -> Path:
    """``$SAM4D_SAMPLE_DIR``, else ``<repo>/.cache/sample_drive`` when running from a checkout, else
    ``~/.cache/sam4d/sample_drive``.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").exists() and (repo / "sam4d_model").is_dir() and os.access(repo, os.W_OK):
        return repo / ".cache" / "sample_drive"
    return Path.home() / ".cache" / "sam4d" / "sample_drive"


def _expected_stamp(num_frames: int, seed: int) -> dict:
    return {"version": SAMPLE_VERSION, "seed": seed, "num_frames": num_frames, "config": _sample_config().to_dict(),
            "seq": SAMPLE_SEQ, "bag": SAMPLE_BAG}


def _stamp_ok(root: Path, expected: dict) -> bool:
    try:
        st = json.loads((root / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return False
    if {k: st.get(k) for k in expected} != json.loads(json.dumps(expected)):
        return False
    return (root / "meta_infos" / f"{SAMPLE_SEQ}.pkl").exists() and (root / SAMPLE_BAG / "metadata.yaml").exists()


def ensure_sample_drive(root: Optional[str | Path] = None, num_frames: int = SAMPLE_FRAMES, seed: int = SAMPLE_SEED,
                        progress: bool = False, force: bool = False) -> Path:
    """Return the sample drive folder, (re)generating it first if missing, incomplete or outdated.

    Layout: ``<root>/meta_infos/sample.pkl`` + ``pcds``/``undistort_images``/``sam4d_labels``; bag: ``<root>/sample``.
    Deterministic: the same parameters always give the same files.
    """
    from .convert import export_layout_to_bag
    from .synth import SynthDrive, write_layout

    root = Path(root).expanduser() if root is not None else default_sample_dir()
    expected = _expected_stamp(num_frames, seed)
    if not force and _stamp_ok(root, expected):
        return root
    root.mkdir(parents=True, exist_ok=True)
    (root / STAMP_FILE).unlink(missing_ok=True)
    t0 = time.time()
    drive = SynthDrive(seed, num_frames, _sample_config())
    # resume keeps complete frames of an interrupted run (the generator is deterministic); a changed config
    # (different stamp) starts over
    old = root / ".params.json"
    same_params = old.exists() and old.read_text() == json.dumps(expected, sort_keys=True)
    write_layout(drive, root, SAMPLE_SEQ, image_format="both", resume=same_params and not force,
                 overwrite=not (same_params and not force), progress=progress)
    atomic_write_bytes(old, json.dumps(expected, sort_keys=True).encode())
    if (root / SAMPLE_BAG).exists():
        shutil.rmtree(root / SAMPLE_BAG)
    export_layout_to_bag(root, SAMPLE_SEQ, root / SAMPLE_BAG, overwrite=True, progress=progress)
    stamp = dict(expected, generated_in_s=round(time.time() - t0, 1), created=time.strftime("%Y-%m-%dT%H:%M:%S"))
    atomic_write_bytes(root / STAMP_FILE, json.dumps(stamp, indent=1).encode())
    return root
