# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Offline clip API in the spirit of SAM2's video predictor, built on the same modules as the tracker.

>>> pred = SAM4DPredictor(model)
>>> state = pred.init_state(frames)                      # list of sam4d_model.types.Frame
>>> pred.add_prompts(state, frame_idx=0, obj_id=1, lidar_points=[[10, 0, 0]], lidar_labels=[1])
>>> for frame_idx, result in pred.propagate(state):      # result: TrackResult (masks per object)
...     ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from .modeling.sam4d import SAM4D
from .tracker import StreamingTracker, TrackResult
from .types import Frame


@dataclass
class InferenceState:
    """Frames of a clip and the prompts added to them (``prompts[frame_idx][obj_id] -> kwargs list``)."""

    frames: List[Frame]
    prompts: Dict[int, Dict[int, List[Dict[str, Any]]]] = field(default_factory=dict)
    #: last prediction of each prompted frame (``add_prompts``), for ``decoder.reprompt_with_logits``
    results: Dict[int, TrackResult] = field(default_factory=dict)
    #: ``(frame_idx, obj_id) -> (image logits per camera, point logits)`` given with that object's clicks
    logits: Dict[Tuple[int, int], Tuple[Dict[int, Any], Any]] = field(default_factory=dict)

    @property
    def obj_ids(self) -> List[int]:
        """All object ids with at least one prompt."""
        return sorted({o for per in self.prompts.values() for o in per})


class SAM4DPredictor:
    """Clip-level promptable segmentation and tracking (image masks and per-point LiDAR masks)."""

    def __init__(self, model: SAM4D, device: Union[str, torch.device] = "cpu", num_past_frames: int = 6,
                 max_prompted_frames: int = 4, use_ego_motion: bool = True, precision: Optional[str] = None):
        self.model = model
        self.kwargs = dict(device=device, num_past_frames=num_past_frames, max_prompted_frames=max_prompted_frames,
                           use_ego_motion=use_ego_motion, precision=precision)

    def _tracker(self, max_objects: int, num_frames: Optional[int] = None) -> StreamingTracker:
        return StreamingTracker(self.model, max_objects=max(1, max_objects), num_frames=num_frames, **self.kwargs)

    def init_state(self, frames: Sequence[Frame]) -> InferenceState:
        """Create the state of a clip; each frame has images, a cloud (N x >=3), calibration and pose."""
        if len(frames) == 0:
            raise ValueError("init_state needs at least one frame")
        return InferenceState(frames=list(frames))

    def reset_state(self, state: InferenceState) -> None:
        """Remove all prompts."""
        state.prompts.clear()
        state.results.clear()
        state.logits.clear()

    def add_prompts(self, state: InferenceState, frame_idx: int, obj_id: int, camera: Union[int, str] = 0,
                    image_points=None, image_labels=None, image_box=None, image_mask=None, lidar_points=None,
                    lidar_labels=None, lidar_box=None, lidar_mask=None, return_result: bool = True
                    ) -> Optional[TrackResult]:
        """Add prompts (same conventions as :meth:`StreamingTracker.add_prompt`) of ``obj_id`` on ``frame_idx``.

        Returns the prediction of all objects prompted on this frame (from these prompts alone) when
        ``return_result``. With ``decoder.reprompt_with_logits`` (the official model), clicks added to a frame that
        already has a prediction of ``obj_id`` also get that prediction's low-res logits as a dense mask prompt.
        """
        if not 0 <= frame_idx < len(state.frames):
            raise IndexError(f"frame_idx {frame_idx} out of range [0, {len(state.frames)})")
        kw = dict(camera=camera, image_points=image_points, image_labels=image_labels, image_box=image_box,
                  image_mask=image_mask, lidar_points=lidar_points, lidar_labels=lidar_labels, lidar_box=lidar_box,
                  lidar_mask=lidar_mask)
        clicks = any(v is not None for v in (image_points, image_box, lidar_points, lidar_box))
        prev = state.results.get(frame_idx)
        if self.model.cfg.decoder.reprompt_with_logits and clicks and prev is not None and obj_id in prev.obj_ids:
            i = prev.obj_ids.index(int(obj_id))
            cam = camera if isinstance(camera, int) else [c.name for c in state.frames[frame_idx].cameras].index(camera)
            img = prev.image_logits[cam][i] if cam < len(prev.image_logits) else None
            state.logits[(frame_idx, int(obj_id))] = ({cam: img} if img is not None else {}, prev.point_logits[i])
        state.prompts.setdefault(frame_idx, {}).setdefault(int(obj_id), []).append(kw)
        if not return_result:
            return None
        res = self._run_frame(state, frame_idx)
        state.results[frame_idx] = res
        return res

    def _run_frame(self, state: InferenceState, frame_idx: int) -> TrackResult:
        per = state.prompts[frame_idx]
        tr = self._tracker(len(per), len(state.frames))
        for oid, kws in per.items():
            for k in kws:
                tr.add_prompt(oid, **k)
            if (frame_idx, oid) in state.logits:
                img, pts = state.logits[(frame_idx, oid)]
                for cam, lg in img.items():
                    tr.add_prompt(oid, camera=cam, image_logits=lg)
                if pts is not None and len(pts):
                    tr.add_prompt(oid, lidar_logits=pts)
        return tr.step(state.frames[frame_idx])

    def propagate(self, state: InferenceState, start_frame_idx: Optional[int] = None, reverse: bool = False,
                  max_frames: Optional[int] = None) -> Iterator[Tuple[int, TrackResult]]:
        """Yield ``(frame_idx, TrackResult)`` from the first prompted frame (or ``start_frame_idx``) on.

        Objects join when their first prompted frame is reached; prompts on later frames act as corrections.
        """
        if not state.prompts:
            raise RuntimeError("add prompts before propagating")
        n = len(state.frames)
        if start_frame_idx is None:
            start_frame_idx = max(state.prompts) if reverse else min(state.prompts)
        order = range(start_frame_idx, -1, -1) if reverse else range(start_frame_idx, n)
        if max_frames is not None:
            order = list(order)[:max_frames]
        tr = self._tracker(len(state.obj_ids), n)
        for fi in order:
            for oid, kws in state.prompts.get(fi, {}).items():
                for k in kws:
                    tr.add_prompt(oid, **k)
            res = tr.step(state.frames[fi])
            res.frame_index = fi
            yield fi, res
