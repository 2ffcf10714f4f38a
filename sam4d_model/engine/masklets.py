# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""2D masklets (per-camera video object masks) and the pluggable :class:`MaskletSource` interface.

A *masklet* is one object tracked by a 2D video segmenter in one camera; its id is local to that camera
(``(camera, local_id)``). Per frame and camera a source yields a :class:`FrameMasks`: an ``(H, W)`` int32 id map
(``0`` = no object) plus optional per-id scores and category names. Overlaps between masks of one frame are
resolved by the source (the higher-scoring mask owns the pixel).

The engine asks a source for the masks of frame ``t`` in increasing ``t`` (sources may keep state across frames,
e.g. the corruption model), after calling :meth:`MaskletSource.prepare` once per sequence (where video models run
over the whole drive).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..types import Frame


@dataclass
class FrameMasks:
    """Masks of one camera in one frame: ``ids`` (H, W) int32 local masklet ids, ``0`` = none."""

    ids: np.ndarray
    scores: Dict[int, float] = field(default_factory=dict)
    categories: Dict[int, str] = field(default_factory=dict)

    @property
    def object_ids(self) -> List[int]:
        """Local ids present in this frame (sorted, without 0)."""
        u = np.unique(self.ids)
        return [int(k) for k in u if k > 0]

    @classmethod
    def from_masks(cls, masks: Sequence[Tuple[int, np.ndarray, float]], shape: Tuple[int, int],
                   categories: Optional[Dict[int, str]] = None) -> "FrameMasks":
        """Build an id map from ``(local_id, bool mask, score)`` triples; higher scores win overlaps."""
        ids = np.zeros(shape, np.int32)
        scores: Dict[int, float] = {}
        for oid, m, s in sorted(masks, key=lambda x: (x[2], -x[0])):  # ascending score: best painted last
            if oid <= 0:
                raise ValueError(f"masklet ids must be positive, got {oid}")
            m = np.asarray(m, bool)
            if m.shape != tuple(shape):
                raise ValueError(f"mask of object {oid} has shape {m.shape}, expected {tuple(shape)}")
            ids[m] = oid
            scores[int(oid)] = float(s)
        present = set(np.unique(ids).tolist())
        scores = {k: v for k, v in scores.items() if k in present}
        cats = {k: v for k, v in (categories or {}).items() if k in present}
        return cls(ids, scores, cats)


class MaskletSource(ABC):
    """Where the 2D masklets come from (video segmenter, files, ground truth...)."""

    #: Short name used in reports and cache keys.
    name = "source"

    def prepare(self, seq, cameras: Sequence[str], progress: bool = False) -> None:
        """Called once per sequence before :meth:`masks` (run video models here). Default: nothing."""

    @abstractmethod
    def masks(self, seq, t: int, frame: Frame) -> Dict[str, FrameMasks]:
        """Masks of frame ``t`` per camera name (cameras without masks may be omitted: treated as empty)."""

    def fingerprint(self) -> dict:
        """JSON-able description of the source settings (stored in the report, used to detect stale results)."""
        return {"name": self.name}


def load_prompts(path) -> Dict[str, Dict[int, List[dict]]]:
    """Read a prompts file: ``{camera: {frame_idx: [{'obj_id', 'box'? [x0,y0,x1,y1], 'points'? [[x,y]...],
    'labels'? [1/0...], 'category'?}]}}`` (JSON; frame indices may be strings). Returns int frame keys.
    """
    import json
    from pathlib import Path

    d = json.loads(Path(path).read_text())
    if isinstance(d, dict) and "cameras" in d:
        d = d["cameras"]
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a dict camera -> frame -> prompts")
    out: Dict[str, Dict[int, List[dict]]] = {}
    for cam, per in d.items():
        if not isinstance(per, dict):
            raise ValueError(f"{path}: camera {cam}: expected a dict frame -> list of prompts")
        out[str(cam)] = {}
        for fi, plist in per.items():
            if not isinstance(plist, list):
                raise ValueError(f"{path}: camera {cam} frame {fi}: expected a list")
            for p in plist:
                if not isinstance(p, dict) or "obj_id" not in p or not ("box" in p or "points" in p):
                    raise ValueError(f"{path}: camera {cam} frame {fi}: each prompt needs obj_id and box or points")
            out[str(cam)][int(fi)] = plist
    return out
