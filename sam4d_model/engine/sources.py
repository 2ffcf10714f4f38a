# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Masklet sources: ground truth (optionally corrupted), COCO-RLE mask files, SAM2 video predictor, SAM4D.

All implement :class:`~sam4d_model.engine.masklets.MaskletSource`.

Mask file format (:class:`FileMaskSource`, written by :func:`write_mask_files`): one JSON file per frame,
``<mask_dir>/<seq>/<timestamp_us>.json`` or ``<mask_dir>/<seq>/<frame_index:06d>.json`` (the ``<seq>`` level is
optional), either in the SAM4D label layout (``{'sensors': {cam: {'objects': [{'object_id', 'image_mask', 'score'?,
'semantic'?}]}}}``) or as a list of ``{'camera', 'object_id' | 'track_id', 'segmentation' (COCO RLE), 'score'?,
'category'?}``. Any external video segmenter can feed the engine that way.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..data.io_utils import DataError, atomic_write_bytes
from ..data.waymo4dseg import decode_mask, encode_mask
from ..types import Frame
from .corruption import CorruptionConfig, Corruptor
from .masklets import FrameMasks, MaskletSource, load_prompts


def _frame_ts_us(frame: Frame) -> int:
    return int(round(float(frame.timestamp) * 1e6))


# ------------------------------------------------------------------------------------------------ ground truth
class GroundTruthSource(MaskletSource):
    """Masklets = the ground-truth image instance masks of the sequence (``seq.labels(t).image_instance``).

    With a :class:`CorruptionConfig` the masks are corrupted per camera (boundary noise, missed frames, identity
    switches, false masks); the corruption is deterministic given its seed and the sequence name.
    """

    name = "gt"

    def __init__(self, corruption: Optional[CorruptionConfig] = None):
        self.corruption = corruption or CorruptionConfig()
        self._corruptors: Dict[str, Corruptor] = {}
        self._seq_name = ""

    def prepare(self, seq, cameras: Sequence[str], progress: bool = False) -> None:
        self._seq_name = str(getattr(seq, "seq_name", ""))
        self._corruptors = {c: Corruptor(self.corruption, f"{self._seq_name}/{c}") for c in cameras}

    def masks(self, seq, t: int, frame: Frame) -> Dict[str, FrameMasks]:
        lab = seq.labels(t, frame.num_points, {c.name: c.image.shape[:2] for c in frame.cameras}) \
            if hasattr(seq, "root") else seq.labels(t)
        if lab is None:
            raise DataError(f"{self._seq_name} frame {t}: no ground-truth labels for the gt masklet source")
        out = {}
        for cam in frame.cameras:
            ids = lab.image_instance.get(cam.name)
            if ids is None:
                continue
            ids = np.where(np.asarray(ids) > 0, ids, 0).astype(np.int32)
            cats = {int(k): str(v) for k, v in (lab.object_classes or {}).items()}
            fm = FrameMasks(ids, {}, cats)
            present = set(fm.object_ids)
            fm.categories = {k: v for k, v in cats.items() if k in present}
            if self.corruption.active:
                if cam.name not in self._corruptors:
                    self._corruptors[cam.name] = Corruptor(self.corruption, f"{self._seq_name}/{cam.name}")
                fm = self._corruptors[cam.name](t, fm)
            out[cam.name] = fm
        return out

    def fingerprint(self) -> dict:
        return {"name": self.name, "corruption": self.corruption.to_dict()}


# ------------------------------------------------------------------------------------------------ files
def _parse_mask_file(d, path: str, shapes: Dict[str, Tuple[int, int]]) -> Dict[str, FrameMasks]:
    per_cam: Dict[str, List[Tuple[int, np.ndarray, float]]] = {}
    cats: Dict[str, Dict[int, str]] = {}

    def add(cam, oid, rle, score, cat):
        if cam not in shapes:
            return
        m = decode_mask(rle, shapes[cam], f"{path}: {cam} object {oid}")
        per_cam.setdefault(cam, []).append((int(oid), m, float(score)))
        if cat:
            cats.setdefault(cam, {})[int(oid)] = str(cat)

    if isinstance(d, dict) and isinstance(d.get("sensors"), dict):
        for cam, s in d["sensors"].items():
            for o in (s or {}).get("objects", []) if isinstance(s, dict) else []:
                if isinstance(o, dict) and "image_mask" in o and int(o.get("object_id", 0)) > 0:
                    add(cam, o["object_id"], o["image_mask"], o.get("score", 1.0), o.get("semantic"))
    elif isinstance(d, list):
        for o in d:
            if not isinstance(o, dict) or "segmentation" not in o or "camera" not in o:
                raise DataError(f"{path}: list entries need 'camera' and 'segmentation'")
            oid = o.get("object_id", o.get("track_id"))
            if oid is None or int(oid) <= 0:
                raise DataError(f"{path}: list entries need a positive 'object_id' or 'track_id'")
            add(str(o["camera"]), oid, o["segmentation"], o.get("score", 1.0), o.get("category"))
    else:
        raise DataError(f"{path}: not a SAM4D label dict nor a list of masks")
    return {cam: FrameMasks.from_masks(ms, shapes[cam], cats.get(cam)) for cam, ms in per_cam.items()}


