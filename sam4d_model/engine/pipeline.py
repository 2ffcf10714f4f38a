# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The data engine on one sequence: masklets (stage 1) -> 4D map (2) -> association (3) -> fusion (4) -> labels.

>>> from sam4d_model.engine import EngineConfig, GroundTruthSource, label_sequence
>>> res = label_sequence(seq, GroundTruthSource(), EngineConfig(), evaluate=True, baseline=True)
>>> res.point_labels[t]        # (N_t,) int32 object ids (0 background, -1 ignore)
>>> res.image_labels(t)        # {camera: (H, W) int32 object ids}
>>> res.metrics["ours"]["covered"]["mean_iou"]

``seq`` is anything with ``len(seq)``, ``seq.frame(i) -> Frame`` and (for ground truth) ``seq.labels(i)``, e.g.
:func:`sam4d_model.data.waymo4dseg.read_sequence` or :class:`~sam4d_model.data.waymo4dseg.InMemorySequence`.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..data.geometry import project_to_image
from ..types import Frame, FrameLabels
from .association import CameraModel, associate, associate_sweep
from .config import EngineConfig
from .evaluate import evaluate_points
from .fusion import FusionResult, Observations, fuse, mask_to_object
from .masklets import MaskletSource
from .reconstruction import VoxelMap, build_voxel_map


def _pack(a: np.ndarray) -> Tuple[str, Tuple[int, ...], bytes]:
    a = np.ascontiguousarray(a)
    if a.size and a.min() >= 0 and a.max() < 65536:
        a = a.astype(np.uint16)
    return a.dtype.str, a.shape, zlib.compress(a.tobytes(), 1)


def _unpack(p: Tuple[str, Tuple[int, ...], bytes]) -> np.ndarray:
    dt, shape, data = p
    return np.frombuffer(zlib.decompress(data), dtype=np.dtype(dt)).reshape(shape).astype(np.int32)


@dataclass
class FrameInfo:
    """What the writer needs to know about a frame."""

    index: int
    timestamp_us: int
    num_points: int
    cameras: List[str]


@dataclass
class EngineResult:
    """Output of :func:`label_sequence`."""

    seq_name: str
    frames: List[FrameInfo]
    point_labels: List[np.ndarray]
    objects: Dict[int, dict]
    timings: Dict[str, float]
    stats: Dict[str, float]
    covered: List[np.ndarray]
    fov: List[np.ndarray]
    baseline_labels: Optional[List[np.ndarray]] = None
    metrics: Dict[str, dict] = field(default_factory=dict)
    _image: List[Dict[str, tuple]] = field(default_factory=list)

    def image_labels(self, t: int) -> Dict[str, np.ndarray]:
        """Image object ids of frame ``t`` per camera (global object ids, 0 = none)."""
        return {c: _unpack(p) for c, p in self._image[t].items()}

    def frame_labels(self, t: int) -> FrameLabels:
        """Pseudo-labels of frame ``t`` as :class:`FrameLabels`."""
        return FrameLabels(point_instance=self.point_labels[t], image_instance=self.image_labels(t),
                           object_classes={k: o["semantic"] for k, o in self.objects.items()})


def _cameras(frame: Frame) -> List[CameraModel]:
    return [CameraModel(c.name, np.asarray(c.intrinsics, np.float64), np.asarray(c.camera2lidar, np.float64),
                        c.width, c.height) for c in frame.cameras]


def _progress(it, enabled: bool, desc: str, total: Optional[int] = None):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, desc=desc, total=total, unit="frame", dynamic_ncols=True, leave=False)


