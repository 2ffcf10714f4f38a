# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Geometry helpers of the model: point filtering, voxel pyramids, image augmentation matrices, poses.

Point-filtering rule (used by the model, the predictor and the tracker): a row of the input cloud is kept
when its xyz are finite (no NaN/inf) and within ``max_range`` metres of the LiDAR on every axis; other
feature channels that are not finite are replaced by 0. Filtered rows get ``False`` / probability 0 in
the returned per-point masks, which always have the ORIGINAL length ``N``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

LEVEL_STRIDES = (1, 2, 4, 8, 16)


def valid_point_mask(points: np.ndarray, max_range: float = 200.0) -> np.ndarray:
    """Rows with finite xyz within ``max_range`` (per axis) of the sensor."""
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f"points must be (N, C>=3), got shape {pts.shape}")
    xyz = pts[:, :3]
    with np.errstate(invalid="ignore"):
        return np.isfinite(xyz).all(axis=1) & (np.abs(np.nan_to_num(xyz, nan=np.inf)) <= max_range).all(axis=1)


def image_aug_matrix(orig_hw: Tuple[int, int], size: int) -> np.ndarray:
    """4x4 matrix taking ``(u, v, d, 1)`` of the original image to the resized ``size x size`` model input."""
    h, w = orig_hw
    m = np.eye(4, dtype=np.float64)
    m[0, 0] = size / float(w)
    m[1, 1] = size / float(h)
    return m


