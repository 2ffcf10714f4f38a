# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Controlled corruption of ground-truth masklets, to measure how the 3D stages cope with imperfect 2D input.

Per camera, applied to each frame in order (deterministic for a given seed, sequence name and camera):

* **identity switches** (``switch_rate``): about this fraction of the (object, frame) masks carry a wrong id: a
  switch event exchanges the ids of two objects visible in the frame (or gives a lone object a fresh id) for
  1..``switch_max_len`` frames;
* **missed frames** (``miss_rate``): each object mask is dropped from a frame with this probability;
* **boundary noise** (``boundary_px``): each remaining mask is eroded or dilated by a radius drawn uniformly
  from ``-boundary_px..boundary_px`` pixels;
* **false masks** (``false_rate``): expected number of new spurious masks per frame (random blobs with fresh ids)
  that live for 1..``false_max_len`` frames.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from typing import Dict, List, Tuple

import cv2
import numpy as np

from .masklets import FrameMasks

#: Fresh ids (new tracks, false masks) start here so they never collide with ground-truth ids.
FRESH_ID_BASE = 1_000_000


@dataclass
class CorruptionConfig:
    """Strength of each corruption (all zero = clean ground truth)."""

    boundary_px: int = 0
    miss_rate: float = 0.0
    switch_rate: float = 0.0
    switch_max_len: int = 5
    false_rate: float = 0.0
    false_max_len: int = 3
    seed: int = 0

    @property
    def active(self) -> bool:
        return bool(self.boundary_px or self.miss_rate or self.switch_rate or self.false_rate)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def parse(cls, text: str) -> "CorruptionConfig":
        """From ``'boundary=3,miss=0.1,switch=0.05,false=0.2,seed=1'`` (CLI form); empty string = none."""
        keys = {"boundary": "boundary_px", "miss": "miss_rate", "switch": "switch_rate", "false": "false_rate",
                "seed": "seed", "switch_len": "switch_max_len", "false_len": "false_max_len"}
        kw = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            k, _, v = part.partition("=")
            if k not in keys:
                raise ValueError(f"unknown corruption {k!r} (use {sorted(keys)})")
            f = keys[k]
            kw[f] = int(v) if f in ("boundary_px", "seed", "switch_max_len", "false_max_len") else float(v)
        return cls(**kw)


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def morph_mask(mask: np.ndarray, r: int) -> np.ndarray:
    """Dilate (``r > 0``) or erode (``r < 0``) a boolean mask by a disk of radius ``|r|`` (on its bounding box)."""
    if r == 0 or not mask.any():
        return mask.copy()
    ys, xs = np.nonzero(mask)
    a = abs(r) + 1
    y0, y1 = max(0, ys.min() - a), min(mask.shape[0], ys.max() + a + 1)
    x0, x1 = max(0, xs.min() - a), min(mask.shape[1], xs.max() + a + 1)
    crop = mask[y0:y1, x0:x1].astype(np.uint8)
    if r > 0:
        crop = cv2.dilate(crop, _disk(r))
    else:
        crop = cv2.erode(crop, _disk(-r), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = crop > 0
    return out


class Corruptor:
    """Stateful corruption of one camera's id maps, frame by frame in increasing order."""

    def __init__(self, config: CorruptionConfig, stream: str = ""):
        self.cfg = config
        self.rng = np.random.default_rng([config.seed, zlib.crc32(stream.encode())])
        self.swaps: Dict[int, Tuple[int, int]] = {}  # true id -> (shown id, last frame)
        self.false: List[Tuple[int, np.ndarray, int]] = []  # (id, mask, last frame)
        self.next_id = FRESH_ID_BASE
        self.last_t = -1

    def _fresh(self) -> int:
        self.next_id += 1
        return self.next_id

    def __call__(self, t: int, fm: FrameMasks) -> FrameMasks:
        """Corrupt the masks of frame ``t`` (must be called with increasing ``t``)."""
        if t <= self.last_t:
            raise ValueError("Corruptor must be called with increasing frame indices")
        self.last_t = t
        cfg, rng = self.cfg, self.rng
        ids = fm.ids
        present = fm.object_ids
        # identity switches: expire, then start new events so that ~switch_rate of the masks are wrong
        self.swaps = {k: v for k, v in self.swaps.items() if v[1] >= t and k in present}
        if cfg.switch_rate > 0:
            mean_len = (1 + max(1, cfg.switch_max_len)) / 2.0
            p_start = cfg.switch_rate / mean_len
            free = [k for k in present if k not in self.swaps]
            for k in list(free):
                if k not in free or rng.uniform() >= p_start:
                    continue
                free.remove(k)
                last = t + int(rng.integers(1, max(1, cfg.switch_max_len) + 1)) - 1
                if free:
                    j = free.pop(int(rng.integers(len(free))))
                    self.swaps[k] = (j, last)
                    self.swaps[j] = (k, last)
                else:
                    self.swaps[k] = (self._fresh(), last)
        masks: List[Tuple[int, np.ndarray, float]] = []
        cats: Dict[int, str] = {}
        for k in present:
            if cfg.miss_rate > 0 and rng.uniform() < cfg.miss_rate:
                continue
            m = ids == k
            if cfg.boundary_px > 0:
                m = morph_mask(m, int(rng.integers(-cfg.boundary_px, cfg.boundary_px + 1)))
            if not m.any():
                continue
            shown = self.swaps.get(k, (k, t))[0]
            masks.append((shown, m, float(m.sum())))  # larger masks first, small ones painted on top
            if k in fm.categories:
                cats[shown] = fm.categories[k]
        # false masks: random blobs that persist for a few frames
        self.false = [f for f in self.false if f[2] >= t]
        if cfg.false_rate > 0:
            for _ in range(int(rng.poisson(cfg.false_rate))):
                self.false.append((self._fresh(), self._blob(ids.shape), t + int(rng.integers(0, cfg.false_max_len))))
        for fid, m, _ in self.false:
            masks.append((fid, m, 0.5 * float(m.sum())))
        masks.sort(key=lambda x: -x[2])
        out = np.zeros_like(ids)
        for oid, m, _ in masks:
            out[m] = oid
        present_out = set(np.unique(out).tolist())
        return FrameMasks(out, {o: 1.0 for o in present_out if o > 0}, {k: v for k, v in cats.items()
                                                                          if k in present_out})

    def _blob(self, shape) -> np.ndarray:
        h, w = shape
        rng = self.rng
        c = (int(rng.integers(0, w)), int(rng.integers(h // 3, h)))
        axes = (int(rng.integers(max(2, w // 80), max(3, w // 12))),
                int(rng.integers(max(2, h // 60), max(3, h // 10))))
        m = np.zeros(shape, np.uint8)
        cv2.ellipse(m, c, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        return m > 0