def label_sequence(seq, source: MaskletSource, cfg: Optional[EngineConfig] = None, progress: bool = False,
                   baseline: bool = False, evaluate: bool = False, min_points: int = 50) -> EngineResult:
    """Run the engine on one sequence.

    Args:
        seq: the sequence (see the module docstring).
        source: where the 2D masklets come from.
        cfg: engine settings.
        progress: tqdm progress bars.
        baseline: also compute the single-frame baseline (each frame's points labelled from that frame's masks
            alone, with the same z-buffer).
        evaluate: compare with ``seq.labels`` (ground truth; see :mod:`sam4d_model.engine.evaluate`).
        min_points: evaluation: minimum object size in points.

    """
    cfg = cfg or EngineConfig()
    name = str(getattr(seq, "seq_name", "seq"))
    n_t = len(seq)
    timings: Dict[str, float] = {"load": 0.0, "masklets": 0.0, "reconstruct": 0.0, "associate": 0.0,
                                 "fuse": 0.0, "transfer": 0.0, "baseline": 0.0, "evaluate": 0.0}
    # ---------------- pass 1: geometry
    sweeps, poses, infos = [], [], []
    for t in _progress(range(n_t), progress, f"{name}: load", n_t):
        t0 = time.perf_counter()
        f = seq.frame(t)
        timings["load"] += time.perf_counter() - t0
        sweeps.append(np.asarray(f.points[:, :3], np.float32))
        poses.append(np.asarray(f.lidar2world, np.float64))
        infos.append(FrameInfo(int(f.index), int(round(float(f.timestamp) * 1e6)), f.num_points,
                               [c.name for c in f.cameras]))
    t0 = time.perf_counter()
    vmap = build_voxel_map(sweeps, poses, cfg)
    timings["reconstruct"] = time.perf_counter() - t0
    # ---------------- pass 2: masklets + association
    cam_names = sorted({c for i in infos for c in i.cameras})
    t0 = time.perf_counter()
    source.prepare(seq, cam_names, progress)
    timings["masklets"] += time.perf_counter() - t0
    n_el = vmap.num_elements
    n_obs = np.zeros(n_el, np.int32)
    pos_e: List[np.ndarray] = []
    pos_m: List[np.ndarray] = []
    pos_t: List[np.ndarray] = []
    vis_e: List[np.ndarray] = []
    pres: List[Tuple[int, int]] = []
    vis_k: List[np.ndarray] = []
    cam_idx = {c: i for i, c in enumerate(cam_names)}
    m_index: Dict[Tuple[str, int], int] = {}
    m_cats: Dict[int, str] = {}
    packed: List[Dict[str, tuple]] = []
    base_labels: Optional[List[np.ndarray]] = [] if baseline else None
    fov: List[np.ndarray] = []
    gt_points: List[np.ndarray] = []
    gt_objects: set = set()
    for t in _progress(range(n_t), progress, f"{name}: associate", n_t):
        t0 = time.perf_counter()
        frame = seq.frame(t)
        t1 = time.perf_counter()
        fms = source.masks(seq, t, frame)
        t2 = time.perf_counter()
        timings["load"] += t1 - t0
        timings["masklets"] += t2 - t1
        packed.append({})
        fv = np.zeros(frame.num_points, bool)
        bl = np.zeros(frame.num_points, np.int32) if baseline else None
        for cam in _cameras(frame):
            ta = time.perf_counter()
            e, pix = associate(vmap, t, cam, cfg)
            n_obs[e] += 1
            vis_e.append(e.astype(np.int32))
            vis_k.append(np.full(len(e), cam_idx[cam.name] * n_t + t, np.int32))
            fm = fms.get(cam.name)
            ids = None
            if fm is not None:
                if fm.ids.shape != (cam.height, cam.width):
                    raise ValueError(f"{name} frame {t} camera {cam.name}: mask shape {fm.ids.shape} != image "
                                     f"{(cam.height, cam.width)}")
                local = fm.object_ids
                lut_k = np.array([0] + local, np.int64)
                lut_v = np.array([-1] + [m_index.setdefault((cam.name, k), len(m_index)) for k in local], np.int64)
                for k in local:
                    if k in fm.categories:
                        m_cats[m_index[(cam.name, k)]] = fm.categories[k]
                ids = fm.ids.reshape(-1)
                mid = lut_v[np.searchsorted(lut_k, ids[pix])]
                sel = mid >= 0
                pos_e.append(e[sel].astype(np.int32))
                pos_m.append(mid[sel].astype(np.int32))
                pos_t.append(np.full(int(sel.sum()), t, np.int32))
                pres.extend((int(m), t) for m in lut_v[1:])
                packed[t][cam.name] = (_pack(fm.ids), lut_k, lut_v)
            tb = time.perf_counter()
            timings["associate"] += tb - ta
            _, _, valid = project_to_image(frame.points[:, :3], cam.intrinsics, cam.camera2lidar, cam.width,
                                           cam.height)
            fv |= valid
            if baseline and ids is not None:
                idx, bpix = associate_sweep(frame.points, cam, cfg)
                mid = lut_v[np.searchsorted(lut_k, ids[bpix])]
                sel = (mid >= 0) & (bl[idx] == 0)
                bl[idx[sel]] = mid[sel] + 1
            timings["baseline"] += time.perf_counter() - tb
        fov.append(fv)
        if baseline:
            base_labels.append(bl)
        if evaluate:
            lab = seq.labels(t, frame.num_points, {c.name: c.image.shape[:2] for c in frame.cameras}) \
                if hasattr(seq, "root") else seq.labels(t)
            gt_points.append(np.asarray(lab.point_instance, np.int32))
            for im in lab.image_instance.values():
                gt_objects.update(int(k) for k in np.unique(im) if k > 0)
    masklets = [k for k, _ in sorted(m_index.items(), key=lambda kv: kv[1])]
    obs = Observations(n_obs, _cat(pos_e, np.int32), _cat(pos_m, np.int32), _cat(pos_t, np.int32), masklets, m_cats,
                       _cat(vis_e, np.int32), _cat(vis_k, np.int32), cam_names, n_t,
                       np.array(pres, np.int64).reshape(-1, 2))
    del vis_e, vis_k
    # ---------------- stage 4: fusion
    t0 = time.perf_counter()
    fus = fuse(vmap, obs, cfg)
    timings["fuse"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    point_labels, covered = _transfer(vmap, obs, fus, cfg)
    image = _image_labels(obs, fus, packed, n_t)
    timings["transfer"] = time.perf_counter() - t0
    stats = dict(vmap.stats)
    stats.update(fus.stats)
    stats["masklets"] = float(len(masklets))
    stats["observations"] = float(n_obs.sum())
    stats["covered_point_fraction"] = float(np.mean(np.concatenate(covered))) if covered else 0.0
    res = EngineResult(name, infos, point_labels, fus.objects, timings, stats, covered, fov, base_labels, {}, image)
    if evaluate:
        t0 = time.perf_counter()
        res.metrics = evaluate_result(res, gt_points, gt_objects, min_points)
        timings["evaluate"] = time.perf_counter() - t0
    return res


def _cat(parts: List[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def _transfer(vmap: VoxelMap, obs: Observations, fus: FusionResult, cfg: EngineConfig
              ) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """Element labels back to every frame's points; ``covered`` = the point's element was seen by a camera."""
    labels, covered = [], []
    for t in range(vmap.num_frames):
        pe = vmap.point_element[vmap.frame_points(t)]
        ok = pe >= 0
        lab = np.full(len(pe), cfg.uncovered_label, np.int32)
        lab[ok] = fus.element_label[pe[ok]]
        cov = np.zeros(len(pe), bool)
        cov[ok] = obs.n_obs[pe[ok]] > 0
        labels.append(lab)
        covered.append(cov)
    return labels, covered


def _image_labels(obs: Observations, fus: FusionResult, packed: List[Dict[str, tuple]], n_t: int
                  ) -> List[Dict[str, tuple]]:
    """Remap each camera's local mask ids to global object ids (per frame, by the 3D majority)."""
    m2o = mask_to_object(obs, fus.element_label, n_t)
    out: List[Dict[str, tuple]] = []
    for t, per in enumerate(packed):
        d = {}
        for cam, (pk, lut_k, lut_v) in per.items():
            ids = _unpack(pk)
            glob = np.zeros(len(lut_k), np.int64)
            for j in range(1, len(lut_k)):
                m = int(lut_v[j])
                glob[j] = m2o.get((m, t), fus.masklet_object.get(m, 0))
            d[cam] = _pack(glob[np.searchsorted(lut_k, ids)].astype(np.int32))
        out.append(d)
    return out


def evaluate_result(res: EngineResult, gt_points: List[np.ndarray], gt_objects: set, min_points: int = 50
                    ) -> Dict[str, dict]:
    """IoU of the pseudo-labels (and the baseline, if computed) on the ``covered`` and ``fov`` domains."""
    out: Dict[str, dict] = {}
    runs = {"ours": res.point_labels}
    if res.baseline_labels is not None:
        runs["baseline"] = res.baseline_labels
    for k, pred in runs.items():
        out[k] = {dom: evaluate_points(pred, gt_points, d, gt_objects, min_points)
                  for dom, d in (("covered", res.covered), ("fov", res.fov))}
    return out
