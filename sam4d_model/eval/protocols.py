# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The paper's evaluation protocols, run through the streaming tracker on labelled sequences.

A *sequence* is any indexable of ``(Frame, FrameLabels)`` pairs (a synthetic drive, a Waymo-4DSeg sequence).

* ``frame``: cross-modal frame-level segmentation with image-prioritised prompts (``1click``, ``3click``, ``box``):
  every evaluated frame is prompted on its own, in the image only, and both modalities are scored.
* ``stream``: semi-supervised streaming: prompts (``1click``, ``3click``, ``5click``, ``mask``) on the first frame of
  the clip only, then tracking; image mIoU and J&F, LiDAR mIoU.
* ablations by :class:`EvalSettings`: ``modalities`` ``both`` / ``camera`` (the cloud is dropped) / ``lidar``
  (the images are dropped; prompts go to the LiDAR), ``use_ego_motion`` on/off.
* ``baseline``: "SAM2 + projection": image-only tracking; the LiDAR mask is the set of points whose projection
  falls in the image mask (nearest surface not enforced, as in the paper's baseline).
* ``method='geometric'`` runs any protocol with :class:`~sam4d_model.geometric.GeometricTracker` (ground removal +
  Euclidean region growing from the click, ego-motion-moved centroid as the next click) instead of the model: the
  classical floor, printed in the same table.

Prompts come from simulated clicks (the centre of the ground-truth region) or from a prompts file
(:func:`load_prompts_file`: ``prompts_<seq>.json`` with ``frame_idx``, ``object_id``, ``lidar_xyz``,
``image_uv``), so real-scene results are reproducible. With a prompts file, ``frame`` scores each object on its
prompt frame, ``stream`` prompts each object on its prompt frame and tracks it to the end of the sequence.

Scores (:func:`summarize`): the headline ``image_mIoU`` / ``lidar_mIoU`` are over frames where the object is
present in that modality (ground truth non-empty); ``*_fp`` is the rate of non-empty predictions on frames where it
is absent; ``J&F`` (DAVIS) counts every scored frame, absent ones as 1 when predicted empty.

Multi-click prompts are interactive: click k+1 is a corrective click sampled (at the centre of the largest error
region) from the prediction made with clicks 1..k on the same frame; a fresh tracker replays the frame each time.

Objects evaluated (simulated clicks): ground-truth instances with at least ``min_pixels`` pixels in the first
camera and ``min_points`` points on the prompted frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..data.geometry import project_to_image
from ..training import prompt_sim as ps
from ..types import Frame, FrameLabels
from .metrics import MeanMeter, boundary_f, mask_iou

SequenceLike = Sequence[Tuple[Frame, FrameLabels]]


@dataclass
class EvalSettings:
    """One evaluation configuration."""

    protocol: str = "stream"  # 'frame' | 'stream' | 'baseline'
    method: str = "model"  # 'model' | 'geometric' (the classical floor)
    prompt: str = "1click"  # '1click' | '3click' | '5click' | 'box' | 'mask'
    prompt_modality: str = "image"  # 'image' | 'lidar' | 'both'
    modalities: str = "both"  # 'both' | 'camera' | 'lidar'
    use_ego_motion: bool = True
    clip_len: int = 8
    max_objects: int = 3
    min_pixels: int = 400
    min_points: int = 50

    @property
    def name(self) -> str:
        tag = f"{self.protocol}/{self.prompt}/{self.prompt_modality}->{self.modalities}"
        tag = ("geometric " if self.method == "geometric" else "") + tag
        return tag + ("" if self.use_ego_motion else "/no-ego")


def _select_objects(labels: FrameLabels, cam: str, s: EvalSettings) -> List[int]:
    img = labels.image_instance.get(cam) if labels.image_instance else None
    ids, counts = np.unique(labels.point_instance[labels.point_instance > 0], return_counts=True)
    pts = dict(zip(ids.tolist(), counts.tolist()))
    cands = []
    for oid, npts in pts.items():
        npix = int((img == oid).sum()) if img is not None else 0
        need_pix = s.modalities != "lidar" and s.prompt_modality != "lidar"
        if npts >= s.min_points and (npix >= s.min_pixels or not need_pix):
            cands.append((npix + npts, oid))
    return [oid for _, oid in sorted(cands, reverse=True)[: s.max_objects]]


def _view(frame: Frame, s: EvalSettings) -> Frame:
    if s.modalities == "camera":
        return replace(frame, points=np.zeros((0, frame.points.shape[1] if frame.points.ndim == 2 else 3),
                                              np.float32))
    if s.modalities == "lidar":
        return replace(frame, cameras=[])
    return frame


class _Runner:
    """Builds trackers and turns ground truth into prompts."""

    def __init__(self, make_tracker: Callable[[bool], object], s: EvalSettings, seed: int = 0):
        self.make_tracker = make_tracker
        self.s = s
        self.rng = np.random.default_rng(seed)

    def first_prompt(self, tr, oid: int, frame: Frame, labels: FrameLabels, cam: str, clicks: List) -> None:
        """Queue the prompt of ``oid`` on ``frame`` (clicks: list of (modality, point, label))."""
        s = self.s
        gt_img = labels.image_instance[cam] == oid if cam in labels.image_instance else None
        gt_pts = labels.point_instance == oid
        pm = s.prompt_modality if s.modalities == "both" else ("lidar" if s.modalities == "lidar" else "image")
        if s.prompt == "mask":
            tr.add_prompt(oid, image_mask=gt_img if pm in ("image", "both") else None,
                          lidar_mask=gt_pts if pm in ("lidar", "both") else None)
            return
        if s.prompt == "box":
            tr.add_prompt(oid, image_box=ps.image_box(gt_img) if pm in ("image", "both") else None,
                          lidar_box=ps.lidar_box(gt_pts, frame.points) if pm in ("lidar", "both") else None)
            return
        img_pts = [(p, lab) for m, p, lab in clicks if m == "image"]
        pts_pts = [(p, lab) for m, p, lab in clicks if m == "lidar"]
        tr.add_prompt(oid,
                      image_points=np.array([p for p, _ in img_pts], np.float32).reshape(-1, 2) if img_pts else None,
                      image_labels=np.array([lab for _, lab in img_pts], np.int64) if img_pts else None,
                      lidar_points=np.array([p for p, _ in pts_pts], np.float32).reshape(-1, 3) if pts_pts else None,
                      lidar_labels=np.array([lab for _, lab in pts_pts], np.int64) if pts_pts else None)

    def prompted_first_frame(self, frame: Frame, labels: FrameLabels, cam: str, oids: List[int]):
        """Interactive clicks on the first frame; returns (tracker, result on that frame)."""
        s = self.s
        view = _view(frame, s)
        n_clicks = {"1click": 1, "3click": 3, "5click": 5}.get(s.prompt, 1)
        pm = s.prompt_modality if s.modalities == "both" else ("lidar" if s.modalities == "lidar" else "image")
        clicks: Dict[int, List] = {}
        for oid in oids:
            gt_img = labels.image_instance[cam] == oid if cam in labels.image_instance else None
            gt_pts = labels.point_instance == oid
            c = []
            if pm in ("image", "both") and gt_img is not None and gt_img.any():
                c.append(("image", ps.image_click(gt_img, method="center"), 1))
            if pm in ("lidar", "both") and gt_pts.any():
                c.append(("lidar", ps.lidar_click(gt_pts, frame.points, method="center"), 1))
            clicks[oid] = c
        rounds = n_clicks if s.prompt.endswith("click") else 1
        tr, res = None, None
        for r in range(rounds):
            if r > 0:
                for j, oid in enumerate(res.obj_ids):
                    gt_img = labels.image_instance[cam] == oid
                    gt_pts = labels.point_instance == oid
                    if pm in ("image", "both") and res.image_masks:
                        corr = ps.image_correction(res.image_masks[0][j], gt_img, method="center")
                        if corr is not None:
                            clicks[oid].append(("image", corr[0], corr[1]))
                    if pm in ("lidar", "both") and res.point_masks.size:
                        corr = ps.lidar_correction(res.point_masks[j], gt_pts, frame.points, method="center")
                        if corr is not None:
                            clicks[oid].append(("lidar", corr[0], corr[1]))
            tr = self.make_tracker(s.use_ego_motion)
            for oid in oids:
                self.first_prompt(tr, oid, frame, labels, cam, clicks[oid])
            res = tr.step(view)
        return tr, res


def _score_one(pred: np.ndarray, gt: np.ndarray, meter: MeanMeter, kind: str,
               ignore: Optional[np.ndarray] = None) -> None:
    """Present frames add ``<kind>_iou``; absent frames add ``<kind>_fp`` (1 if anything was predicted)."""
    keep = None if ignore is None else ~np.asarray(ignore, bool)
    g = gt if keep is None else gt[keep]
    p = pred if keep is None else pred[keep]
    if np.any(g):
        meter.add(f"{kind}_iou", mask_iou(pred, gt, ignore))
    else:
        meter.add(f"{kind}_fp", float(np.any(p)))
    if kind == "image":
        meter.add("image_jf", 0.5 * (mask_iou(pred, gt) + boundary_f(pred, gt)))


def _score(res, frame: Frame, labels: FrameLabels, cam: str, meter: MeanMeter, s: EvalSettings,
           baseline: bool = False, only: Optional[Sequence[int]] = None) -> None:
    for j, oid in enumerate(res.obj_ids):
        if only is not None and oid not in only:
            continue
        if s.modalities != "lidar" and res.image_masks and cam in labels.image_instance:
            _score_one(res.image_masks[0][j], labels.image_instance[cam] == oid, meter, "image")
        if s.modalities != "camera" or baseline:
            gt_pts = labels.point_instance == oid
            ignore = labels.point_instance < 0
            if baseline:
                c = frame.cameras[0]
                uv, _, ok = project_to_image(frame.points, c.intrinsics, c.camera2lidar, c.width, c.height)
                pred_pts = np.zeros(len(frame.points), bool)
                ui = np.clip(uv[ok, 0].astype(int), 0, c.width - 1)
                vi = np.clip(uv[ok, 1].astype(int), 0, c.height - 1)
                pred_pts[ok] = res.image_masks[0][j][vi, ui]
            else:
                pred_pts = res.point_masks[j]
            _score_one(pred_pts, gt_pts, meter, "lidar", ignore)


# ------------------------------------------------------------------------------------------------ prompts file
@dataclass
class FilePrompt:
    """One click of a prompts file: the same physical point in both modalities."""

    object_id: int
    frame_idx: int
    lidar_xyz: Optional[np.ndarray] = None
    image_uv: Optional[np.ndarray] = None
    semantic: str = ""


def load_prompts_file(path) -> List[FilePrompt]:
    """Read ``prompts_<seq>.json`` (``{'prompts': [{'object_id', 'frame_idx', 'lidar_xyz', 'image_uv'}, ...]}``)."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"prompts file {path}: {e}") from e
    items = d.get("prompts") if isinstance(d, dict) else d
    if not isinstance(items, list):
        raise ValueError(f"prompts file {path}: expected a 'prompts' list")
    out = []
    for k, it in enumerate(items):
        try:
            xyz = it.get("lidar_xyz")
            uv = it.get("image_uv")
            fp = FilePrompt(object_id=int(it["object_id"]), frame_idx=int(it["frame_idx"]),
                            lidar_xyz=None if xyz is None else np.asarray(xyz, np.float64).reshape(3),
                            image_uv=None if uv is None else np.asarray(uv, np.float64).reshape(2),
                            semantic=str(it.get("semantic", "")))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"prompts file {path}: prompt {k} is malformed ({e})") from e
        if fp.object_id <= 0 or fp.frame_idx < 0:
            raise ValueError(f"prompts file {path}: prompt {k}: object_id must be > 0 and frame_idx >= 0")
        out.append(fp)
    return out


def _add_file_prompt(tr, fp: FilePrompt, s: EvalSettings) -> bool:
    pm = s.prompt_modality if s.modalities == "both" else ("lidar" if s.modalities == "lidar" else "image")
    img = fp.image_uv if pm in ("image", "both") else None
    pts = fp.lidar_xyz if pm in ("lidar", "both") else None
    if img is None and pts is None:
        return False
    tr.add_prompt(fp.object_id,
                  image_points=None if img is None else img.reshape(1, 2).astype(np.float32),
                  image_labels=None if img is None else np.ones(1, np.int64),
                  lidar_points=None if pts is None else pts.reshape(1, 3).astype(np.float32),
                  lidar_labels=None if pts is None else np.ones(1, np.int64))
    return True


def _evaluate_with_prompts(seq: SequenceLike, make_tracker, s: EvalSettings, meter: MeanMeter,
                           prompts: List[FilePrompt], on_frame=None) -> MeanMeter:
    if s.prompt != "1click":
        raise ValueError(f"a prompts file holds one click per object; prompt {s.prompt!r} needs simulated clicks")
    prompts = [p for p in prompts if p.frame_idx < len(seq)]
    if s.max_objects > 0:
        prompts = prompts[: s.max_objects]
    baseline = s.protocol == "baseline"
    if s.protocol == "frame":
        by_frame: Dict[int, List[FilePrompt]] = {}
        for p in prompts:
            by_frame.setdefault(p.frame_idx, []).append(p)
        for i in sorted(by_frame):
            frame, labels = seq[i]
            cam = frame.cameras[0].name if frame.cameras else ""
            tr = make_tracker(s.use_ego_motion)
            used = [p.object_id for p in by_frame[i] if _add_file_prompt(tr, p, s)]
            if not used:
                continue
            res = tr.step(_view(frame, s))
            _score(res, frame, labels, cam, meter, s, only=used)
            if on_frame:
                on_frame(i, frame, labels, res)
        return meter
    if not prompts:
        return meter
    tr = make_tracker(s.use_ego_motion)
    started: List[int] = []
    for i in range(min(p.frame_idx for p in prompts), len(seq)):
        frame, labels = seq[i]
        cam = frame.cameras[0].name if frame.cameras else ""
        for p in prompts:
            if p.frame_idx == i and _add_file_prompt(tr, p, s):
                started.append(p.object_id)
        res = tr.step(_view(frame, s))
        _score(res, frame, labels, cam, meter, s, baseline, only=started)
        if on_frame:
            on_frame(i, frame, labels, res)
    return meter


def evaluate_sequence(seq: SequenceLike, make_tracker: Callable[[bool], object], s: EvalSettings,
                      meter: Optional[MeanMeter] = None, seed: int = 0, on_frame=None,
                      prompts: Optional[List[FilePrompt]] = None) -> MeanMeter:
    """Run one protocol on one sequence (clicks simulated, or from ``prompts``); returns the meter (see
    :func:`summarize`).
    """
    meter = meter if meter is not None else MeanMeter()
    if len(seq) == 0:
        return meter
    baseline = s.protocol == "baseline"
    if baseline:
        s = replace(s, modalities="camera", prompt_modality="image")
    if prompts is not None:
        return _evaluate_with_prompts(seq, make_tracker, s, meter, prompts, on_frame)
    runner = _Runner(make_tracker, s, seed)
    if s.protocol == "frame":
        step = max(1, len(seq) // max(1, s.clip_len))
        for i in range(0, len(seq), step):
            frame, labels = seq[i]
            cam = frame.cameras[0].name if frame.cameras else ""
            oids = _select_objects(labels, cam, s)
            if not oids:
                continue
            _, res = runner.prompted_first_frame(frame, labels, cam, oids)
            _score(res, frame, labels, cam, meter, s)
            if on_frame:
                on_frame(i, frame, labels, res)
        return meter
    # streaming / baseline: clips of clip_len frames, prompt on the first frame of each clip
    for start in range(0, len(seq) - s.clip_len + 1, s.clip_len):
        frame, labels = seq[start]
        cam = frame.cameras[0].name if frame.cameras else ""
        oids = _select_objects(labels, cam, s)
        if not oids:
            continue
        tr, res = runner.prompted_first_frame(frame, labels, cam, oids)
        full = seq[start][0]
        _score(res, full, labels, cam, meter, s, baseline)
        if on_frame:
            on_frame(start, full, labels, res)
        for i in range(start + 1, start + s.clip_len):
            frame, labels = seq[i]
            res = tr.step(_view(frame, s))
            _score(res, frame, labels, cam, meter, s, baseline)
            if on_frame:
                on_frame(i, frame, labels, res)
    return meter


def summarize(meter: MeanMeter) -> Dict[str, float]:
    """Headline mIoUs over present frames, false-positive rates over absent frames, DAVIS J&F over all frames."""
    return {"image_mIoU": meter.mean("image_iou"), "image_fp": meter.mean("image_fp"),
            "J&F": meter.mean("image_jf"), "lidar_mIoU": meter.mean("lidar_iou"),
            "lidar_fp": meter.mean("lidar_fp"), "n_image": meter.counts.get("image_iou", 0),
            "n_lidar": meter.counts.get("lidar_iou", 0), "n_image_absent": meter.counts.get("image_fp", 0),
            "n_lidar_absent": meter.counts.get("lidar_fp", 0)}


PAPER_SUITE: List[EvalSettings] = [
    EvalSettings(protocol="frame", prompt="1click"),
    EvalSettings(protocol="frame", prompt="3click"),
    EvalSettings(protocol="frame", prompt="box"),
    EvalSettings(protocol="stream", prompt="1click"),
    EvalSettings(protocol="stream", prompt="3click"),
    EvalSettings(protocol="stream", prompt="5click"),
    EvalSettings(protocol="stream", prompt="mask"),
    EvalSettings(protocol="stream", prompt="1click", prompt_modality="both"),
    EvalSettings(protocol="stream", prompt="1click", modalities="camera"),
    EvalSettings(protocol="stream", prompt="1click", modalities="lidar", prompt_modality="lidar"),
    EvalSettings(protocol="stream", prompt="1click", prompt_modality="both", use_ego_motion=False),
    EvalSettings(protocol="baseline", prompt="1click"),
]