def transform_points(t: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
    """Apply a 4x4 transform to ``(..., 3)`` points."""
    return xyz @ t[:3, :3].transpose(0, 1).to(xyz.dtype) + t[:3, 3].to(xyz.dtype)


@dataclass
class VoxelLevel:
    """One level of the voxel pyramid (stride ``s`` base voxels)."""

    stride: int
    coords: torch.Tensor  # (V, 3) long, grid index at this stride
    keys: torch.Tensor  # (V,) long, sorted linear keys
    point2vox: torch.Tensor  # (M,) long, voxel of every kept point
    parent: Optional[torch.Tensor] = None  # (V,) long, index into the next (2x coarser) level
    child_offset: Optional[torch.Tensor] = None  # (V,) long in [0, 8)


@dataclass
class VoxelPyramid:
    """Voxelisation of one cloud at strides 1, 2, 4, 8, 16 (base voxel ``voxel_size``)."""

    valid: torch.Tensor  # (N,) bool, rows of the input that were kept
    xyz: torch.Tensor  # (M, 3) float32 kept points
    feats: torch.Tensor  # (M, F) float32 extra features of the kept points
    origin: torch.Tensor  # (3,) float32 metric position of grid index 0
    voxel_size: float
    spatial_shape: List[int]
    levels: List[VoxelLevel]
    #: (M, 3) float32 position of every kept point in base-voxel units (``grid``: ``(xyz - origin) / voxel_size``;
    #: ``official``: ``c * 0.05 / voxel_size`` of its integer 0.05 m coordinate ``c``)
    point_coords: Optional[torch.Tensor] = None
    _interp: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)
    #: per-frame structures derived from the levels by the sparse convolutions (neighbour pairs, child groups),
    #: keyed by ``(kind, stride)``; built once per pyramid and shared by every module that convolves it.
    conv_cache: Dict[Tuple[str, int], object] = field(default_factory=dict, repr=False)

    @property
    def num_points(self) -> int:
        """Number of kept points."""
        return int(self.xyz.shape[0])

    def level(self, stride: int) -> VoxelLevel:
        """Level with the given stride."""
        return self.levels[LEVEL_STRIDES.index(stride)]

    def num_voxels(self, stride: int) -> int:
        """Number of non-empty voxels at a stride."""
        return int(self.level(stride).coords.shape[0])

    def trilinear(self, stride: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Voxel-to-point interpolation at ``stride``: ``(idx, w)``, both ``(M, 8)``.

        For every kept point, the 8 voxel centres around it (the point's own voxel is always one of them) with
        trilinear weights; corners whose voxel is empty get weight 0 and the rest are renormalised, so a value
        per point is ``(values[idx] * w).sum(-1)``.
        """
        if stride in self._interp:
            return self._interp[stride]
        lv = self.level(stride)
        size = self.voxel_size * stride
        shp = [x // stride for x in self.spatial_shape]
        g = (self.xyz.double() - self.origin.double()) / size - 0.5  # position in voxel-centre units
        lo = torch.floor(g).long()
        frac = (g - lo).float()
        own_vox = lv.point2vox.clamp(min=0)
        upper = torch.tensor(shp, device=lo.device)
        idx, w = [], []
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    c = lo + torch.tensor([dx, dy, dz], device=lo.device)
                    inside = ((c >= 0) & (c < upper)).all(1)
                    key = _keys(c.clamp(min=0), shp)
                    pos = torch.searchsorted(lv.keys, key).clamp(max=lv.keys.numel() - 1)
                    hit = inside & (lv.keys[pos] == key)
                    wx = frac[:, 0] if dx else 1 - frac[:, 0]
                    wy = frac[:, 1] if dy else 1 - frac[:, 1]
                    wz = frac[:, 2] if dz else 1 - frac[:, 2]
                    idx.append(torch.where(hit, pos, own_vox))
                    w.append(torch.where(hit, wx * wy * wz, torch.zeros_like(wx)))
        idx_t, w_t = torch.stack(idx, 1), torch.stack(w, 1)
        # The own voxel is a corner, so the sum is > 0 except at exact far faces; keep it well defined there too.
        own = idx_t == own_vox[:, None]
        w_t = w_t + own.float() * 1e-6
        self._interp[stride] = _without_dead_points(idx_t, w_t / w_t.sum(1, keepdim=True), lv.point2vox)
        return self._interp[stride]

    def official_interp(self, stride: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The released SAM4D's voxel-to-point rule at ``stride`` as ``(idx, w)``, both ``(M, 4)``.

        Read from its code (``voxel_to_point`` + ``calc_ti_weights`` on torchsparse's ``(batch, x, y, z)``
        coordinates; not run here, the CUDA kernels being unavailable): a point takes its own voxel and the voxels
        ``stride`` cells further along z, along y, and along y and z (in that level's compact cells, so mostly
        absent), with the bilinear weights of its x, y position from its cell's lower corner in the order
        ``(1-fx)(1-fy), (1-fx) fy, fx (1-fy), fx fy``; absent voxels weigh 0, the rest is renormalised (+1e-8).
        The axes of the weights and of the neighbours differ: that is the official behaviour, kept as is.
        """
        key = -stride
        if key in self._interp:
            return self._interp[key]
        lv = self.level(stride)
        shp = [x // stride for x in self.spatial_shape]
        pc = self.point_coords if self.point_coords is not None else (self.xyz - self.origin) / self.voxel_size
        cell = torch.floor(pc[:, :2] / stride)
        frac = pc[:, :2] / stride - cell
        fx, fy = frac[:, 0], frac[:, 1]
        own_vox = lv.point2vox.clamp(min=0)
        own = lv.coords[own_vox]
        idx, w = [], []
        for k, (dy, dz) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            c = own + torch.tensor([0, dy * stride, dz * stride], device=own.device)
            inside = (c < torch.tensor(shp, device=c.device)).all(1)
            key_c = _keys(c.clamp(min=0), shp)
            pos = torch.searchsorted(lv.keys, key_c).clamp(max=lv.keys.numel() - 1)
            hit = inside & (lv.keys[pos] == key_c)
            wk = [(1 - fx) * (1 - fy), (1 - fx) * fy, fx * (1 - fy), fx * fy][k]
            idx.append(torch.where(hit, pos, own_vox))
            w.append(torch.where(hit, wk, torch.zeros_like(wk)))
        idx_t, w_t = torch.stack(idx, 1), torch.stack(w, 1)
        self._interp[key] = _without_dead_points(idx_t, w_t / (w_t.sum(1, keepdim=True) + 1e-8), lv.point2vox)
        return self._interp[key]


def _without_dead_points(idx: torch.Tensor, w: torch.Tensor, point2vox: torch.Tensor
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Interpolation of points without a voxel at this level (``point2vox = -1``, see ``drop_boundary``): value 0."""
    dead = point2vox < 0
    if bool(dead.any()):
        idx = torch.where(dead[:, None], torch.zeros_like(idx), idx)
        w = torch.where(dead[:, None], torch.zeros_like(w), w)
    return idx, w


def _keys(coords: torch.Tensor, shape: List[int]) -> torch.Tensor:
    return (coords[:, 0] * shape[1] + coords[:, 1]) * shape[2] + coords[:, 2]


#: Resolution of the official model's integer point coordinates (metres), before pooling to the voxel size.
OFFICIAL_POINT_RESOLUTION = 0.05


def _boundary_orphans(coords: torch.Tensor, coarse_shape: List[int]) -> torch.Tensor:
    """Voxels of a level that a kernel-2 stride-2 "valid" convolution gives no parent.

    Their parent index is not below the coarse extent ``floor(S / 2)`` (``S``: this level's extent) on some axis.
    With the base extent set to ``max + 1`` this is the official torchsparse downsampling (no spatial range given
    at the input; read from its kernel-map code) and exactly what spconv does with ``spatial_shape = max + 1``: a
    voxel on an odd extent's last (even) coordinate is dropped.
    """
    return ((coords // 2) >= torch.tensor(coarse_shape, device=coords.device)).any(1)


def build_voxel_pyramid(points: np.ndarray | torch.Tensor, voxel_size: float, num_features: int = 1,
                        max_range: float = 200.0, device: torch.device | str = "cpu",
                        quantisation: str = "grid", drop_boundary: bool = False) -> VoxelPyramid:
    """Filter a cloud (see module rule) and voxelise it at strides 1..16.

    Coarser voxel indices are ``floor(index / 2)`` of the finer level, exactly what a spconv ``SparseConv3d``
    with kernel 2, stride 2, padding 0 produces, so features of the sparse backbone can be matched by key.

    ``quantisation``: ``grid`` = ``floor((xyz - origin) / voxel_size)`` with the origin snapped to 16 voxels;
    ``official`` = the released SAM4D's rule (``lidar.quantisation``): ``c = int(xyz / 0.05)`` (truncation toward
    zero) minus its per-axis minimum, then ``floor(c * 0.05 / voxel_size)`` in float32; the origin is then the
    metric position of ``c = 0`` (used only by the centre offsets and trilinear interpolation).

    ``drop_boundary`` (``lidar.drop_boundary_voxels``, the official downsampling): the grid's extent is the cloud's
    (``max + 1`` base voxels per axis, not padded to 16) and every stride-2 step is a "valid" convolution of it, so
    voxels on the last coordinate of an odd extent get no parent (``parent = -1``) and the points under them
    ``point2vox = -1`` on every coarser level.
    """
    if quantisation not in ("grid", "official"):
        raise ValueError(f"quantisation must be 'grid' or 'official', got {quantisation!r}")
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f"points must be (N, C>=3), got shape {pts.shape}")
    valid = valid_point_mask(pts, max_range) if len(pts) else np.zeros((0,), bool)
    kept = pts[valid].astype(np.float32, copy=False)
    xyz = torch.from_numpy(np.ascontiguousarray(kept[:, :3])).to(device)
    f = np.zeros((kept.shape[0], num_features), np.float32)
    extra = min(num_features, kept.shape[1] - 3)
    if extra > 0:
        f[:, :extra] = np.nan_to_num(kept[:, 3:3 + extra], nan=0.0, posinf=0.0, neginf=0.0)
    feats = torch.from_numpy(f).to(device)
    top = LEVEL_STRIDES[-1]
    if xyz.shape[0] and quantisation == "official":
        res = OFFICIAL_POINT_RESOLUTION
        q = torch.trunc(xyz / torch.tensor(res, dtype=torch.float32)).to(torch.int32)
        qmin = q.min(0).values
        c = (q - qmin).to(torch.float32)
        pcoords = c * torch.tensor(res, dtype=torch.float32) / torch.tensor(voxel_size, dtype=torch.float32)
        c1 = torch.floor(pcoords).long()
        origin = qmin.double() * res
        extent = c1.max(0).values + 1
    elif xyz.shape[0]:
        cell = voxel_size * top
        origin = torch.floor(xyz.min(0).values.double() / cell) * cell
        pcoords = ((xyz.double() - origin) / voxel_size).float()
        c1 = torch.floor((xyz.double() - origin) / voxel_size).long()
        extent = c1.max(0).values + 1
    else:
        pcoords = torch.zeros((0, 3), dtype=torch.float32, device=device)
        origin = torch.zeros(3, dtype=torch.float64, device=device)
        c1 = torch.zeros((0, 3), dtype=torch.long, device=device)
        extent = torch.ones(3, dtype=torch.long, device=device)
    if drop_boundary:
        shape = [int(e) for e in extent.tolist()]
    else:
        shape = [int(((int(e) + top - 1) // top) * top) for e in extent.tolist()]
    levels: List[VoxelLevel] = []
    alive = torch.ones(c1.shape[0], dtype=torch.bool, device=device)  # points under a voxel of every level so far
    for s in LEVEL_STRIDES:
        if levels and drop_boundary:
            fine = levels[-1]
            orphan = _boundary_orphans(fine.coords, [x // s for x in shape])
            if orphan.numel():
                alive = alive & ~orphan[fine.point2vox.clamp(min=0)]
            else:  # a level emptied by the drop (a cloud under 2 voxels thick at some stride): nothing below
                alive = torch.zeros_like(alive)
        cs = c1 // s
        shp = [x // s for x in shape]
        keys = _keys(cs, shp)
        ukeys, inv = torch.unique(keys[alive], sorted=True, return_inverse=True)
        coords = torch.zeros((ukeys.shape[0], 3), dtype=torch.long, device=device)
        coords[inv] = cs[alive]
        p2v = torch.full((c1.shape[0],), -1, dtype=torch.long, device=device)
        p2v[alive] = inv
        levels.append(VoxelLevel(stride=s, coords=coords, keys=ukeys, point2vox=p2v))
    for i in range(len(levels) - 1):
        fine, coarse = levels[i], levels[i + 1]
        shp = [x // coarse.stride for x in shape]
        pk = _keys(fine.coords // 2, shp)
        fine.parent = torch.searchsorted(coarse.keys, pk)
        if drop_boundary:
            fine.parent = torch.where(_boundary_orphans(fine.coords, shp), torch.full_like(fine.parent, -1),
                                      fine.parent)
        off = fine.coords % 2
        fine.child_offset = off[:, 0] * 4 + off[:, 1] * 2 + off[:, 2]
    return VoxelPyramid(valid=torch.from_numpy(valid).to(device), xyz=xyz, feats=feats,
                        origin=origin.float(), voxel_size=float(voxel_size), spatial_shape=shape, levels=levels,
                        point_coords=pcoords)


def scatter_mean(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """Mean of ``values`` (M, C) grouped by ``index`` (M,) into ``size`` rows (empty rows are 0; rows with a
    negative index are left out).
    """
    if bool((index < 0).any()):
        keep = index >= 0
        values, index = values[keep], index[keep]
    out = values.new_zeros((size,) + tuple(values.shape[1:]))
    cnt = values.new_zeros((size,))
    out.index_add_(0, index, values)
    cnt.index_add_(0, index, torch.ones_like(index, dtype=values.dtype))
    return out / cnt.clamp(min=1).view((-1,) + (1,) * (values.dim() - 1))


def scatter_mean_batched(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """Like :func:`scatter_mean` for ``values`` (B, M, C) grouped along dim 1."""
    if bool((index < 0).any()):
        keep = index >= 0
        values, index = values[:, keep], index[keep]
    out = values.new_zeros((values.shape[0], size) + tuple(values.shape[2:]))
    cnt = values.new_zeros((size,))
    out.index_add_(1, index, values)
    cnt.index_add_(0, index, torch.ones_like(index, dtype=values.dtype))
    return out / cnt.clamp(min=1).view((1, -1) + (1,) * (values.dim() - 2))


def rotation_log(r: torch.Tensor) -> torch.Tensor:
    """Axis-angle vectors ``(B, 3)`` of rotation matrices ``(B, 3, 3)``."""
    tr = r[:, 0, 0] + r[:, 1, 1] + r[:, 2, 2]
    theta = torch.arccos(torch.clamp((tr - 1) / 2, -1 + 1e-6, 1 - 1e-6))
    w = torch.stack([r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0], r[:, 1, 0] - r[:, 0, 1]], dim=1) / 2
    s = torch.sin(theta)
    scale = torch.where(theta > 1e-6, theta / s.clamp(min=1e-12), torch.ones_like(theta))
    return w * scale[:, None]
