# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The SAM4D network and its per-frame step (encode -> MCMA memory attention -> decode -> encode memory).

State lives outside the module (see :mod:`sam4d_model.tracker` and :mod:`sam4d_model.predictor`): the step
takes the current :class:`FrameFeatures`, the stored :class:`MemoryEntry` list of every object and optional
:class:`ObjectPrompt` per object, and returns masks, scores and the new memory entries.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from sam2.modeling.sam2_utils import MLP
from torch import nn

from ..config import SAM4DConfig
from ..geometry import (
    VoxelPyramid,
    build_voxel_pyramid,
    image_aug_matrix,
    scatter_mean,
    scatter_mean_batched,
    transform_points,
)
from ..types import Frame
from .image_encoder import SAM4DImageEncoder
from .lidar_encoder import SAM4DLidarEncoder, SparseDownCell
from .mask_decoder import SAM4DMaskDecoder
from .memory import ImageMemoryEncoder, LidarMemoryEncoder, build_memory_attention
from .position_encoding import UMPE, PoseEncoder, temporal_sine
from .prompt_encoder import ImagePromptEncoder, LidarPromptEncoder

NO_OBJ_SCORE = -1024.0


@dataclass
class CameraCalib:
    """Calibration of one camera as used by the model (float64 tensors)."""

    img_aug: torch.Tensor  # 4x4, original pixel -> model input pixel
    intrinsics: torch.Tensor  # 3x3
    camera2lidar: torch.Tensor  # 4x4, includes the LiDAR augmentation
    orig_hw: Tuple[int, int]


@dataclass
class FrameFeatures:
    """Encoder outputs of one frame (no object state)."""

    frame_idx: int
    pose: torch.Tensor  # 4x4 float64: lidar2world @ inv(lidar_aug)
    num_points_in: int
    cams: List[CameraCalib] = field(default_factory=list)
    img_tokens: Optional[torch.Tensor] = None  # (C, HW, d)
    img_pos: Optional[torch.Tensor] = None  # (C, HW, d)
    img_s0: Optional[torch.Tensor] = None  # (C, d, 4h, 4w)
    img_s1: Optional[torch.Tensor] = None  # (C, d, 2h, 2w)
    img_hw: Tuple[int, int] = (0, 0)
    pyr: Optional[VoxelPyramid] = None
    pts_tokens: Optional[torch.Tensor] = None  # (T, d)
    pts_xyz: Optional[torch.Tensor] = None  # (T, 3)
    pts_pos: Optional[torch.Tensor] = None  # (T, d)
    pts_s8: Optional[torch.Tensor] = None
    pts_s4: Optional[torch.Tensor] = None

    @property
    def has_image(self) -> bool:
        """Whether at least one camera is present."""
        return self.img_tokens is not None and self.img_tokens.shape[0] > 0

    @property
    def has_lidar(self) -> bool:
        """Whether the cloud has at least one kept point."""
        return self.pts_tokens is not None and self.pts_tokens.shape[0] > 0


@dataclass
class ObjectPrompt:
    """Prompts of one object on one frame, in model coordinates.

    ``img_points``: camera index -> (uv (K, 2) model-input pixels, labels (K,)); boxes are two points with labels
    2/3. ``img_masks``: camera index -> (4h, 4w) float mask. ``pts_points`` (K, 3) xyz with ``pts_labels`` (K,)
    (LiDAR boxes: min/max corners, labels 2/3). ``pts_mask``: (M,) over the kept points.
    """

    img_points: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    img_masks: Dict[int, torch.Tensor] = field(default_factory=dict)
    pts_points: Optional[torch.Tensor] = None
    pts_labels: Optional[torch.Tensor] = None
    pts_mask: Optional[torch.Tensor] = None

    @property
    def num_clicks(self) -> int:
        """Total number of point prompts (box corners included)."""
        n = sum(int(v[0].shape[0]) for v in self.img_points.values())
        return n + (0 if self.pts_points is None else int(self.pts_points.shape[0]))

    @property
    def is_empty(self) -> bool:
        """True when no prompt of any kind is present."""
        return self.num_clicks == 0 and not self.img_masks and self.pts_mask is None


@dataclass
class MemoryEntry:
    """Stored memory of one object on one frame (detached tensors)."""

    frame_idx: int
    is_prompted: bool
    pose: torch.Tensor
    cams: List[CameraCalib]
    img_hw: Tuple[int, int]
    img_mem: Optional[torch.Tensor]  # (C, HW, mem_dim)
    pts_mem: Optional[torch.Tensor]  # (T, mem_dim)
    pts_xyz: Optional[torch.Tensor]  # (T, 3)
    obj_ptr_img: Optional[torch.Tensor]  # (d,)
    obj_ptr_pts: Optional[torch.Tensor]  # (d,)

    def nbytes(self) -> int:
        """Bytes held by the tensors of this entry."""
        n = 0
        for t in (self.img_mem, self.pts_mem, self.pts_xyz, self.obj_ptr_img, self.obj_ptr_pts):
            if t is not None:
                n += t.numel() * t.element_size()
        return n


@dataclass
class StepOutput:
    """Per-object outputs of one step (``O`` objects, ``C`` cameras, ``M`` kept points)."""

    img_logits: Optional[torch.Tensor] = None  # (O, C, 4h, 4w) selected, absent objects suppressed
    img_logits_all: Optional[torch.Tensor] = None  # (O, C, 4, 4h, 4w) raw
    img_iou: Optional[torch.Tensor] = None  # (O, C) selected
    img_iou_all: Optional[torch.Tensor] = None  # (O, C, 4)
    img_obj: Optional[torch.Tensor] = None  # (O, C) logits
    pts_logits: Optional[torch.Tensor] = None  # (O, M)
    pts_logits_all: Optional[torch.Tensor] = None  # (O, 4, M)
    pts_iou: Optional[torch.Tensor] = None  # (O,)
    pts_iou_all: Optional[torch.Tensor] = None  # (O, 4)
    pts_obj: Optional[torch.Tensor] = None  # (O,)
    multimask: Optional[torch.Tensor] = None  # (O,) bool
    new_memory: List[Optional[MemoryEntry]] = field(default_factory=list)


