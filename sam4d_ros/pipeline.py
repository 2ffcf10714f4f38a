# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The per-frame SAM4D pipeline shared by the live node and the offline bag processor (no DDS in here).

``Pipeline.process`` takes already decoded inputs (cloud message, RGB images, camera models, transforms),
applies the prompt commands that are due, runs ``StreamingTracker.step`` and returns a :class:`FrameResult`:
per-point labels/scores for the full input cloud and per-camera id maps. ``sam4d_ros.outputs`` turns a result
into ROS messages (only those somebody needs).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from sam4d_model.data.geometry import project_to_image
from sam4d_ros.health import ObjectEvent, TrackHealth
from sam4d_ros.image import CameraModel
from sam4d_ros.pointcloud import CloudArrays
from sam4d_ros.prompts import (
    CommandQueue,
    ObjectRegistry,
    PromptCommand,
    PromptLog,
    RemoveCommand,
    ResetCommand,
    UndoCommand,
    compensate_ego_motion,
)

EMBEDDED_CHECKPOINT = Path(__file__).resolve().parents[1] / "sam4d_model" / "weights" / "sam4d_tiny.safetensors"


def embedded_checkpoint() -> Path:
    """Path of the checkpoint shipped with ``sam4d_model`` (source tree or install space)."""
    try:
        import sam4d_model

        return Path(sam4d_model.__file__).resolve().parent / "weights" / "sam4d_tiny.safetensors"
    except ImportError:  # pragma: no cover
        return EMBEDDED_CHECKPOINT


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but torch sees no CUDA device (use device:=cpu or auto)")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be cpu, cuda[:N] or auto, not {device!r}")
    return device


def load_model(checkpoint: str, device: str, model_config: str = "", log: Callable[[str], None] = print):
    """Load the network. ``checkpoint``: ``""`` = embedded, a path, or ``random`` (random init; tests/dev only)."""
    import torch

    if checkpoint == "random":
        from sam4d_model.config import load_config
        from sam4d_model.modeling import build_sam4d

        name = model_config or "sam4d_tiny"
        log("!" * 100)
        log(f"!!! checkpoint:=random -> RANDOMLY INITIALISED {name}: masks are meaningless (tests/dev only) !!!")
        log("!" * 100)
        torch.manual_seed(0)
        model = build_sam4d(load_config(name))
    else:
        path = Path(checkpoint) if checkpoint else embedded_checkpoint()
        if not path.is_file():
            what = "the embedded checkpoint" if not checkpoint else "checkpoint"
            raise FileNotFoundError(
                f"{what} {path} does not exist. Pass checkpoint:=/path/to/sam4d.safetensors, or checkpoint:=random "
                f"for a randomly initialised model (tests/dev only).")
        from sam4d_model.checkpoint import load_checkpoint

        model, _cfg = load_checkpoint(str(path), device)
    return model.to(device).eval()


def build_tracker(model, device: str, params: dict):
    """The :class:`~sam4d_model.tracker.StreamingTracker` of the node parameters ``params`` (node and bag tools)."""
    from sam4d_model.tracker import StreamingTracker

    return StreamingTracker(model, device=device, max_objects=params["max_objects"],
                            max_prompted_frames=params["max_prompted_frames"],
                            num_past_frames=params["num_past_frames"], use_ego_motion=params["use_ego_motion"],
                            lidar_refine=params["lidar_refine"], image_from_lidar=params["image_from_lidar"])


@dataclass
class PipelineConfig:
    """Knobs of the per-frame processing (see config/sam4d.yaml)."""

    max_points: int = 300_000
    min_range: float = 0.0
    max_range: float = 0.0
    click_project_to_image: bool = True
    prompt_history: int = 20
    object_lost_frames: int = 3
    object_found_frames: int = 2

    @classmethod
    def from_params(cls, params: dict) -> "PipelineConfig":
        """The knobs of the node parameters ``params`` (node and bag tools)."""
        return cls(max_points=params["max_points"], min_range=params["min_range"], max_range=params["max_range"],
                   click_project_to_image=params["click_project_to_image"], prompt_history=params["prompt_history"],
                   object_lost_frames=params["object_lost_frames"], object_found_frames=params["object_found_frames"])