class FileMaskSource(MaskletSource):
    """Masklets from per-frame JSON files with COCO RLE masks (see the module docstring for the format)."""

    name = "files"

    def __init__(self, mask_dir, missing_ok: bool = True):
        self.mask_dir = Path(mask_dir)
        self.missing_ok = missing_ok
        self._dir = self.mask_dir

    def prepare(self, seq, cameras: Sequence[str], progress: bool = False) -> None:
        sub = self.mask_dir / str(getattr(seq, "seq_name", ""))
        self._dir = sub if sub.is_dir() else self.mask_dir
        if not self._dir.is_dir():
            raise DataError(f"{self._dir}: mask directory does not exist")

    def masks(self, seq, t: int, frame: Frame) -> Dict[str, FrameMasks]:
        cands = [self._dir / f"{_frame_ts_us(frame)}.json", self._dir / f"{t:06d}.json"]
        path = next((p for p in cands if p.exists()), None)
        if path is None:
            if self.missing_ok:
                return {}
            raise DataError(f"no mask file for frame {t} (looked for {[str(c) for c in cands]})")
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: corrupt mask file: {e}") from None
        return _parse_mask_file(d, str(path), {c.name: c.image.shape[:2] for c in frame.cameras})

    def fingerprint(self) -> dict:
        return {"name": self.name, "mask_dir": str(self.mask_dir)}


def write_mask_files(out_dir, seq, source: MaskletSource, seq_name: Optional[str] = None,
                     progress: bool = False) -> Path:
    """Export the masklets of ``source`` on ``seq`` as mask files readable by :class:`FileMaskSource`."""
    seq_name = seq_name or str(getattr(seq, "seq_name", "seq"))
    d = Path(out_dir) / seq_name
    first = seq.frame(0)
    source.prepare(seq, [c.name for c in first.cameras], progress)
    for t in range(len(seq)):
        frame = first if t == 0 else seq.frame(t)
        sensors = {}
        for cam, fm in source.masks(seq, t, frame).items():
            objs = [{"object_id": k, "score": float(fm.scores.get(k, 1.0)), "image_mask": encode_mask(fm.ids == k),
                     **({"semantic": fm.categories[k]} if k in fm.categories else {})} for k in fm.object_ids]
            sensors[cam] = {"objects": objs}
        atomic_write_bytes(d / f"{_frame_ts_us(frame)}.json", json.dumps({"sensors": sensors}).encode())
    return d


