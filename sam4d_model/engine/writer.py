# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Stage 5: write pseudo-labels in the Waymo-4DSeg layout, plus a per-sequence report.

Under the output root::

    sam4d_labels/<seq>/<timestamp_us>.json   SAM4D label files (COCO RLE image and LiDAR masks, global object ids,
                                             per-object score and semantic; LiDAR object -1 = ignore)
    sam4d_reports/<seq>.json                 report (objects with score/volume, timings, stats, metrics, settings);
                                             written last: its presence marks the sequence as finished
    meta_infos/<seq>.pkl                     the input meta with ``path.sam4d_label`` pointing at the new labels
    pcds/<seq>, undistort_images/<seq>       symlinks to the input data (only when the output root differs)

The label folder is written into a temporary folder and moved into place in one step, so an interrupted run never
leaves a partial set of label files; every single file is written atomically too.
"""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path
from typing import Optional

import numpy as np

from ..data.io_utils import atomic_directory, atomic_write_bytes, safe_pickle_load
from ..data.waymo4dseg import labels_to_json
from .pipeline import EngineResult

REPORT_DIR = "sam4d_reports"
LABEL_DIR = "sam4d_labels"


def report_path(out_root, seq_name: str) -> Path:
    """Where the report of ``seq_name`` goes (its presence marks a finished sequence)."""
    return Path(out_root) / REPORT_DIR / f"{seq_name}.json"


def load_report(out_root, seq_name: str) -> Optional[dict]:
    """The report of a finished sequence, or ``None``."""
    p = report_path(out_root, seq_name)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def is_finished(out_root, seq_name: str, fingerprint: Optional[dict] = None) -> bool:
    """Whether ``seq_name`` was labelled already (with the same settings, when ``fingerprint`` is given)."""
    rep = load_report(out_root, seq_name)
    if rep is None or not (Path(out_root) / LABEL_DIR / seq_name).is_dir():
        return False
    return fingerprint is None or rep.get("fingerprint") == _jsonable(fingerprint)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


def frame_label_json(res: EngineResult, t: int) -> dict:
    """SAM4D label dict of frame ``t`` (scores and semantics from the object table)."""
    fi = res.frames[t]
    d = labels_to_json(res.frame_labels(t), fi.num_points, fi.cameras, fi.index, fi.timestamp_us)
    for s in d["sensors"].values():
        for o in s["objects"]:
            obj = res.objects.get(int(o["object_id"]))
            if obj is not None:
                o["score"] = obj["score"]
            elif o["object_id"] == -1:
                o["score"] = 0.0
    return d


def build_report(res: EngineResult, fingerprint: dict, protocol: Optional[str] = None) -> dict:
    """The report dict of a result."""
    from . import evaluate

    stages = sum(res.timings.get(k, 0.0) for k in ("reconstruct", "associate", "fuse", "transfer", "write"))
    rep = {
        "seq_name": res.seq_name, "fingerprint": fingerprint, "num_frames": len(res.frames),
        "num_objects": len(res.objects), "objects": list(res.objects.values()),
        "timings_s": {k: round(v, 4) for k, v in res.timings.items()},
        "frames_per_hour_stages_2_5": round(3600.0 * len(res.frames) / stages, 1) if stages > 0 else None,
        "stats": res.stats,
    }
    if res.metrics:
        rep["metrics"] = res.metrics
        rep["evaluation_protocol"] = protocol or " ".join((evaluate.__doc__ or "").split())
    return _jsonable(rep)


def write_result(res: EngineResult, out_root, fingerprint: dict, seq_root=None, overwrite: bool = False) -> Path:
    """Write labels, meta and report of ``res`` under ``out_root``; returns the report path.

    ``seq_root``: the input layout root (its ``meta_infos/<seq>.pkl`` is copied with the new label paths; when it is
    another folder, the input ``pcds``/``undistort_images`` of the sequence are symlinked so that ``out_root`` is a
    readable layout root). Existing labels are replaced only with ``overwrite`` or when they are ours (a report
    exists).
    """
    import time

    t0 = time.perf_counter()
    out_root = Path(out_root)
    seq = res.seq_name
    label_dir = out_root / LABEL_DIR / seq
    if label_dir.exists() and not overwrite and load_report(out_root, seq) is None:
        raise FileExistsError(f"{label_dir} exists and was not written by the engine (use overwrite to replace it)")
    rep_path = report_path(out_root, seq)
    rep_path.unlink(missing_ok=True)  # unfinished from here until the new report is written
    with atomic_directory(label_dir, overwrite=True) as tmp:
        tmp.mkdir(parents=True)
        for t in range(len(res.frames)):
            d = frame_label_json(res, t)
            (tmp / f"{res.frames[t].timestamp_us}.json").write_text(json.dumps(d, separators=(",", ":")))
    if seq_root is not None:
        _write_meta(res, Path(seq_root), out_root)
    res.timings["write"] = time.perf_counter() - t0
    atomic_write_bytes(rep_path, json.dumps(build_report(res, fingerprint), indent=1).encode())
    return rep_path


def _write_meta(res: EngineResult, seq_root: Path, out_root: Path) -> None:
    seq = res.seq_name
    src = seq_root / "meta_infos" / f"{seq}.pkl"
    if not src.exists():
        return
    meta = safe_pickle_load(src)
    for f in meta.get("frames", []):
        ts = int(f.get("timestamp", Path(f["path"]["pcd"]).stem))
        f["path"]["sam4d_label"] = f"{LABEL_DIR}/{seq}/{ts}.json"
    if out_root.resolve() != seq_root.resolve():
        for sub in ("pcds", "undistort_images"):
            target = seq_root / sub / seq
            link = out_root / sub / seq
            if target.exists() and not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(target.resolve(), link, target_is_directory=True)
    atomic_write_bytes(out_root / "meta_infos" / f"{seq}.pkl", pickle.dumps(meta, protocol=4))