@dataclass
class ObjectStat:
    """Per-object summary of one frame (fields of sam4d_ros/ObjectMask)."""

    obj_id: int
    score: float
    iou_score: float
    num_points: int
    num_pixels: int
    centroid: np.ndarray
    extent: np.ndarray
    bbox_min: np.ndarray
    bbox_max: np.ndarray
    prompted: bool
    confidence: float = 0.0  # track confidence (sam4d_ros.health)
    lost: bool = False


@dataclass
class FrameResult:
    """Everything the outputs need for one processed frame."""

    labels: np.ndarray  # (N,) int32 per input point, -1 = none
    scores: np.ndarray  # (N,) float32
    id_maps: List[np.ndarray]  # per camera (H, W) int32, 0 = none
    objects: List[ObjectStat]
    cloud: CloudArrays
    images: List[np.ndarray]
    cameras: List[CameraModel]
    camera2lidar: List[np.ndarray]
    inference_time: float
    timings: Dict[str, float] = field(default_factory=dict)
    applied: List[str] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    events: List[ObjectEvent] = field(default_factory=list)  # track health changes seen on this frame


class FrameDropped(Exception):
    """A synchronised frame that cannot be processed; ``key`` names the counter, the message says why."""

    def __init__(self, key: str, why: str):
        super().__init__(why)
        self.key = key


@dataclass
class KeptFrame:
    """A processed frame kept for prompts that name a passed frame (``prompt_history``)."""

    stamp_ns: int
    xyz: np.ndarray  # (M, 3) float32: the points the model saw
    lidar2world: np.ndarray
    anchored: bool  # lidar2world is an odom pose (else the LiDAR frame as world, before odom was known)
    cameras: List[CameraModel]
    camera2lidar: List[np.ndarray]


@dataclass
class FrameInputs:
    """Decoded, calibrated inputs of one synchronised frame."""

    cloud: CloudArrays
    lidar_frame: str
    images: List[np.ndarray]
    cameras: List[CameraModel]
    camera2lidar: List[np.ndarray]
    lidar2odom: Optional[np.ndarray]
    warnings: List = field(default_factory=list)


def prepare_frame(sf, camera_models, rectifiers, tf, params: dict, last_pose: Optional[np.ndarray] = None
                  ) -> FrameInputs:
    """Decode a :class:`sam4d_ros.sync.SyncedFrame` and look up its transforms (node and offline processing).

    Raises :class:`FrameDropped` when the frame cannot be used (bad cloud/image, no CameraInfo, size mismatch,
    no camera transform). A missing odom transform only warns and falls back to ``last_pose``.
    """
    from sam4d_ros.image import ImageError, compressed_to_rgb, image_msg_to_rgb
    from sam4d_ros.pointcloud import PointCloudError, read_cloud
    from sam4d_ros.tf import TransformUnavailable

    ns = 1e9
    stamp = sf.cloud_stamp_ns
    cmsg = sf.cloud
    lidar_frame = cmsg.header.frame_id.lstrip("/")
    try:
        cloud = read_cloud(cmsg)
    except PointCloudError as exc:
        raise FrameDropped("bad_cloud", f"dropping cloud {stamp / ns:.6f}: {exc}") from None
    fi = FrameInputs(cloud, lidar_frame, [], [], [], None)
    for ci, (img_stamp, imsg) in enumerate(sf.images):
        name = params["cameras"][ci]
        cm = camera_models[ci]
        if cm is None:
            raise FrameDropped("no_camera_info", f"no valid CameraInfo yet for camera {name!r}: frame dropped")
        try:
            rgb = compressed_to_rgb(imsg) if hasattr(imsg, "format") else image_msg_to_rgb(imsg)
        except ImageError as exc:
            raise FrameDropped("bad_image", f"camera {name!r}: {exc}: frame dropped") from None
        why = cm.check_size(rgb.shape[1], rgb.shape[0])
        if why:
            raise FrameDropped("image_size_mismatch", f"camera {name!r}: {why}")
        if params["rectify"] and cm.has_distortion:
            rgb = rectifiers[ci](rgb, cm)
        cam_frame = imsg.header.frame_id.lstrip("/") or cm.frame_id
        try:
            T = tf.lookup(lidar_frame, cam_frame, img_stamp, params["tf_timeout"])
        except TransformUnavailable as exc:
            raise FrameDropped("tf_unavailable", f"no transform {cam_frame!r} -> {lidar_frame!r} at "
                                                 f"{img_stamp / ns:.6f}: {exc}: frame dropped") from None
        fi.images.append(rgb)
        fi.cameras.append(cm)
        fi.camera2lidar.append(T)
    if params["use_ego_motion"]:
        try:
            fi.lidar2odom = tf.lookup(params["odom_frame"], lidar_frame, stamp, params["tf_timeout"])
        except TransformUnavailable as exc:
            fi.lidar2odom = last_pose
            fi.warnings.append(("odom_unavailable", f"no transform {lidar_frame!r} -> {params['odom_frame']!r} at "
                                                    f"{stamp / ns:.6f} ({exc}); using the last known pose"))
    return fi


