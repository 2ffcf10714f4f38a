# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Streaming SAM4D tracker: one ``step(frame)`` per synchronised camera(s) + LiDAR frame.

* Prompts (clicks, boxes, masks in either modality) can be added at any time for any object id with
  :meth:`StreamingTracker.add_prompt`; they are applied at the next :meth:`StreamingTracker.step`.
* Memory is bounded per object: the ``num_past_frames`` most recent non-prompted memories and at most
  ``max_prompted_frames`` prompted ones (the first prompted frame and the most recent others are kept).
* Points: rows with non-finite xyz (or beyond the configured range) are filtered (see
  :mod:`sam4d_model.geometry`); returned per-point masks have the original length with ``False`` there.
* A frame without objects runs no network at all and stores nothing.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .data.geometry import project_to_image
from .modeling.sam4d import NO_OBJ_SCORE, SAM4D, FrameFeatures, MemoryEntry, ObjectPrompt
from .types import Frame


@dataclass
class TrackResult:
    """Result of one step for ``O`` tracked objects and a cloud of ``N`` points."""

    obj_ids: List[int] = field(default_factory=list)
    point_masks: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))  # (O, N) bool
    point_scores: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (O, N) probabilities
    image_masks: List[np.ndarray] = field(default_factory=list)  # per camera (O, H, W) bool
    #: per camera (O, 4h, 4w) float32: the selected low-res image mask logits (absent objects: -1024)
    image_logits: List[np.ndarray] = field(default_factory=list)
    #: (O, N) float32 per-point mask logits (absent objects and filtered rows: -1024)
    point_logits: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    object_scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))  # (O,) sigmoid
    iou_scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))  # (O,)
    timings: Dict[str, float] = field(default_factory=dict)
    frame_index: int = 0


@dataclass
class _PendingPrompt:
    camera: Union[int, str] = 0
    image_points: List[np.ndarray] = field(default_factory=list)
    image_labels: List[np.ndarray] = field(default_factory=list)
    image_box: Optional[np.ndarray] = None
    image_mask: Optional[np.ndarray] = None
    lidar_points: List[np.ndarray] = field(default_factory=list)
    lidar_labels: List[np.ndarray] = field(default_factory=list)
    lidar_box: Optional[np.ndarray] = None
    lidar_mask: Optional[np.ndarray] = None
    image_logits: Optional[np.ndarray] = None
    lidar_logits: Optional[np.ndarray] = None