# ------------------------------------------------------------------------------------------------ SAM2
class Sam2VideoSource(MaskletSource):
    """Masklets from the ``sam2`` package's video predictor, one video per camera, prompted from a prompts file.

    Args:
        model_cfg: sam2 hydra config name (e.g. ``'configs/sam2.1/sam2.1_hiera_t.yaml'``).
        checkpoint: SAM2 weights (``None`` = random init, for tests only).
        prompts: path of a prompts file (see :func:`~sam4d_model.engine.masklets.load_prompts`) or its parsed dict.
        device: torch device. score_threshold: mask logit threshold. predictor: an already built predictor.

    Frames are propagated forward from the first prompted frame and backward from it, so objects prompted on any
    keyframe get masks over the whole drive.
    """

    name = "sam2"

    def __init__(self, model_cfg: str = "configs/sam2.1/sam2.1_hiera_t.yaml", checkpoint: Optional[str] = None,
                 prompts=None, device: str = "cpu", score_threshold: float = 0.0, predictor=None):
        self.model_cfg, self.checkpoint, self.device = model_cfg, checkpoint, device
        self.prompts = load_prompts(prompts) if isinstance(prompts, (str, Path)) else (prompts or {})
        self.score_threshold = score_threshold
        self._predictor = predictor
        self._results: Dict[str, Dict[int, list]] = {}
        self._cats: Dict[str, Dict[int, str]] = {}

    def _build(self):
        if self._predictor is None:
            try:
                from sam2.build_sam import build_sam2_video_predictor
            except ImportError as e:  # pragma: no cover - optional dependency
                raise ImportError("the sam2 masklet source needs the 'sam2' package (pip install sam2)") from e
            self._predictor = build_sam2_video_predictor(self.model_cfg, self.checkpoint, device=self.device)
        return self._predictor

    def prepare(self, seq, cameras: Sequence[str], progress: bool = False) -> None:
        import cv2
        import torch

        pred = self._build()
        self._results, self._cats = {}, {}
        for cam in cameras:
            per = self.prompts.get(cam)
            if not per:
                continue
            self._cats[cam] = {int(p["obj_id"]): str(p["category"]) for ps in per.values() for p in ps
                               if "category" in p}
            res: Dict[int, list] = {}
            with tempfile.TemporaryDirectory(prefix="sam4d_sam2_") as tmp:
                for t in range(len(seq)):
                    img = seq.frame(t, [cam]).cameras[0].image
                    cv2.imwrite(str(Path(tmp) / f"{t:06d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
                with torch.inference_mode():
                    state = pred.init_state(video_path=tmp)
                    for fi, plist in sorted(per.items()):
                        for p in plist:
                            kw = {}
                            if "box" in p:
                                kw["box"] = np.asarray(p["box"], np.float32)
                            if "points" in p:
                                kw["points"] = np.asarray(p["points"], np.float32)
                                kw["labels"] = np.asarray(p.get("labels", [1] * len(p["points"])), np.int32)
                            pred.add_new_points_or_box(state, frame_idx=int(fi), obj_id=int(p["obj_id"]), **kw)
                    first = min(per)
                    for reverse in (False, True):
                        for fi, obj_ids, logits in pred.propagate_in_video(state, start_frame_idx=first,
                                                                           reverse=reverse):
                            lg = logits[:, 0].float().cpu().numpy()
                            res[int(fi)] = [(int(o), lg[j] > self.score_threshold, float(lg[j].max()))
                                            for j, o in enumerate(obj_ids)]
            self._results[cam] = res

    def masks(self, seq, t: int, frame: Frame) -> Dict[str, FrameMasks]:
        out = {}
        for cam in frame.cameras:
            r = self._results.get(cam.name, {}).get(t)
            if r:
                out[cam.name] = FrameMasks.from_masks([x for x in r if x[1].any()], cam.image.shape[:2],
                                                      self._cats.get(cam.name))
        return out

    def fingerprint(self) -> dict:
        return {"name": self.name, "model_cfg": self.model_cfg, "checkpoint": str(self.checkpoint),
                "num_prompts": sum(len(v) for per in self.prompts.values() for v in per.values())}


# ------------------------------------------------------------------------------------------------ SAM4D
class Sam4dSource(MaskletSource):
    """Masklets from our SAM4D predictor (:class:`~sam4d_model.predictor.SAM4DPredictor`), image branch only.

    Prompts come from a prompts file (same format as :class:`Sam2VideoSource`); each camera is processed as its own
    clip (the predictor also receives the LiDAR, but only its image masks are used here: the 3D stages of the
    engine build the LiDAR labels).
    """

    name = "sam4d"

    def __init__(self, predictor, prompts=None):
        self.predictor = predictor
        self.prompts = load_prompts(prompts) if isinstance(prompts, (str, Path)) else (prompts or {})
        self._results: Dict[str, Dict[int, list]] = {}

    def prepare(self, seq, cameras: Sequence[str], progress: bool = False) -> None:
        self._results = {}
        for cam in cameras:
            per = self.prompts.get(cam)
            if not per:
                continue
            frames = [seq.frame(t, [cam]) for t in range(len(seq))]
            state = self.predictor.init_state(frames)
            for fi, plist in sorted(per.items()):
                for p in plist:
                    kw = {}
                    if "box" in p:
                        kw["image_box"] = np.asarray(p["box"], np.float32)
                    if "points" in p:
                        kw["image_points"] = np.asarray(p["points"], np.float32)
                        kw["image_labels"] = np.asarray(p.get("labels", [1] * len(p["points"])), np.int64)
                    self.predictor.add_prompts(state, int(fi), int(p["obj_id"]), camera=0, return_result=False, **kw)
            res: Dict[int, list] = {}
            for reverse in (False, True):
                for fi, r in self.predictor.propagate(state, start_frame_idx=min(per), reverse=reverse):
                    masks = r.image_masks[0] if len(r.image_masks) else np.zeros((0, 1, 1), bool)
                    scores = np.asarray(r.object_scores, np.float32)
                    res[int(fi)] = [(int(o), np.asarray(masks[j], bool), float(scores[j]) if j < len(scores) else 1.0)
                                    for j, o in enumerate(r.obj_ids)]
            self._results[cam] = res

    def masks(self, seq, t: int, frame: Frame) -> Dict[str, FrameMasks]:
        out = {}
        for cam in frame.cameras:
            r = self._results.get(cam.name, {}).get(t)
            if r:
                out[cam.name] = FrameMasks.from_masks([x for x in r if x[1].any()], cam.image.shape[:2])
        return out

    def fingerprint(self) -> dict:
        return {"name": self.name, "num_prompts": sum(len(v) for per in self.prompts.values() for v in per.values())}