class Pipeline:
    """Applies prompt commands and runs the tracker on one frame at a time (call from one thread only)."""

    def __init__(self, tracker, registry: ObjectRegistry, commands: CommandQueue, config: PipelineConfig,
                 logger: Optional[logging.Logger] = None):
        self.tracker = tracker
        self.registry = registry
        self.commands = commands
        self.cfg = config
        self.log = logger or logging.getLogger("sam4d_ros")
        self.prompt_log = PromptLog()
        self.frame_index = 0
        self._unanchored_ns: Optional[int] = None  # newest frame processed before any pose was known
        self._history: deque = deque(maxlen=max(0, int(config.prompt_history)))  # KeptFrame
        self.health = TrackHealth(lost_after=config.object_lost_frames, found_after=config.object_found_frames)

    def _anchor_world(self, stamp_ns: int, lidar2odom: Optional[np.ndarray],
                      pose_at: Callable[[int], Optional[np.ndarray]]) -> np.ndarray:
        """The ``lidar2world`` of this frame; re-anchors the tracker when the first pose arrives.

        Frames before any pose (``lidar2odom`` None: odom not yet on TF when the replay or the car starts) run in the
        LiDAR frame as world. When a pose first comes, the tracker's stored world coordinates are moved into odom by
        the pose of the newest pose-less frame (looked up now: its transform may have arrived since; else this
        frame's pose, i.e. no motion in between), so memories and carried seeds stay where they were.
        """
        if lidar2odom is None:
            self._unanchored_ns = stamp_ns
            return np.eye(4)
        if self._unanchored_ns is not None:
            then = pose_at(self._unanchored_ns)
            t = np.asarray(then if then is not None else lidar2odom, np.float64)
            self.tracker.rebase_world(t)
            for h in self._history:
                h.lidar2world, h.anchored = t @ h.lidar2world, True
            self.log.info(f"odom available from {stamp_ns / 1e9:.6f}: moved the tracked objects' world coordinates "
                          f"into odom ({'pose of' if then is not None else 'no pose at'} the last pose-less frame "
                          f"{self._unanchored_ns / 1e9:.6f})")
            self._unanchored_ns = None
        return lidar2odom

    # ------------------------------------------------------------------ prompts
    def _apply(self, cmds, stamp_ns: int, lidar2odom: Optional[np.ndarray], cameras: Sequence[CameraModel],
               cam2lidar: Sequence[np.ndarray], pose_at: Callable[[int], Optional[np.ndarray]],
               res: FrameResult, due_tolerance_ns: int) -> set:
        prompted = set()
        for c in cmds:
            try:
                if isinstance(c, ResetCommand):
                    self.tracker.reset()
                    prompted.clear()
                    res.applied.append(f"reset ({c.reason})")
                    res.events += self.health.removed_all(stamp_ns, f"reset ({c.reason})")
                elif isinstance(c, RemoveCommand):
                    self.tracker.remove_object(c.obj_id)
                    res.applied.append(f"removed object {c.obj_id}")
                    self._removed_event(res, c.obj_id, stamp_ns, "removed on request")
                elif isinstance(c, UndoCommand):
                    what = self.tracker.undo_last_prompt(c.obj_id)
                    prompted.discard(c.obj_id)
                    if what == "removed":
                        self.registry.remove(c.obj_id)
                        self._removed_event(res, c.obj_id, stamp_ns, "its only prompt was undone")
                    elif what == "reverted":
                        self.registry.undo_prompt(c.obj_id)
                    res.applied.append(f"undo last prompt of object {c.obj_id}: {what}")
                elif isinstance(c, PromptCommand):
                    self._apply_prompt(c, stamp_ns, lidar2odom, cameras, cam2lidar, pose_at, res, due_tolerance_ns)
                    prompted.add(c.obj_id)
                    self.prompt_log.applied += 1
                    res.applied.append(c.describe())
            except Exception as exc:  # noqa: BLE001 - a bad prompt must not stop the node
                self.prompt_log.failed += 1
                msg = f"could not apply {type(c).__name__} for object {getattr(c, 'obj_id', '-')}: {exc}"
                res.errors.append(msg)
                self.log.error(msg)
                if isinstance(c, PromptCommand) and c.obj_id not in self.tracker.object_ids:
                    self.registry.remove(c.obj_id)  # its first prompt failed: no phantom object in list_objects
        return prompted

    def _history_frame(self, stamp_ns: int) -> Optional[KeptFrame]:
        """The kept processed frame nearest ``stamp_ns``, or None."""
        if not self._history:
            return None
        return min(self._history, key=lambda h: abs(h.stamp_ns - stamp_ns))

    def _lift_image_clicks(self, c: PromptCommand, stamp_ns: int, pose_at):
        """LiDAR points ``(K, 3)`` (LiDAR frame at ``c.target_stamp_ns``) and labels of an image prompt's clicks.

        Each click goes to the nearest-depth non-ground point of the kept processed frame nearest the named stamp
        (that frame's points moved to the named stamp by ego motion when both poses are known, else taken as they
        are), projected into the prompt's camera with that frame's calibration, within ``pixel_radius``. Raises
        ``ValueError`` with the reason when a positive click lands on no point or no frame is kept.
        """
        from sam4d_model import geometric as geo

        t = c.target_stamp_ns
        h = self._history_frame(t)
        age = (stamp_ns - t) / 1e9
        if h is None:
            raise ValueError(f"image prompt names a frame {age:.2f} s before the frame it reached and no processed "
                             f"frame is kept to carry it over (prompt_history 0); click again on a current image")
        xyz, cameras, cam2lidar = h.xyz, h.cameras, h.camera2lidar
        then = pose_at(t) if h.anchored else None
        if then is not None and h.stamp_ns != t:
            xyz = compensate_ego_motion(xyz, h.lidar2world, then)
        cam = c.camera
        if not 0 <= cam < len(cameras):
            raise ValueError(f"image prompt camera {cam} not in this frame ({len(cameras)} camera(s))")
        gp = getattr(self.tracker, "geometric_params", None) or geo.GeometricParams()
        cand = ~geo.ground_mask(np.asarray(xyz, np.float64), gp)
        cm = cameras[cam]
        pts, labs = [], []
        for uv, lab in zip(np.asarray(c.image_points, np.float64), np.asarray(c.image_labels)):
            k = geo.pixel_seed(xyz, cand, uv, cm.K, cam2lidar[cam], cm.width, cm.height, gp.pixel_radius)
            if k is None:
                if lab == 1:
                    raise ValueError(
                        f"image prompt names a frame {age:.2f} s before the frame it reached (stamp "
                        f"{t / 1e9:.6f}, nearest kept frame {(h.stamp_ns - t) / 1e9:+.2f} s from it) and its click "
                        f"{np.round(uv, 1).tolist()} lands on no LiDAR point to carry it over: not applied; click "
                        f"again on a current image, or click the object in the cloud")
                continue  # a negative click on nothing constrains nothing
            pts.append(xyz[k])
            labs.append(int(lab))
        return np.asarray(pts, np.float32).reshape(-1, 3), np.asarray(labs, np.int64)

    def _apply_prompt(self, c: PromptCommand, stamp_ns, lidar2odom, cameras, cam2lidar, pose_at, res: FrameResult,
                      due_tolerance_ns: int) -> None:
        project = c.project_to_image and self.cfg.click_project_to_image
        stale = c.target_stamp_ns > 0 and stamp_ns - c.target_stamp_ns > due_tolerance_ns
        if stale and c.lidar_points is None and c.lidar_box is None and (c.image_points is not None
                                                                          or c.image_box is not None):
            age = (stamp_ns - c.target_stamp_ns) / 1e9
            if c.image_points is not None and len(c.image_points):
                # the named frame has passed (skipped or processed before the prompt came): a pixel of that frame
                # is not the same place in this one. Carried as the LiDAR point it lands on, moved by ego motion.
                pts, labs = self._lift_image_clicks(c, stamp_ns, pose_at)
                self.prompt_log.carried += 1
                msg = (f"image prompt for object {c.obj_id} names a frame {age:.2f} s earlier: its "
                       f"{len(pts)} click(s) carried over as LiDAR point(s) {np.round(pts, 2).tolist()}")
                self.log.info(msg)
                res.applied.append(msg)
                c = replace(c, image_points=None, image_labels=None, lidar_points=pts, lidar_labels=labs,
                            points_stamp_ns=c.target_stamp_ns)
                project = True  # the clicks were on the image: their projection is the image prompt
            else:
                res.errors.append(f"image box prompt for object {c.obj_id} names a frame {age:.2f} s earlier: "
                                  f"applied to this frame unchanged (boxes are not carried over)")
        lidar_points, lidar_box = c.lidar_points, c.lidar_box
        if c.points_stamp_ns and c.points_stamp_ns != stamp_ns and lidar2odom is not None and (
                lidar_points is not None or lidar_box is not None):
            then = pose_at(c.points_stamp_ns)
            if then is not None:
                if lidar_points is not None:
                    lidar_points = compensate_ego_motion(lidar_points, then, lidar2odom)
                if lidar_box is not None:  # shift the box by the motion of its centre
                    ctr = lidar_box.mean(0, keepdims=True)
                    lidar_box = lidar_box + (compensate_ego_motion(ctr, then, lidar2odom) - ctr)
        image_points, image_labels, image_box, cam = c.image_points, c.image_labels, c.image_box, c.camera
        if project and lidar_points is not None and cameras:
            for ci, (cm, T) in enumerate(zip(cameras, cam2lidar)):
                uv, _, ok = project_to_image(lidar_points, cm.K, T, cm.width, cm.height)
                if ok.any():
                    image_points, image_labels, cam = uv[ok].astype(np.float32), c.lidar_labels[ok], ci
                    break
        if c.reset_object and c.obj_id in self.tracker.object_ids:
            self.tracker.remove_object(c.obj_id)
        self.tracker.add_prompt(
            c.obj_id, camera=cam, image_points=image_points, image_labels=image_labels, image_box=image_box,
            lidar_points=lidar_points, lidar_labels=c.lidar_labels if lidar_points is not None else None,
            lidar_box=lidar_box)

    def _removed_event(self, res: FrameResult, obj_id: int, stamp_ns: int, reason: str) -> None:
        e = self.health.removed(obj_id, stamp_ns, reason)
        if e is not None:
            res.events.append(e)

    def drop_removed(self, res: Optional[FrameResult] = None, stamp_ns: int = 0) -> None:
        """Remove objects from the tracker that the registry no longer knows (removed between frames)."""
        known = set(self.registry.ids())
        for oid in list(self.tracker.object_ids):
            if oid not in known:
                self.tracker.remove_object(oid)
                if res is not None:
                    self._removed_event(res, oid, stamp_ns, "removed")

    # ------------------------------------------------------------------ frame
    def process(self, stamp_ns: int, cloud: CloudArrays, images: Sequence[np.ndarray], cameras: Sequence[CameraModel],
                cam2lidar: Sequence[np.ndarray], lidar2odom: Optional[np.ndarray],
                pose_at: Callable[[int], Optional[np.ndarray]] = lambda ns: None,
                due_tolerance_ns: int = 0) -> FrameResult:
        """Process one synchronised frame (see module docstring)."""
        t0 = time.perf_counter()
        n = cloud.num_points
        labels = np.full(n, -1, np.int32)
        scores = np.zeros(n, np.float32)
        id_maps = [np.zeros((cm.height, cm.width), np.int32) for cm in cameras]
        res = FrameResult(labels, scores, id_maps, [], cloud, list(images), list(cameras), list(cam2lidar), 0.0)

        sel = cloud.valid.copy()
        if self.cfg.min_range > 0 or self.cfg.max_range > 0:
            r = np.linalg.norm(np.where(sel[:, None], cloud.xyz, 0.0), axis=1)
            if self.cfg.min_range > 0:
                sel &= r >= self.cfg.min_range
            if self.cfg.max_range > 0:
                sel &= r <= self.cfg.max_range
        idx = np.flatnonzero(sel)
        if idx.size > self.cfg.max_points > 0:
            stride = int(np.ceil(idx.size / self.cfg.max_points))
            idx = idx[::stride]
            res.timings["subsample_stride"] = float(stride)
        if idx.size == 0:
            res.errors.append(f"cloud has no usable points ({n} points, {int(cloud.valid.sum())} finite); "
                              f"model not run, prompts stay queued")
            return res

        lidar2world = self._anchor_world(stamp_ns, lidar2odom, pose_at)
        xyz = cloud.xyz[idx]
        if self._history.maxlen:
            self._history.append(KeptFrame(stamp_ns, xyz, lidar2world, lidar2odom is not None, list(cameras),
                                           [np.asarray(t, np.float64) for t in cam2lidar]))
        cmds = self.commands.take_due(stamp_ns, due_tolerance_ns)
        prompted = self._apply(cmds, stamp_ns, lidar2odom, cameras, cam2lidar, pose_at, res, int(due_tolerance_ns))
        self.drop_removed(res, stamp_ns)

        from sam4d_model.types import CameraFrame, Frame

        inten = cloud.intensity[idx] if cloud.intensity is not None else np.zeros(idx.size, np.float32)
        pts = np.concatenate([xyz, np.nan_to_num(inten)[:, None].astype(np.float32)], 1)
        cams = [CameraFrame(name=str(i), image=img, intrinsics=cm.K.astype(np.float32), camera2lidar=T)
                for i, (img, cm, T) in enumerate(zip(images, cameras, cam2lidar))]
        frame = Frame(points=pts, cameras=cams, lidar2world=lidar2world,
                      timestamp=stamp_ns * 1e-9, index=self.frame_index)
        self.frame_index += 1
        t1 = time.perf_counter()
        out = self.tracker.step(frame)
        res.inference_time = time.perf_counter() - t1
        res.timings.update({k: float(v) for k, v in (getattr(out, "timings", None) or {}).items()
                            if isinstance(v, (int, float))})
        obj_ids = [int(o) for o in out.obj_ids]
        if obj_ids:
            pm = np.asarray(out.point_masks, bool).reshape(len(obj_ids), idx.size)
            ps = np.asarray(out.point_scores, np.float32).reshape(len(obj_ids), idx.size)
            masked = np.where(pm, ps, -np.inf)
            best = masked.argmax(0)
            hit = pm.any(0)
            labels[idx[hit]] = np.asarray(obj_ids, np.int32)[best[hit]]
            scores[idx] = np.where(hit, masked.max(0), 0.0)
            order = np.argsort(np.asarray(out.object_scores, np.float32))  # higher score painted last
            for ci, m in enumerate(out.image_masks[: len(id_maps)]):
                m = np.asarray(m, bool)
                for k in order:
                    if m.shape[1:] == id_maps[ci].shape:
                        id_maps[ci][m[k]] = obj_ids[k]
        obj_scores = np.asarray(out.object_scores, np.float32).reshape(-1)
        iou = np.asarray(out.iou_scores, np.float32).reshape(-1)
        for k, oid in enumerate(obj_ids):
            pts_k = cloud.xyz[labels == oid]
            npx = int(sum(int((m == oid).sum()) for m in id_maps))
            if len(pts_k):
                lo, hi = pts_k.min(0), pts_k.max(0)
                ctr = pts_k.mean(0)
            else:
                lo = hi = ctr = np.zeros(3, np.float32)
            res.objects.append(ObjectStat(oid, float(obj_scores[k]) if k < obj_scores.size else 0.0,
                                          float(iou[k]) if k < iou.size else 0.0, int(len(pts_k)), npx, ctr,
                                          hi - lo, lo, hi, oid in prompted))
        res.events += self.health.update(stamp_ns, res.objects)
        for o in res.objects:
            o.confidence, o.lost = self.health.confidence(o.obj_id), self.health.is_lost(o.obj_id)
        self.registry.update_tracked(obj_ids, [o.score for o in res.objects])
        res.timings["pipeline"] = time.perf_counter() - t0
        return res