class StreamingTracker:
    """Online multi-object SAM4D tracker with bounded memory (see module docstring)."""

    #: prompts per object that :meth:`undo_last_prompt` can revert, newest first
    UNDO_DEPTH = 8

    def __init__(self, model: SAM4D, device: Union[str, torch.device] = "cpu", max_objects: int = 16,
                 max_prompted_frames: int = 4, num_past_frames: int = 6, use_ego_motion: bool = True,
                 precision: Optional[str] = None, compile_image_encoder: bool = False,
                 lidar_refine: str = "none", image_from_lidar: bool = False, geometric_params=None,
                 num_frames: Optional[int] = None):
        """Wrap ``model``.

        ``num_frames``: length of the clip when it is known in advance (offline use), else ``None`` (a stream).

        ``precision``: ``None`` (fp32 on CPU, bf16 autocast on CUDA when supported), ``'fp32'``, ``'bf16'``,
        ``'fp16'`` (autocast for transformer parts; the sparse backbone always runs fp32).

        Geometric priors (post-processing of the model's outputs, off by default; :mod:`sam4d_model.geometric`):
        ``lidar_refine='components'`` drops ground points from each LiDAR mask and completes it to the connected
        non-ground components it covers, always keeping the clicked point's component on a prompted frame and, on
        the frames after, the component at the previous mask's centroid moved by ego motion (no point there: the
        object is reported absent on that frame);
        ``image_from_lidar`` replaces each image mask by the hull of the LiDAR mask's camera-visible projected
        points (the cross-modal path, for models whose image branch is weaker than their LiDAR branch).
        ``geometric_params``: :class:`~sam4d_model.geometric.GeometricParams` of both.
        A LiDAR-only model (``use_cameras: false``) always gets ``image_from_lidar``, and its image prompts are carried
        to the LiDAR (:meth:`_image_prompt_to_lidar`).
        """
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        if precision is None:
            precision = "bf16" if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
        dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
        if precision not in dtypes:
            raise ValueError(f"precision must be one of {sorted(dtypes)}")
        self.model.autocast_dtype = dtypes[precision] if self.device.type == "cuda" else None
        if compile_image_encoder:
            self.model.image_encoder.encoder = torch.compile(self.model.image_encoder.encoder, dynamic=False)
        self.max_objects = int(max_objects)
        self.max_prompted_frames = max(1, int(max_prompted_frames))
        self.num_past_frames = max(0, min(int(num_past_frames), self.model.num_maskmem - 1))
        self.use_ego_motion = bool(use_ego_motion)
        if lidar_refine not in ("none", "components"):
            raise ValueError(f"lidar_refine must be 'none' or 'components', got {lidar_refine!r}")
        self.lidar_refine = lidar_refine
        # a LiDAR-only model has no image masks of its own: they always come from its LiDAR masks
        self.image_from_lidar = bool(image_from_lidar) or not self.model.cfg.use_cameras
        if geometric_params is None:
            from .geometric import GeometricParams

            geometric_params = GeometricParams()
        self.geometric_params = geometric_params
        self._memories: Dict[int, List[MemoryEntry]] = {}
        self._pending: Dict[int, _PendingPrompt] = {}
        self._seed_world: Dict[int, np.ndarray] = {}  # components prior: last mask centroid (world) per object
        #: components prior, velocity seeds (``seed_motion``): (time of the centroid, world velocity) per object
        self._seed_motion: Dict[int, Tuple[float, np.ndarray]] = {}
        self._last_extent: Dict[int, float] = {}  # components prior: xy extent (m) of the last refined mask
        #: components prior with ``merge_shape``: the last refined mask's points (world, subsampled) per object
        self._shape_world: Dict[int, np.ndarray] = {}
        self._t = 0
        self.num_frames = num_frames
        #: per object, its state before each applied prompt (newest last): (memories or None if the prompt created
        #: the object, components-prior seed or None); bounded, for :meth:`undo_last_prompt`
        self._undo: Dict[int, List[Tuple[Optional[List[MemoryEntry]], Optional[np.ndarray]]]] = {}

    # ------------------------------------------------------------------------------------------------ state
    @property
    def object_ids(self) -> List[int]:
        """Ids of the tracked objects (including those whose first prompt is pending)."""
        return sorted(set(self._memories) | set(self._pending))

    @property
    def num_stored_memories(self) -> int:
        """Number of stored per-object per-frame memory entries."""
        return sum(len(v) for v in self._memories.values())

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the stored memory tensors."""
        return sum(e.nbytes() for v in self._memories.values() for e in v)

    def reset(self) -> None:
        """Forget all objects, memories and pending prompts."""
        self._memories.clear()
        self._pending.clear()
        self._seed_world.clear()
        self._seed_motion.clear()
        self._last_extent.clear()
        self._shape_world.clear()
        self._undo.clear()
        self._t = 0

    def rebase_world(self, new_from_old: np.ndarray) -> None:
        """Re-express everything stored in world coordinates in another world frame: ``p_new = new_from_old @ p_old``.

        For a caller whose frames had no pose at first (``lidar2world`` identity: the world was the LiDAR frame) and
        that now has one: without this, the memories' poses and the carried seeds of those frames are read in the
        wrong world and ego-motion compensation moves them by the whole first pose.
        """
        t = np.asarray(new_from_old, np.float64).reshape(4, 4)
        moved: Dict[int, torch.Tensor] = {}  # entries of one frame share a pose tensor: keep them sharing one
        kept = [ents for stack in self._undo.values() for ents, _ in stack if ents is not None]
        done = set()
        for ents in list(self._memories.values()) + kept:
            for e in ents:
                if id(e) in done:
                    continue
                done.add(id(e))
                if id(e.pose) not in moved:
                    moved[id(e.pose)] = torch.as_tensor(t, dtype=e.pose.dtype, device=e.pose.device) @ e.pose
                e.pose = moved[id(e.pose)]
        for oid, s in self._seed_world.items():
            self._seed_world[oid] = t[:3, :3] @ s + t[:3, 3]
        for oid, (ts, v) in self._seed_motion.items():
            self._seed_motion[oid] = (ts, t[:3, :3] @ v)
        for oid, pts in self._shape_world.items():
            self._shape_world[oid] = pts @ t[:3, :3].T + t[:3, 3]
        for stack in self._undo.values():
            stack[:] = [(ents, None if s is None else t[:3, :3] @ s + t[:3, 3]) for ents, s in stack]

    def remove_object(self, obj_id: int) -> bool:
        """Stop tracking ``obj_id``; returns whether it existed."""
        found = obj_id in self._memories or obj_id in self._pending
        self._memories.pop(obj_id, None)
        self._pending.pop(obj_id, None)
        self._seed_world.pop(obj_id, None)
        self._seed_motion.pop(obj_id, None)
        self._last_extent.pop(obj_id, None)
        self._shape_world.pop(obj_id, None)
        self._undo.pop(obj_id, None)
        return found

    def undo_last_prompt(self, obj_id: int) -> str:
        """Revert ``obj_id`` to its state before its last prompt.

        A prompt not applied yet is dropped; an applied one is undone by restoring the object's memories (and the
        components prior's seed) as they were before the frame it was applied on. Returns ``"reverted"``,
        ``"removed"`` (that prompt created the object, which is gone now) or ``"nothing"`` (no prompt to undo:
        unknown object, or older than :attr:`UNDO_DEPTH` prompts).
        """
        obj_id = int(obj_id)
        if obj_id in self._pending:
            del self._pending[obj_id]
            if obj_id not in self._memories:
                self._undo.pop(obj_id, None)
                return "removed"
            return "reverted"
        stack = self._undo.get(obj_id)
        if not stack:
            return "nothing"
        mems, seed = stack.pop()
        if mems is None:
            self.remove_object(obj_id)
            return "removed"
        self._memories[obj_id] = mems
        for state in (self._shape_world, self._last_extent, self._seed_motion):  # rebuilt from the next frames
            state.pop(obj_id, None)
        if seed is None:
            self._seed_world.pop(obj_id, None)
        else:
            self._seed_world[obj_id] = seed
        return "reverted"

    def add_prompt(self, obj_id: int, camera: Union[int, str] = 0, image_points=None, image_labels=None,
                   image_box=None, lidar_points=None, lidar_labels=None, lidar_box=None, image_mask=None,
                   lidar_mask=None, image_logits=None, lidar_logits=None) -> None:
        """Queue prompts for ``obj_id`` (applied at the next :meth:`step`; several calls accumulate).

        Image coordinates are pixels ``(x, y)`` of the ORIGINAL image of camera ``camera`` (index or name);
        ``image_box`` is ``(x0, y0, x1, y1)``; ``image_mask`` ``(H, W)``. LiDAR points are xyz in the LiDAR frame
        of the frame the prompt is applied to; ``lidar_box`` is ``(2, 3)`` min/max corners; ``lidar_mask`` is
        ``(N,)`` over the ORIGINAL rows of that frame's cloud. Labels: 1 positive, 0 negative (default 1).
        ``image_logits`` ``(4h, 4w)`` / ``lidar_logits`` ``(N,)``: low-res logits of an earlier prediction of this
        object on the same frame (:attr:`TrackResult.image_logits` / :attr:`TrackResult.point_logits`), given to the
        decoders as dense mask prompts (clamped to +-32) in place of ``image_mask`` / ``lidar_mask``.
        """
        obj_id = int(obj_id)
        if obj_id not in self.object_ids and len(self.object_ids) >= self.max_objects:
            raise ValueError(f"cannot add object {obj_id}: max_objects={self.max_objects} reached")
        p = self._pending.setdefault(obj_id, _PendingPrompt(camera=camera))
        p.camera = camera
        if image_points is not None:
            pts = np.asarray(image_points, np.float64).reshape(-1, 2)
            lab = np.ones(len(pts), np.int64) if image_labels is None else np.asarray(image_labels).reshape(-1)
            if len(lab) != len(pts):
                raise ValueError("image_labels must have one label per image point")
            p.image_points.append(pts)
            p.image_labels.append(lab.astype(np.int64))
        if image_box is not None:
            p.image_box = np.asarray(image_box, np.float64).reshape(4)
        if image_mask is not None:
            p.image_mask = np.asarray(image_mask)
        if lidar_points is not None:
            pts = np.asarray(lidar_points, np.float64).reshape(-1, 3)
            lab = np.ones(len(pts), np.int64) if lidar_labels is None else np.asarray(lidar_labels).reshape(-1)
            if len(lab) != len(pts):
                raise ValueError("lidar_labels must have one label per LiDAR point")
            p.lidar_points.append(pts)
            p.lidar_labels.append(lab.astype(np.int64))
        if lidar_box is not None:
            b = np.asarray(lidar_box, np.float64).reshape(2, 3)
            p.lidar_box = np.stack([b.min(0), b.max(0)], 0)
        if lidar_mask is not None:
            p.lidar_mask = np.asarray(lidar_mask).reshape(-1)
        if image_logits is not None:
            p.image_logits = np.clip(np.asarray(image_logits, np.float32), -32.0, 32.0)
        if lidar_logits is not None:
            p.lidar_logits = np.clip(np.asarray(lidar_logits, np.float32).reshape(-1), -32.0, 32.0)

    # ------------------------------------------------------------------------------------------------ prompts
    def _camera_index(self, frame: Frame, camera: Union[int, str]) -> Optional[int]:
        if isinstance(camera, str):
            names = [c.name for c in frame.cameras]
            return names.index(camera) if camera in names else None
        return int(camera) if 0 <= int(camera) < len(frame.cameras) else None

    def _to_object_prompt(self, p: _PendingPrompt, frame: Frame, feats: FrameFeatures) -> ObjectPrompt:
        dev = self.model.device
        op = ObjectPrompt()
        has_img = (bool(p.image_points) or p.image_box is not None or p.image_mask is not None
                   or p.image_logits is not None)
        ci = self._camera_index(frame, p.camera)
        if has_img and ci is None:
            warnings.warn(f"image prompt for camera {p.camera!r} ignored: the frame has no such camera", stacklevel=3)
        if has_img and ci is not None and not self.model.cfg.use_cameras:
            p, has_img = self._image_prompt_to_lidar(p, frame.points, frame.cameras[ci]), False
        if has_img and ci is not None:
            cam = feats.cams[ci]
            aug = cam.img_aug.cpu().numpy()
            uv = np.concatenate(p.image_points, 0) if p.image_points else np.zeros((0, 2))
            lab = np.concatenate(p.image_labels, 0) if p.image_labels else np.zeros((0,), np.int64)
            if p.image_box is not None:
                uv = np.concatenate([uv, p.image_box.reshape(2, 2)], 0)
                lab = np.concatenate([lab, np.array([2, 3])], 0)
            if len(uv):
                uvm = uv * np.array([aug[0, 0], aug[1, 1]]) + aug[:2, 3]
                op.img_points[ci] = (torch.as_tensor(uvm, dtype=torch.float32, device=dev),
                                     torch.as_tensor(lab, dtype=torch.long, device=dev))
            if p.image_logits is not None:
                op.img_masks[ci] = torch.as_tensor(p.image_logits, device=dev)
            elif p.image_mask is not None:
                h, w = feats.img_hw
                m = torch.as_tensor(p.image_mask.astype(np.float32), device=dev)[None, None]
                if self.model.cfg.decoder.mask_input_as_output:
                    # the official predictor: the mask resized to the model input (antialiased), binarised at 0.5
                    s = self.model.image_size
                    m = F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
                    op.img_masks[ci] = (m[0, 0] >= 0.5).float()
                else:
                    op.img_masks[ci] = F.interpolate(m, size=(4 * h, 4 * w), mode="bilinear",
                                                     align_corners=False)[0, 0]
        if feats.has_lidar:
            xyz = np.concatenate(p.lidar_points, 0) if p.lidar_points else np.zeros((0, 3))
            lab = np.concatenate(p.lidar_labels, 0) if p.lidar_labels else np.zeros((0,), np.int64)
            if p.lidar_box is not None:
                xyz = np.concatenate([xyz, p.lidar_box], 0)
                lab = np.concatenate([lab, np.array([2, 3])], 0)
            if len(xyz):
                op.pts_points = torch.as_tensor(xyz, dtype=torch.float32, device=dev)
                op.pts_labels = torch.as_tensor(lab, dtype=torch.long, device=dev)
            for name, m in (("lidar_logits", p.lidar_logits), ("lidar_mask", p.lidar_mask)):
                if m is None:
                    continue
                if len(m) != feats.num_points_in:
                    raise ValueError(f"{name} has {len(m)} entries, the cloud {feats.num_points_in}")
                valid = feats.pyr.valid.cpu().numpy()
                op.pts_mask = torch.as_tensor(m[valid].astype(np.float32), device=dev)
                break
        return op

    def _image_prompt_to_lidar(self, p: _PendingPrompt, points: np.ndarray, cam) -> _PendingPrompt:
        """A LiDAR-only model's view of an image prompt: each click becomes a click (same label) on the non-ground
        LiDAR point under it (:func:`~sam4d_model.geometric.pixel_seed`; none under it: dropped with a warning), a
        box a positive click at its centre, a mask the non-ground points projected into it.
        """
        from . import geometric as geo

        gp = self.geometric_params
        xyz, finite = geo.finite_xyz(points)
        ng = finite & ~geo.ground_mask(xyz, gp) if len(xyz) else finite
        q = _PendingPrompt(camera=p.camera, lidar_points=list(p.lidar_points), lidar_labels=list(p.lidar_labels),
                           lidar_box=p.lidar_box, lidar_mask=p.lidar_mask, lidar_logits=p.lidar_logits)
        uv = [np.concatenate(p.image_points, 0)] if p.image_points else []
        lab = [np.concatenate(p.image_labels, 0)] if p.image_labels else []
        if p.image_box is not None:
            uv.append(p.image_box.reshape(2, 2).mean(0, keepdims=True))
            lab.append(np.ones(1, np.int64))
        pts, labs, missed = [], [], 0
        for u, lb in zip(np.concatenate(uv, 0) if uv else [], np.concatenate(lab, 0) if lab else []):
            s = geo.pixel_seed(xyz, ng, u, cam.intrinsics, cam.camera2lidar, cam.width, cam.height, gp.pixel_radius,
                               gp.pixel_band)
            if s is None:
                missed += 1
                continue
            pts.append(xyz[s])
            labs.append(int(lb))
        if missed:
            warnings.warn(f"{missed} image click(s) ignored: no LiDAR point under them (LiDAR-only model)",
                          stacklevel=4)
        if pts:
            q.lidar_points.append(np.asarray(pts, np.float64))
            q.lidar_labels.append(np.asarray(labs, np.int64))
        if p.image_mask is not None and len(xyz):
            uvp, _, ok = project_to_image(xyz, cam.intrinsics, cam.camera2lidar, cam.width, cam.height)
            inside = np.zeros(len(xyz), bool)
            iu = np.clip(np.round(uvp[ok]).astype(np.int64), 0, [cam.width - 1, cam.height - 1])
            inside[np.flatnonzero(ok)] = np.asarray(p.image_mask, bool)[iu[:, 1], iu[:, 0]]
            q.lidar_mask = (inside & ng) | (False if q.lidar_mask is None else q.lidar_mask)
        return q

    # --------------------------------------------------------------------------------------------------- step
    def _prune(self, obj_id: int) -> None:
        ents = self._memories[obj_id]
        prompted = sorted([e for e in ents if e.is_prompted], key=lambda e: e.frame_idx)
        if len(prompted) > self.max_prompted_frames:
            keep_n = self.max_prompted_frames - 1
            prompted = prompted[:1] + (prompted[-keep_n:] if keep_n > 0 else [])
        past = sorted([e for e in ents if not e.is_prompted], key=lambda e: e.frame_idx)
        keep = self.num_past_frames
        if self.model.cfg.memory.memory_selection == "distance":
            keep = max(keep, self.model.max_obj_ptrs - 1)  # object pointers reach further back than memories
        past = past[-keep:] if keep > 0 else []
        self._memories[obj_id] = prompted + past

    def step(self, frame: Frame) -> TrackResult:
        """Process one frame: apply pending prompts, track all objects, update the memory."""
        t0 = time.perf_counter()
        idx = self._t
        self._t += 1
        n = int(np.asarray(frame.points).shape[0]) if np.asarray(frame.points).ndim >= 1 else 0
        ids = self.object_ids
        res = TrackResult(frame_index=idx)
        if not ids:
            res.point_masks = np.zeros((0, n), bool)
            res.point_scores = np.zeros((0, n), np.float32)
            res.image_masks = [np.zeros((0, c.height, c.width), bool) for c in frame.cameras]
            res.timings = {"total": time.perf_counter() - t0}
            return res
        model = self.model
        timings: Dict[str, float] = {}
        with torch.inference_mode():
            feats = model.encode_frame(frame, frame_idx=idx, timings=timings)
            prompts = []
            clicked = {}
            for oid in ids:
                p = self._pending.get(oid)
                prompts.append(self._to_object_prompt(p, frame, feats) if p is not None else None)
                if p is not None and (p.lidar_points or p.image_points):
                    clicked[oid] = p
            prior = self._prior_inputs(frame) if self.lidar_refine != "none" or self.image_from_lidar else None
            carried: Dict[int, Tuple[Optional[int], np.ndarray]] = {}
            if self.lidar_refine == "components":
                for j, oid in enumerate(ids):
                    if oid not in clicked and oid in self._seed_world:
                        carried[oid] = self._carried_seed(oid, frame, prior)
                        s = carried[oid][0]
                        if s is not None and prompts[j] is None and self.geometric_params.reprompt_seed:
                            seed_click = _PendingPrompt(lidar_points=[prior[0][s][None]],
                                                        lidar_labels=[np.ones(1, np.int64)])
                            prompts[j] = self._to_object_prompt(seed_click, frame, feats)
            reprompted = {j for j, oid in enumerate(ids) if prompts[j] is not None and oid not in self._pending}
            mems = [self._memories.get(oid, []) for oid in ids]
            out = model(feats, mems, prompts, store_memory=True, num_past=self.num_past_frames,
                        timings=timings, num_frames=self.num_frames, use_ego_motion=self.use_ego_motion)
            for j in reprompted:  # a seed click is the tracker's, not the user's: kept as a tracked frame
                out.new_memory[j].is_prompted = False
            t_post = time.perf_counter()
            for oid in self._pending:
                stack = self._undo.setdefault(oid, [])
                old = self._memories.get(oid)
                seed = self._seed_world.get(oid)
                stack.append((None if old is None else list(old), None if seed is None else seed.copy()))
                del stack[: -self.UNDO_DEPTH]
            for oid, ent in zip(ids, out.new_memory):
                self._memories.setdefault(oid, []).append(ent)
                self._prune(oid)
            self._pending.clear()
            res = self._make_result(ids, frame, feats, out, n)
            if prior is not None:
                self._apply_priors(res, frame, clicked, prior, carried)
            timings["postprocess"] = time.perf_counter() - t_post
        res.frame_index = idx
        timings["total"] = time.perf_counter() - t0
        res.timings = timings
        return res

    #: points of an object's last mask kept for ``merge_shape`` (evenly subsampled)
    SHAPE_POINTS = 2000
    #: fastest object speed the constant-velocity seed believes (m/s), and the smoothing of its velocity estimate
    MAX_OBJECT_SPEED = 25.0
    VELOCITY_SMOOTHING = 0.5
    #: s: longest gap between two centroids that gives a velocity, and longest extrapolation of one (a CPU node
    #: skips frames: 1.2 s gaps were seen in the demo)
    VELOCITY_HORIZON = 2.0

    def _update_motion(self, oid: int, centroid: np.ndarray, t: float, prompted: bool) -> None:
        """Velocity of an object's centroid in the world (for the velocity seeds of ``seed_motion``); NaN until two
        centroids at most :attr:`VELOCITY_HORIZON` apart have been seen (no estimate: the velocity seed is not tried).
        """
        prev = self._seed_world.get(oid)
        unknown = np.full(3, np.nan)
        if prompted or prev is None or oid not in self._seed_motion:
            self._seed_motion[oid] = (t, unknown)
            return
        t_prev, v_prev = self._seed_motion[oid]
        dt = t - t_prev
        if not 0.0 < dt <= self.VELOCITY_HORIZON:
            self._seed_motion[oid] = (t, unknown)
            return
        v = (centroid - prev) / dt
        v[2] = 0.0  # along the ground
        speed = float(np.linalg.norm(v))
        if speed > self.MAX_OBJECT_SPEED:
            v *= self.MAX_OBJECT_SPEED / speed
        if np.isfinite(v_prev).all():
            v = self.VELOCITY_SMOOTHING * v + (1 - self.VELOCITY_SMOOTHING) * v_prev
        self._seed_motion[oid] = (t, v)  # the first estimate is taken whole

    @staticmethod
    def _report_absent(res: TrackResult, j: int) -> None:
        res.point_masks[j] = False
        res.point_scores[j] = 0.0
        res.object_scores[j] = 0.0

    def _click_seeds(self, p: _PendingPrompt, frame: Frame, xyz: np.ndarray, candidates: np.ndarray) -> List[int]:
        """Indices of the points a prompt's positive clicks land on (:func:`~sam4d_model.geometric.click_seeds`)."""
        from . import geometric as geo

        lidar = np.concatenate(p.lidar_points, 0)[np.concatenate(p.lidar_labels, 0) == 1] if p.lidar_points else []
        ci = self._camera_index(frame, p.camera) if p.image_points else None
        uv = np.concatenate(p.image_points, 0)[np.concatenate(p.image_labels, 0) == 1] if ci is not None else []
        return geo.click_seeds(xyz, candidates, lidar, uv, None if ci is None else frame.cameras[ci],
                               self.geometric_params)

    def _prior_inputs(self, frame: Frame) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(xyz, finite, ground_z, ground)`` of a frame for the geometric priors."""
        from . import geometric as geo

        xyz, finite = geo.finite_xyz(frame.points)
        ground_z = geo.frame_ground_height(xyz, finite, self.geometric_params)
        return xyz, finite, ground_z, xyz[:, 2] < ground_z + self.geometric_params.ground_margin

    def _carried_seed(self, oid: int, frame: Frame, prior) -> Tuple[Optional[int], np.ndarray]:
        """The point an object's last mask centroid (moved by ego motion, and by its own velocity as
        ``GeometricParams.seed_motion`` says) lands on in this frame, or None; and the world shift of the object's
        own motion that seed assumed (zero for the static seed; ``merge_shape`` moves the last mask by it).
        """
        from . import geometric as geo

        gp = self.geometric_params
        xyz, _, _, ground = prior
        pose = np.asarray(frame.lidar2world, np.float64) if self.use_ego_motion else np.eye(4)

        still = np.zeros(3)

        def static():
            return geo.carried_seed(xyz, ~ground, self._seed_world[oid], pose, gp), still

        def ahead():
            t_prev, vel = self._seed_motion.get(oid, (0.0, np.full(3, np.nan)))
            if not np.isfinite(vel).all():
                return None, still
            shift = vel * float(np.clip(frame.timestamp - t_prev, 0.0, self.VELOCITY_HORIZON))
            s = geo.carried_seed(xyz, ~ground, self._seed_world[oid] + shift, pose, gp)
            if s is not None and gp.seed_motion == "static_then_velocity" and oid in self._last_extent:
                comp = geo.region_grow(xyz, ~ground, np.array([s]), gp.grow_radius, gp.max_extent)
                if geo.xy_extent(xyz[comp]) > self._last_extent[oid] + gp.shape_growth:
                    return None, still  # a structure the object's point merges into (a wall, a hedge)
            return s, shift

        if gp.seed_motion == "static":
            return static()
        first, then = (ahead, static) if gp.seed_motion == "constant_velocity" else (static, ahead)
        found = first()
        return then() if found[0] is None else found

    def _apply_priors(self, res: TrackResult, frame: Frame, clicked: Dict[int, "_PendingPrompt"], prior,
                      carried: Dict[int, Tuple[Optional[int], np.ndarray]]) -> None:
        """The geometric priors of the constructor (in place on ``res``); ``clicked``: this frame's prompts,
        ``prior``: :meth:`_prior_inputs`, ``carried``: :meth:`_carried_seed` of the objects that have one.
        """
        from . import geometric as geo

        gp = self.geometric_params
        xyz, finite, ground_z, ground = prior
        if len(xyz) == 0 or not res.obj_ids or not res.point_masks.size:
            return
        if self.lidar_refine == "components":
            pose = np.asarray(frame.lidar2world, np.float64) if self.use_ego_motion else np.eye(4)
            for j, oid in enumerate(res.obj_ids):
                if oid in clicked:
                    seeds = self._click_seeds(clicked[oid], frame, xyz, ~ground)
                elif oid in carried:  # the last mask's centroid, moved into this frame by ego motion
                    s = carried[oid][0]
                    if s is None:  # nothing where the object was: reported absent (the model's mask is not kept)
                        self._report_absent(res, j)
                        continue
                    seeds = [s]
                else:
                    seeds = []
                shape = None
                if gp.merge_shape and oid in carried and oid in self._shape_world:
                    inv = np.linalg.inv(pose)  # the last mask, moved as the seed was, into this frame
                    shape = (self._shape_world[oid] + carried[oid][1]) @ inv[:3, :3].T + inv[:3, 3]
                res.point_masks[j], core = geo.refine_lidar_mask(xyz, res.point_masks[j], gp,
                                                                 np.array(seeds, np.int64), ground=ground,
                                                                 with_core=True, shape=shape)
                if shape is not None and oid in self._last_extent and (
                        geo.xy_extent(xyz[res.point_masks[j]]) > self._last_extent[oid] + gp.shape_growth):
                    # merged into a structure (a wall, a hedge): keep only what lies where the object was
                    near = geo.within(xyz, shape, gp.shape_radius)
                    res.point_masks[j] &= near
                    core &= near
                    if not core.any():
                        self._report_absent(res, j)
                        continue
                pts = xyz[res.point_masks[j]]
                if len(pts):
                    self._last_extent[oid] = geo.xy_extent(pts)
                if gp.merge_shape and len(pts):
                    if len(pts) > self.SHAPE_POINTS:
                        pts = pts[np.linspace(0, len(pts) - 1, self.SHAPE_POINTS).astype(np.int64)]
                    self._shape_world[oid] = pts @ pose[:3, :3].T + pose[:3, 3]
                follow = core if gp.seed_from == "core" and core.any() else res.point_masks[j]
                if follow.any():
                    c = geo.mask_centroid_world(xyz, follow, pose)
                    if gp.seed_motion != "static":
                        self._update_motion(oid, c, float(frame.timestamp), oid in clicked)
                    self._seed_world[oid] = c
        if self.image_from_lidar:
            res.image_masks = geo.image_masks_from_lidar(xyz, res.point_masks & finite[None], frame.cameras,
                                                         ground_z, gp)

    def _make_result(self, ids: List[int], frame: Frame, feats: FrameFeatures, out, n: int) -> TrackResult:
        o = len(ids)
        res = TrackResult(obj_ids=list(ids))
        point_scores = np.zeros((o, n), np.float32)
        res.point_logits = np.full((o, n), NO_OBJ_SCORE, np.float32)
        obj_logits = []
        ious = []
        if out.pts_logits is not None:
            valid = feats.pyr.valid.cpu().numpy()
            point_scores[:, valid] = torch.sigmoid(out.pts_logits).float().cpu().numpy()
            res.point_logits[:, valid] = out.pts_logits.float().cpu().numpy()
            obj_logits.append(out.pts_obj)
            ious.append(out.pts_iou)
        res.point_scores = point_scores
        res.point_masks = point_scores > 0.5
        res.image_masks = []
        if out.img_logits is not None:
            res.image_logits = [out.img_logits[:, ci].float().cpu().numpy() for ci in range(len(feats.cams))]
            for ci, cam in enumerate(feats.cams):
                lo = out.img_logits[:, ci:ci + 1]
                if self.model.cfg.decoder.image_mask_upsampling == "via_input":
                    s = self.model.image_size
                    lo = F.interpolate(lo, size=(s, s), mode="bilinear", align_corners=False)
                hi = F.interpolate(lo, size=cam.orig_hw, mode="bilinear", align_corners=False)[:, 0]
                res.image_masks.append((hi > 0).cpu().numpy())
            obj_logits.append(out.img_obj.max(1).values)
            ious.append(out.img_iou.max(1).values)
        else:
            res.image_masks = [np.zeros((o, c.height, c.width), bool) for c in frame.cameras]
        if obj_logits:
            res.object_scores = torch.sigmoid(torch.stack(obj_logits, 0).max(0).values).float().cpu().numpy()
            res.iou_scores = ious[0].float().cpu().numpy()
        else:
            res.object_scores = np.zeros((o,), np.float32)
            res.iou_scores = np.zeros((o,), np.float32)
        return res