@contextmanager
def _timed(timings: Optional[Dict[str, float]], key: str, device: torch.device) -> Iterator[None]:
    if timings is None:
        yield
        return
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0


def _t64(x, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=torch.float64, device=device)


class SAM4D(nn.Module):
    """SAM4D: promptable segmentation and tracking in camera and LiDAR streams."""

    def __init__(self, cfg: SAM4DConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        d = cfg.d_model
        mc = cfg.memory
        self.d = d
        self.image_size = cfg.image.image_size
        self.image_encoder = SAM4DImageEncoder(cfg)
        self.img_token_norm = nn.LayerNorm(d) if cfg.image.token_norm else nn.Identity()
        self.lidar_encoder = SAM4DLidarEncoder(cfg)
        self.umpe = UMPE(cfg)
        self.image_prompt_encoder = ImagePromptEncoder(d, cfg.decoder.mask_in_chans)
        self.lidar_prompt_encoder = LidarPromptEncoder(d, cfg.decoder.mask_in_chans, cfg.decoder.lidar_norm,
                                                       cfg.decoder.lidar_prompt_act)
        self.memory_attention = build_memory_attention(cfg)
        self.image_memory_encoder = ImageMemoryEncoder(cfg)
        self.lidar_memory_encoder = LidarMemoryEncoder(cfg)
        self.mask_decoder = SAM4DMaskDecoder(cfg)
        self.num_maskmem = mc.num_maskmem
        self.max_obj_ptrs = mc.max_obj_ptrs
        self.use_ego_motion = mc.use_ego_motion
        self.img_maskmem_tpos_enc = nn.Parameter(torch.zeros(mc.num_maskmem, 1, mc.mem_dim))
        self.pts_maskmem_tpos_enc = nn.Parameter(torch.zeros(mc.num_maskmem, 1, mc.mem_dim))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, d))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, d))
        self.cross_modal_embed = nn.Parameter(torch.zeros(2, d))  # added to the other modality's current tokens
        self.ptr_modality_embed = nn.Parameter(torch.zeros(2, d))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, d))
        self.img_no_obj_embed_spatial = nn.Parameter(torch.zeros(1, mc.mem_dim))
        self.pts_no_obj_embed_spatial = nn.Parameter(torch.zeros(1, mc.mem_dim))
        self.obj_ptr_proj = MLP(d, d, d, 3)
        self.obj_ptr_tpos_proj = nn.Linear(d, mc.mem_dim)
        self.pose_encoder = PoseEncoder(mc.mem_dim, mc.pose_d_max)
        if cfg.decoder.mask_input_as_output:
            self.mask_downsample_img = nn.Conv2d(1, 1, kernel_size=4, stride=4)
            self.mask_downsample_pts = SparseDownCell(1, 1, 4)
        for p in (self.img_maskmem_tpos_enc, self.pts_maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc,
                  self.cross_modal_embed, self.ptr_modality_embed, self.no_obj_ptr, self.img_no_obj_embed_spatial,
                  self.pts_no_obj_embed_spatial):
            nn.init.trunc_normal_(p, std=0.02)
        self.autocast_dtype: Optional[torch.dtype] = None

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.no_obj_ptr.device

    def _autocast(self):
        dev = self.device
        if dev.type == "cuda" and self.autocast_dtype is not None:
            return torch.autocast("cuda", dtype=self.autocast_dtype)
        return torch.autocast(dev.type, enabled=False)

    # ------------------------------------------------------------------------------------------------ encoding
    def preprocess_image(self, image: np.ndarray) -> torch.Tensor:
        """uint8 RGB (H, W, 3) -> normalised (1, 3, S, S) float (``image.resize``: bilinear or bicubic, antialiased;
        bicubic values are clamped to 0..255 and rounded as the official predictor's uint8 PIL resize).
        """
        img = torch.as_tensor(np.ascontiguousarray(image), device=self.device)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {tuple(img.shape)}")
        x = img.permute(2, 0, 1).unsqueeze(0).float()
        if x.shape[-2:] != (self.image_size, self.image_size):
            mode = self.cfg.image.resize
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode=mode, align_corners=False,
                              antialias=True)
            if mode == "bicubic":
                x = x.clamp(0, 255).round()
        return self.image_encoder.normalize(x)

    def encode_frame(self, frame: Frame, frame_idx: Optional[int] = None, lidar_aug: Optional[np.ndarray] = None,
                     timings: Optional[Dict[str, float]] = None) -> FrameFeatures:
        """Run the image and LiDAR encoders and the UMPE of the current tokens."""
        dev = self.device
        aug = np.eye(4) if lidar_aug is None else np.asarray(lidar_aug, dtype=np.float64)
        pose = _t64(np.asarray(frame.lidar2world, dtype=np.float64) @ np.linalg.inv(aug), dev)
        pts = np.asarray(frame.points)
        if pts.ndim != 2 or pts.shape[1] < 3:
            if pts.size == 0:
                pts = np.zeros((0, 3), np.float32)
            else:
                raise ValueError(f"points must be (N, C>=3), got shape {pts.shape}")
        feats = FrameFeatures(frame_idx=int(frame.index if frame_idx is None else frame_idx), pose=pose,
                              num_points_in=int(pts.shape[0]))
        s = self.image_size
        stride = self.cfg.image.backbone_stride
        h = w = s // stride
        cameras = frame.cameras if self.cfg.use_cameras else []
        if cameras:
            with _timed(timings, "image_encoder", dev):
                imgs = torch.cat([self.preprocess_image(c.image) for c in cameras], 0)
                with self._autocast():
                    out = self.image_encoder(imgs)
                fpn = out["backbone_fpn"]
                feats.img_tokens = self.img_token_norm(fpn[2].flatten(2).transpose(1, 2).float())
                feats.img_s0, feats.img_s1 = fpn[0].float(), fpn[1].float()
                feats.img_hw = (h, w)
            for c in cameras:
                feats.cams.append(CameraCalib(
                    img_aug=_t64(image_aug_matrix((c.height, c.width), s), dev),
                    intrinsics=_t64(c.intrinsics, dev),
                    camera2lidar=_t64(aug @ np.asarray(c.camera2lidar, dtype=np.float64), dev),
                    orig_hw=(c.height, c.width)))
            with _timed(timings, "umpe", dev):
                feats.img_pos = torch.stack([self.image_pos(c, h, w) for c in feats.cams], 0)
        with _timed(timings, "lidar_encoder", dev):
            lc = self.cfg.lidar
            pts_aug = pts
            if lc.point_features == "height_above_ground" and len(pts):
                from ..geometric import height_above_ground

                pts = np.concatenate([np.asarray(pts)[:, :3], height_above_ground(pts)[:, None]], 1)
                pts_aug = pts
            elif lc.point_features == "constant":
                pts = np.concatenate([np.asarray(pts)[:, :3], np.ones((len(pts), 1), np.float32)], 1)
                pts_aug = pts
            if lidar_aug is not None and len(pts):
                pts_aug = pts.astype(np.float32, copy=True)
                pts_aug[:, :3] = pts[:, :3] @ aug[:3, :3].T.astype(np.float32) + aug[:3, 3].astype(np.float32)
            pyr = build_voxel_pyramid(pts_aug, lc.voxel_size, lc.num_point_features, lc.max_range, dev,
                                      lc.quantisation, lc.drop_boundary_voxels)
            feats.pyr = pyr
            if pyr.num_points > 0:
                out = self.lidar_encoder(pyr)
                feats.pts_tokens, feats.pts_xyz = out["tokens"], out["token_xyz"]
                feats.pts_s8, feats.pts_s4 = out["feat_s8"], out["feat_s4"]
        if feats.has_lidar:
            with _timed(timings, "umpe", dev):
                feats.pts_pos = self.lidar_pos(feats.pts_xyz)
        return feats

    def image_pos(self, cam: CameraCalib, h: int, w: int, t_rel: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(h*w, d) position encoding of image tokens: 2D sine + UMPE of the token rays (optionally moved)."""
        uv = self.umpe.image_token_uv(h, w, self.device)
        rays = self.umpe.ray_points(uv, cam.img_aug, cam.intrinsics, cam.camera2lidar, t_rel)
        return self.umpe.image_dense_2d(h, w, self.device) + self.umpe.encode_3d_rays(rays)

    def lidar_pos(self, xyz: torch.Tensor) -> torch.Tensor:
        """(T, d) position encoding of LiDAR tokens: Fourier + UMPE of xyz."""
        return self.umpe.xyz_fourier(xyz) + self.umpe.encode_3d_xyz(xyz)

    # ---------------------------------------------------------------------------------------------- ego motion
    def relative_pose(self, cur_pose: torch.Tensor, past_pose: torch.Tensor, ego: Optional[bool] = None
                      ) -> Optional[torch.Tensor]:
        """``T_rel = inv(P_cur) @ P_past`` (float64), or ``None`` when ego-motion compensation is off (``ego``;
        ``None``: the config's ``memory.use_ego_motion``).
        """
        if not (self.use_ego_motion if ego is None else ego):
            return None
        return torch.linalg.solve(cur_pose.double(), past_pose.double())

    def memory_lidar_xyz(self, entry: MemoryEntry, cur_pose: torch.Tensor, ego: Optional[bool] = None
                         ) -> torch.Tensor:
        """Stored LiDAR token positions of ``entry`` expressed in the current LiDAR frame (if compensating)."""
        t_rel = self.relative_pose(cur_pose, entry.pose, ego)
        if t_rel is None:
            return entry.pts_xyz
        return transform_points(t_rel, entry.pts_xyz.double()).float()

    def memory_ray_points(self, entry: MemoryEntry, cam_idx: int, cur_pose: torch.Tensor,
                          ego: Optional[bool] = None) -> torch.Tensor:
        """Frustum points (HW, D, 3) of a stored image memory, in the current LiDAR frame (if compensating)."""
        cam = entry.cams[cam_idx]
        uv = self.umpe.image_token_uv(entry.img_hw[0], entry.img_hw[1], self.device)
        return self.umpe.ray_points(uv, cam.img_aug, cam.intrinsics, cam.camera2lidar,
                                    self.relative_pose(cur_pose, entry.pose, ego))

    # -------------------------------------------------------------------------------------------------- memory
    def _cond_entries(self, entries: Sequence[MemoryEntry], frame_idx: int) -> List[MemoryEntry]:
        """Prompted entries of other frames that the current frame attends to (``memory.cond_frame_window``)."""
        win = self.cfg.memory.cond_frame_window
        return [e for e in entries if e.is_prompted and e.frame_idx != frame_idx
                and (win <= 0 or abs(frame_idx - e.frame_idx) <= win)]

    def select_memory(self, entries: Sequence[MemoryEntry], frame_idx: int,
                      num_past: Optional[int] = None) -> List[Tuple[MemoryEntry, int]]:
        """Memories attended to on ``frame_idx`` as ``(entry, t_pos)``: prompted entries (t_pos 0) and past
        entries at their frame distance t_pos (``memory.memory_selection``: the most recent ones, or exactly the
        frames 1 .. ``num_past`` back).
        """
        num_past = self.num_maskmem - 1 if num_past is None else num_past
        cond = self._cond_entries(entries, frame_idx)
        out = [(e, 0) for e in cond]
        if self.cfg.memory.memory_selection == "distance":
            taken = {id(e) for e in cond}
            by_frame = {e.frame_idx: e for e in entries if id(e) not in taken}
            for dist in range(1, num_past + 1):
                e = by_frame.get(frame_idx - dist)
                if e is not None:
                    out.append((e, dist))
            return out
        past = [e for e in entries if not e.is_prompted and e.frame_idx < frame_idx]
        past = sorted(past, key=lambda e: e.frame_idx)[-num_past:] if num_past > 0 else []
        for e in past:
            out.append((e, int(min(max(frame_idx - e.frame_idx, 1), self.num_maskmem - 1))))
        return out

    def select_pointers(self, entries: Sequence[MemoryEntry], frame_idx: int,
                        selected: List[Tuple[MemoryEntry, int]]) -> List[MemoryEntry]:
        """Entries whose object pointers are attended to (``memory.memory_selection``)."""
        if self.cfg.memory.memory_selection == "distance":
            cond = [e for e, t in selected if t == 0 and e.frame_idx <= frame_idx]
            taken = {id(e) for e in cond}
            by_frame = {e.frame_idx: e for e in entries if id(e) not in taken}
            past = [by_frame.get(frame_idx - dist) for dist in range(1, self.max_obj_ptrs)]
            return cond + [e for e in past if e is not None]
        ptr_entries = [e for e, t in selected if t == 0] + sorted([e for e, t in selected if t > 0],
                                                                  key=lambda e: -e.frame_idx)
        return ptr_entries[: self.max_obj_ptrs]

    def _entry_positions(self, feats: FrameFeatures, e: MemoryEntry, cache: Dict, ego: Optional[bool] = None):
        """Positions of a stored entry in the current frame (image, LiDAR, pose encoding), cached per frame."""
        key = (e.frame_idx, id(e.pose))
        if key not in cache:
            img_p, pts_p = [], None
            t_rel = self.relative_pose(feats.pose, e.pose, ego)
            if e.img_mem is not None:
                for cam in e.cams:
                    img_p.append(self.image_pos(cam, e.img_hw[0], e.img_hw[1], t_rel))
            if e.pts_mem is not None and e.pts_mem.shape[0] > 0:
                pts_p = self.lidar_pos(self.memory_lidar_xyz(e, feats.pose, ego))
            pose_enc = self.pose_encoder(t_rel.unsqueeze(0))[0] if t_rel is not None else None
            cache[key] = (img_p, pts_p, pose_enc)
        return cache[key]

    def _memory_tokens(self, feats: FrameFeatures, selected: List[Tuple[MemoryEntry, int]],
                       ptr_entries: List[MemoryEntry], cache: Dict, num_frames: Optional[int] = None,
                       ego: Optional[bool] = None) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Memory tokens and positions (each (L_i, d)) of one object's selected entries and object pointers."""
        toks: List[torch.Tensor] = []
        poss: List[torch.Tensor] = []
        for e, t_pos in selected:
            img_p, pts_p, _ = self._entry_positions(feats, e, cache, ego)
            tidx = self.num_maskmem - t_pos - 1
            if e.img_mem is not None:
                for ci in range(e.img_mem.shape[0]):
                    toks.append(e.img_mem[ci].float())
                    poss.append(img_p[ci] + self.img_maskmem_tpos_enc[tidx])
            if pts_p is not None:
                toks.append(e.pts_mem.float())
                poss.append(pts_p + self.pts_maskmem_tpos_enc[tidx])
        ptrs, ppos = [], []
        span = self.max_obj_ptrs
        if num_frames and self.cfg.memory.memory_selection == "distance":
            span = min(int(num_frames), span)
        denom = max(span - 1, 1)
        for e in ptr_entries:
            tdiff = torch.tensor([float(feats.frame_idx - e.frame_idx) / denom], device=self.device)
            tp = self.obj_ptr_tpos_proj(temporal_sine(tdiff, self.d))[0]
            pose_enc = self._entry_positions(feats, e, cache, ego)[2]
            if pose_enc is not None:
                tp = tp + pose_enc
            for m, ptr in enumerate((e.obj_ptr_img, e.obj_ptr_pts)):
                if ptr is not None:
                    ptrs.append(ptr)
                    ppos.append(tp + self.ptr_modality_embed[m])
        if ptrs:
            toks.append(torch.stack(ptrs, 0))
            poss.append(torch.stack(ppos, 0))
        return toks, poss

    def _attend(self, curr: torch.Tensor, curr_pos: torch.Tensor, mem: torch.Tensor,
                mem_pos: torch.Tensor) -> torch.Tensor:
        """Memory attention of queries ``curr`` (B, N, d) to ``mem`` (B, L, d); returns (B, N, d)."""
        with self._autocast():
            out = self.memory_attention(curr.transpose(0, 1), mem.transpose(0, 1), curr_pos.transpose(0, 1),
                                        mem_pos.transpose(0, 1))
        return out.transpose(0, 1).float()

    def condition_on_memory(self, feats: FrameFeatures, memories: Sequence[Sequence[MemoryEntry]],
                            num_past: Optional[int] = None, num_frames: Optional[int] = None,
                            ego: Optional[bool] = None) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """MCMA: returns memory-conditioned image tokens (O, C, HW, d) and LiDAR tokens (O, T, d)."""
        o = len(memories)
        img_out = pts_out = None
        cache: Dict = {}
        per_obj, has_mem = [], []
        for ents in memories:
            selected = self.select_memory(ents, feats.frame_idx, num_past)
            toks, poss = self._memory_tokens(feats, selected, self.select_pointers(ents, feats.frame_idx, selected),
                                             cache, num_frames, ego)
            has_mem.append(bool(toks))
            if not toks:
                toks, poss = [self.no_mem_embed[0]], [self.no_mem_pos_enc[0]]
            per_obj.append((torch.cat(toks, 0), torch.cat(poss, 0)))
        # Objects with the same number of memory tokens are attended as one batch. Objects without memory all see
        # the same inputs (the no-memory token and the current frame), so they are computed once and broadcast.
        groups: Dict[int, List[int]] = {}
        for i, (t, _) in enumerate(per_obj):
            groups.setdefault(t.shape[0] if has_mem[i] else -1, []).append(i)
        if feats.has_image:
            c, n, d = feats.img_tokens.shape
            img_out = feats.img_tokens.new_zeros((o, c, n, d))
            cross = None
            if feats.has_lidar:
                cross = (feats.pts_tokens, feats.pts_pos + self.cross_modal_embed[0])
            for key, idxs in groups.items():
                if key < 0 and (cross is None or not self.cfg.memory.attend_on_first_frame):
                    img_out[idxs] = feats.img_tokens.unsqueeze(0) + self.no_mem_embed
                    continue
                run = idxs[:1] if key < 0 else idxs
                mem = torch.stack([per_obj[i][0] for i in run], 0)
                mpos = torch.stack([per_obj[i][1] for i in run], 0)
                if cross is not None:
                    mem = torch.cat([mem, cross[0].unsqueeze(0).expand(len(run), -1, -1)], 1)
                    mpos = torch.cat([mpos, cross[1].unsqueeze(0).expand(len(run), -1, -1)], 1)
                b = len(run)
                q = feats.img_tokens.unsqueeze(0).expand(b, -1, -1, -1).reshape(b * c, n, d)
                qp = feats.img_pos.unsqueeze(0).expand(b, -1, -1, -1).reshape(b * c, n, d)
                m = mem.unsqueeze(1).expand(-1, c, -1, -1).reshape(b * c, mem.shape[1], d)
                mp = mpos.unsqueeze(1).expand(-1, c, -1, -1).reshape(b * c, mem.shape[1], d)
                img_out[idxs] = self._attend(q, qp, m, mp).view(b, c, n, d).expand(len(idxs), -1, -1, -1)
        if feats.has_lidar:
            t, d = feats.pts_tokens.shape
            pts_out = feats.pts_tokens.new_zeros((o, t, d))
            cross = None
            if feats.has_image:
                cross = (feats.img_tokens.reshape(-1, d), (feats.img_pos + self.cross_modal_embed[1]).reshape(-1, d))
            for key, idxs in groups.items():
                if key < 0 and (cross is None or not self.cfg.memory.attend_on_first_frame):
                    pts_out[idxs] = feats.pts_tokens.unsqueeze(0) + self.no_mem_embed[0]
                    continue
                run = idxs[:1] if key < 0 else idxs
                b = len(run)
                mem = torch.stack([per_obj[i][0] for i in run], 0)
                mpos = torch.stack([per_obj[i][1] for i in run], 0)
                if cross is not None:
                    mem = torch.cat([mem, cross[0].unsqueeze(0).expand(b, -1, -1)], 1)
                    mpos = torch.cat([mpos, cross[1].unsqueeze(0).expand(b, -1, -1)], 1)
                q = feats.pts_tokens.unsqueeze(0).expand(b, -1, -1)
                qp = feats.pts_pos.unsqueeze(0).expand(b, -1, -1)
                pts_out[idxs] = self._attend(q, qp, mem, mpos).expand(len(idxs), -1, -1)
        return img_out, pts_out

    # ------------------------------------------------------------------------------------------------- prompts
    def _pad_stack(self, parts: List[torch.Tensor]) -> torch.Tensor:
        k = max(p.shape[0] for p in parts)
        out = []
        for p in parts:
            if p.shape[0] < k:
                pad = self.image_prompt_encoder.not_a_point_embed.weight.expand(k - p.shape[0], -1)
                p = torch.cat([p, pad.to(p.dtype)], 0)
            out.append(p)
        return torch.stack(out, 0)

    def encode_sparse_prompts(self, feats: FrameFeatures, prompts: Sequence[Optional[ObjectPrompt]]):
        """Sparse prompt tokens: per camera (O, P_c, d) for the image decoders and (O, P, d) for the LiDAR decoder.

        Every decoder gets both modalities' prompt tokens (cross-modal prompting): image prompts of camera ``c``
        go to camera ``c``'s decoder and to the LiDAR decoder; LiDAR prompts go to all decoders. Layout by
        ``decoder.prompt_tokens``: ``single`` (a modality without prompt contributes one padding token; objects
        are padded to one length) or ``official`` (see the config; objects keep their own lengths, so every
        decoder input is a list of ``(P_o, d)`` tensors, decoded in groups of equal length).
        """
        ipe, lpe = self.image_prompt_encoder, self.lidar_prompt_encoder
        pad = ipe.not_a_point_embed.weight
        lpad = lpe.not_a_point_embed.weight
        official = self.cfg.decoder.prompt_tokens == "official"
        ncam = len(feats.cams)
        pts_parts, img_parts = [], [[] for _ in range(ncam)]
        img_has: List[List[bool]] = [[] for _ in range(ncam)]
        for p in prompts:
            if p is not None and p.pts_points is not None and p.pts_points.shape[0] > 0:
                lab = p.pts_labels.to(self.device).long()
                xyz = p.pts_points.to(self.device).float()
                if official or not bool((lab >= 2).any()):
                    xyz = torch.cat([xyz, xyz.new_zeros(1, 3)], 0)
                    lab = torch.cat([lab, lab.new_full((1,), -1)], 0)
                pts_parts.append(lpe.embed_points(self.umpe, xyz[None], lab[None])[0])
            else:
                pts_parts.append(lpad.expand(2, -1) if official else lpad)
            for ci in range(ncam):
                if p is not None and ci in p.img_points and p.img_points[ci][0].shape[0] > 0:
                    uv, lab = p.img_points[ci]
                    uv, lab = uv.to(self.device).float(), lab.to(self.device).long()
                    if official or not bool((lab >= 2).any()):
                        uv = torch.cat([uv, uv.new_zeros(1, 2)], 0)
                        lab = torch.cat([lab, lab.new_full((1,), -1)], 0)
                    cam = feats.cams[ci]
                    img_parts[ci].append(ipe.embed_points(self.umpe, uv[None], lab[None], self.image_size,
                                                          cam.img_aug, cam.intrinsics, cam.camera2lidar)[0])
                else:
                    img_parts[ci].append(pad.expand(2, -1) if official else pad)
                img_has[ci].append(p is not None and ci in p.img_points and p.img_points[ci][0].shape[0] > 0)
        if official:
            o = len(prompts)
            cam_tok = [[torch.cat([img_parts[ci][i], pts_parts[i], img_parts[ci][i]], 0) for i in range(o)]
                       for ci in range(ncam)]
            img_all = [torch.cat([img_parts[ci][i] for ci in range(ncam) if img_has[ci][i]] or [pad.expand(2, -1)], 0)
                       for i in range(o)]
            return cam_tok, [torch.cat([pts_parts[i], img_all[i]], 0) for i in range(o)]
        pts_tok = self._pad_stack(pts_parts)
        cam_tok = [torch.cat([self._pad_stack(img_parts[ci]), pts_tok], 1) for ci in range(ncam)]
        if ncam:
            all_img = [torch.cat([img_parts[ci][o] for ci in range(ncam)
                                  if img_parts[ci][o] is not pad] or [pad], 0) for o in range(len(prompts))]
            lidar_tok = torch.cat([self._pad_stack(all_img), pts_tok], 1)
        else:
            lidar_tok = torch.cat([pad.unsqueeze(0).expand(len(prompts), 1, -1), pts_tok], 1)
        return cam_tok, lidar_tok

    @staticmethod
    def _decode_groups(run, tokens, o: int) -> Dict[str, torch.Tensor]:
        """Run a decoder ``run(index, tokens)`` on all ``o`` objects: one call for stacked ``(O, P, d)`` tokens,
        one call per token count for a list of ``(P_o, d)`` (no padding token added); outputs in object order.
        """
        if isinstance(tokens, torch.Tensor):
            return run(slice(None), tokens)
        groups: Dict[int, List[int]] = {}
        for i, t in enumerate(tokens):
            groups.setdefault(int(t.shape[0]), []).append(i)
        if len(groups) == 1:
            return run(slice(None), torch.stack(tokens, 0))
        out: Dict[str, torch.Tensor] = {}
        for idxs in groups.values():
            r = run(idxs, torch.stack([tokens[i] for i in idxs], 0))
            for k, v in r.items():
                if k not in out:
                    out[k] = v.new_zeros((o,) + tuple(v.shape[1:]))
                out[k][idxs] = v
        return out

    # -------------------------------------------------------------------------------------------------- step
    def forward(self, feats: FrameFeatures, memories: Sequence[Sequence[MemoryEntry]],
                prompts: Optional[Sequence[Optional[ObjectPrompt]]] = None, store_memory: bool = True,
                num_past: Optional[int] = None, multimask: Optional[bool] = None,
                timings: Optional[Dict[str, float]] = None, num_frames: Optional[int] = None,
                use_ego_motion: Optional[bool] = None) -> StepOutput:
        """One tracking / prompting step for ``O = len(memories)`` objects on the frame ``feats``
        (``num_frames``: the clip's length when known, for the pointer normaliser of ``memory.memory_selection``;
        ``use_ego_motion``: compensate the memories' positions by ego motion; ``None``: the config's).
        """
        dev = self.device
        o = len(memories)
        prompts = list(prompts) if prompts is not None else [None] * o
        if len(prompts) != o:
            raise ValueError("prompts and memories must have one entry per object")
        out = StepOutput()
        if o == 0:
            return out
        with _timed(timings, "memory_attention", dev):
            img_c, pts_c = self.condition_on_memory(feats, memories, num_past, num_frames, use_ego_motion)
        dc = self.cfg.decoder
        prompted = [p is not None and not p.is_empty for p in prompts]
        # mask prompts used as the output itself (decoder.mask_input_as_output): objects with masks and no clicks
        as_out = [dc.mask_input_as_output and p is not None and p.num_clicks == 0 for p in prompts]
        img_as_out = [a and bool(p.img_masks) for a, p in zip(as_out, prompts)]
        pts_as_out = [a and p.pts_mask is not None for a, p in zip(as_out, prompts)]
        if multimask is None:
            mm = [dc.multimask_output_in_sam and (pr or dc.multimask_output_for_tracking)
                  and self._multimask_clicks(p) <= dc.multimask_max_pt_num and not (ia or pa)
                  for p, pr, ia, pa in zip(prompts, prompted, img_as_out, pts_as_out)]
        else:
            mm = [bool(multimask)] * o
        mm_t = torch.tensor(mm, device=dev)
        out.multimask = mm_t
        with _timed(timings, "decoder", dev):
            cam_tok, lidar_tok = self.encode_sparse_prompts(feats, prompts)
            ptr_img = ptr_pts = None
            if feats.has_image:
                h, w = feats.img_hw
                ncam = len(feats.cams)
                sel_l, all_l, iou_l, ioua_l, obj_l, tok_l = [], [], [], [], [], []
                for ci in range(ncam):
                    masks_in = [p.img_masks.get(ci) if p is not None else None for p in prompts]
                    dense = self.image_prompt_encoder.embed_masks(None, o, (h, w))
                    given: Dict[int, torch.Tensor] = {}  # object -> (S, S) mask used as its output
                    if any(m is not None for m in masks_in):
                        rows = []
                        for i, m in enumerate(masks_in):
                            if m is None:
                                rows.append(torch.zeros(4 * h, 4 * w, device=dev))
                            elif img_as_out[i]:
                                given[i] = self._image_mask_full(m.to(dev).float())
                                rows.append(self.mask_downsample_img(given[i][None, None])[0, 0])
                            elif m.shape[-2:] != (4 * h, 4 * w):  # a model-input-size mask (with clicks)
                                rows.append(F.interpolate(m.to(dev).float()[None, None], size=(4 * h, 4 * w),
                                                          mode="bilinear", align_corners=False, antialias=True)[0, 0])
                            else:
                                rows.append(m.to(dev).float())
                        emb = self.image_prompt_encoder.embed_masks(torch.stack(rows, 0)[:, None], o, (h, w))
                        has = torch.tensor([m is not None for m in masks_in], device=dev).view(-1, 1, 1, 1)
                        dense = torch.where(has, emb, dense)
                    src = img_c[:, ci].transpose(1, 2).reshape(o, self.d, h, w) + dense
                    pos = feats.img_pos[ci].transpose(0, 1).reshape(1, self.d, h, w).expand(o, -1, -1, -1)
                    s0, s1 = feats.img_s0[ci:ci + 1], feats.img_s1[ci:ci + 1]

                    def run_image(idx, tok, src=src, pos=pos, s0=s0, s1=s1):
                        x = src[idx]
                        n = x.shape[0]
                        with self._autocast():
                            return self.mask_decoder.forward_image(x, pos[idx], tok, s0.expand(n, -1, -1, -1),
                                                                   s1.expand(n, -1, -1, -1))

                    r = {k: v.float() for k, v in self._decode_groups(run_image, cam_tok[ci], o).items()}
                    s = self._select(r, mm_t)
                    for i, full in given.items():  # the mask itself is the output (logits +-10)
                        lo = F.interpolate(full[None, None] * 20.0 - 10.0, size=(4 * h, 4 * w), mode="bilinear",
                                           align_corners=False, antialias=True)[0, 0]
                        s["mask"][i] = lo
                        s["score"][i] = 1.0
                        r["obj"][i] = 10.0 if bool((full > 0).any()) else -10.0
                    sel_l.append(s["mask"])
                    all_l.append(r["masks"])
                    iou_l.append(s["score"])
                    ioua_l.append(r["iou"])
                    obj_l.append(r["obj"][:, 0])
                    tok_l.append(s["token"])
                out.img_logits_all = torch.stack(all_l, 1)
                out.img_iou = torch.stack(iou_l, 1)
                out.img_iou_all = torch.stack(ioua_l, 1)
                out.img_obj = torch.stack(obj_l, 1)
                sel = torch.stack(sel_l, 1)
                out.img_logits = torch.where(out.img_obj[..., None, None] > 0, sel, torch.full_like(sel, NO_OBJ_SCORE))
                best_cam = out.img_obj.argmax(1)
                tok = torch.stack(tok_l, 1)[torch.arange(o, device=dev), best_cam]
                ptr_img = self._obj_ptr(tok, out.img_obj.max(1).values)
            if feats.has_lidar:
                pyr = feats.pyr
                masks_in = [p.pts_mask if p is not None else None for p in prompts]
                dense = self.lidar_prompt_encoder.embed_masks(None, o, pyr)
                if any(m is not None for m in masks_in):
                    mi = torch.stack([m.to(dev).float() if m is not None else torch.zeros(pyr.num_points, device=dev)
                                      for m in masks_in], 0)
                    vox = None
                    if any(pts_as_out):
                        # the official model prompts its decoder with the given mask downsampled to stride 4
                        l1 = pyr.level(1)
                        base = scatter_mean_batched(mi.unsqueeze(-1), l1.point2vox, l1.coords.shape[0])
                        vox = self.mask_downsample_pts(base, pyr, 1)[..., 0]
                        vox = torch.where(torch.tensor(pts_as_out, device=dev)[:, None], vox,
                                          scatter_mean_batched(mi.unsqueeze(-1), pyr.level(4).point2vox,
                                                               pyr.num_voxels(4))[..., 0])
                    emb = self.lidar_prompt_encoder.embed_masks(mi, o, pyr, voxel_masks=vox)
                    has = torch.tensor([m is not None for m in masks_in], device=dev).view(-1, 1, 1)
                    dense = torch.where(has, emb, dense)
                src = pts_c + dense
                pos = feats.pts_pos.unsqueeze(0).expand(o, -1, -1)

                def run_lidar(idx, tok):
                    with self._autocast():
                        return self.mask_decoder.forward_lidar(src[idx], pos[idx], tok, feats.pts_s8, feats.pts_s4,
                                                               pyr)

                r = {k: v.float() for k, v in self._decode_groups(run_lidar, lidar_tok, o).items()}
                s = self._select(r, mm_t)
                for i, flag in enumerate(pts_as_out):
                    if flag:
                        m = masks_in[i].to(dev).float()
                        s["mask"][i] = m * 20.0 - 10.0
                        s["score"][i] = 1.0
                        r["obj"][i] = 10.0 if bool((m > 0).any()) else -10.0
                out.pts_logits_all = r["masks"]
                out.pts_iou = s["score"]
                out.pts_iou_all = r["iou"]
                out.pts_obj = r["obj"][:, 0]
                out.pts_logits = torch.where(out.pts_obj[:, None] > 0, s["mask"], torch.full_like(s["mask"],
                                                                                                    NO_OBJ_SCORE))
                ptr_pts = self._obj_ptr(s["token"], out.pts_obj)
        if store_memory:
            with _timed(timings, "memory_encoder", dev):
                out.new_memory = self.encode_memory(feats, out, ptr_img, ptr_pts, prompted)
        return out

    def _select(self, r: Dict[str, torch.Tensor], mm: torch.Tensor) -> Dict[str, torch.Tensor]:
        a = self.mask_decoder.select(r, True)
        b = self.mask_decoder.select(r, False)
        if self.cfg.decoder.single_mask_pointer == "first":
            b["token"] = r["tokens"][:, 0]  # the official pointer of a single-mask output, whatever mask is shown
        res = {}
        for k in ("mask", "score", "token"):
            shape = (-1,) + (1,) * (a[k].dim() - 1)
            res[k] = torch.where(mm.view(shape), a[k], b[k])
        return res

    def _multimask_clicks(self, p: Optional[ObjectPrompt]) -> int:
        """Clicks of a prompt counted against ``decoder.multimask_max_pt_num`` (``decoder.multimask_clicks``)."""
        if p is None:
            return 0
        if self.cfg.decoder.multimask_clicks == "all":
            return p.num_clicks
        n_img = sum(int(v[0].shape[0]) for v in p.img_points.values())
        return n_img if n_img else (0 if p.pts_points is None else int(p.pts_points.shape[0]))

    def _image_mask_full(self, m: torch.Tensor) -> torch.Tensor:
        """An image mask prompt as a binary ``(S, S)`` model-input mask (bilinear resize, then >= 0.5)."""
        if m.shape[-2:] != (self.image_size, self.image_size):
            m = F.interpolate(m[None, None], size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False)[0, 0]
        return (m >= 0.5).float()

    def _obj_ptr(self, token: torch.Tensor, obj_logit: torch.Tensor) -> torch.Tensor:
        ptr = self.obj_ptr_proj(token)
        lam = (obj_logit > 0).float().unsqueeze(-1)
        return lam * ptr + (1 - lam) * self.no_obj_ptr

    @staticmethod
    def _lidar_pool_cells(pyr: VoxelPyramid, pool: int) -> Tuple[torch.Tensor, int]:
        """Cell of every stride-16 token in the ``pool``-times coarser grid (cached on the pyramid), and the count."""
        key = ("memory_pool", pool)
        if key not in pyr.conv_cache:
            coarse = pyr.level(16).coords // pool
            _, inv = torch.unique(coarse, dim=0, return_inverse=True)
            pyr.conv_cache[key] = (inv, int(inv.max()) + 1 if inv.numel() else 0)
        return pyr.conv_cache[key]

    def encode_memory(self, feats: FrameFeatures, out: StepOutput, ptr_img: Optional[torch.Tensor],
                      ptr_pts: Optional[torch.Tensor], prompted: Sequence[bool]) -> List[MemoryEntry]:
        """Encode the predicted masks of every object into new memory entries (detached)."""
        mc = self.cfg.memory
        o = len(prompted)
        img_mem = pts_mem = None
        if feats.has_image:
            h, w = feats.img_hw
            c = len(feats.cams)
            lo = out.img_logits.reshape(o * c, 1, 4 * h, 4 * w)
            hi = F.interpolate(lo, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
            mask_for_mem = torch.sigmoid(hi) * mc.sigmoid_scale + mc.sigmoid_bias
            pix = feats.img_tokens.transpose(1, 2).reshape(1, c, self.d, h, w).expand(o, -1, -1, -1, -1)
            with self._autocast():
                m = self.image_memory_encoder(pix.reshape(o * c, self.d, h, w), mask_for_mem).float()
            m = m.flatten(2).transpose(1, 2).reshape(o, c, h * w, -1)
            absent = (out.img_obj <= 0).float()[..., None, None]
            img_mem = m + absent * self.img_no_obj_embed_spatial
        if feats.has_lidar:
            mask_for_mem = torch.sigmoid(out.pts_logits) * mc.sigmoid_scale + mc.sigmoid_bias
            with self._autocast():
                m = self.lidar_memory_encoder(feats.pts_tokens.unsqueeze(0).expand(o, -1, -1), mask_for_mem,
                                              feats.pyr).float()
            absent = (out.pts_obj <= 0).float()[:, None, None]
            pts_mem = m + absent * self.pts_no_obj_embed_spatial
        mem_xyz = feats.pts_xyz
        if feats.has_lidar and mc.lidar_pool > 1:
            cell, n_cells = self._lidar_pool_cells(feats.pyr, mc.lidar_pool)
            pts_mem = scatter_mean_batched(pts_mem, cell, n_cells)
            mem_xyz = scatter_mean(feats.pts_xyz, cell, n_cells)
        # like the official predictor, memories are kept in bf16 when the model runs under bf16 autocast on CUDA
        store = torch.bfloat16 if self.device.type == "cuda" and self.autocast_dtype == torch.bfloat16 else \
            torch.float32
        entries = []
        for i in range(o):
            entries.append(MemoryEntry(
                frame_idx=feats.frame_idx, is_prompted=bool(prompted[i]), pose=feats.pose, cams=feats.cams,
                img_hw=feats.img_hw,
                img_mem=None if img_mem is None else img_mem[i].detach().to(store),
                pts_mem=None if pts_mem is None else pts_mem[i].detach().to(store),
                pts_xyz=None if pts_mem is None else mem_xyz.detach(),
                obj_ptr_img=None if ptr_img is None else ptr_img[i].detach(),
                obj_ptr_pts=None if ptr_pts is None else ptr_pts[i].detach()))
        return entries
