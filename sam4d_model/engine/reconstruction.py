# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Stage 2: 4D reconstruction of a drive as a sparse voxel map with static and dynamic parts separated.

All sweeps are moved into the world frame (``lidar2world`` of each frame; coordinates are taken relative to the first
frame's position to keep float32 precise) and voxelised. Each voxel is tested for motion with a *seen-through* test:
every other sweep, as a spherical range image, is asked whether it saw beyond the voxel (range clearly larger on all
neighbouring bins); a voxel seen through in several sweeps (and more often than it was occupied) held something that
moved. Dynamic voxels then grow (``dyn_grow_dist`` > 0) into the short-lived voxels they touch at about the same
time (parts of moving objects the test misses, e.g. legs with the ground right behind them). Static voxels become one
map *element* each (accumulating all frames); dynamic voxels are kept per frame (one element per ``(voxel, frame)``),
so moving objects do not smear over the map and only occlude in their own frame.

For each element the map keeps its centroid, the frame (``-1`` = static), its points (CSR ``(frame, point index)``)
and a ground flag: near a local ground estimate and flat (an element whose points spread upright, such as the base of
a cone or a foot, is not ground however low it is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import cv2
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .config import EngineConfig

_OFF = 1 << 20


def rigid_transform(xyz: np.ndarray, rot: np.ndarray, trans=None) -> np.ndarray:
    """``xyz @ rot.T + trans`` in float64, column by column (no BLAS: its threads oversubscribe busy machines)."""
    xyz = np.asarray(xyz, np.float64)
    out = np.empty((len(xyz), 3), np.float64)
    for i in range(3):
        out[:, i] = xyz[:, 0] * rot[i, 0] + xyz[:, 1] * rot[i, 1] + xyz[:, 2] * rot[i, 2]
        if trans is not None:
            out[:, i] += trans[i]
    return out


def voxel_keys(xyz: np.ndarray, voxel: float) -> np.ndarray:
    """Pack integer voxel coordinates into one int64 per point (+-2^20 voxels per axis)."""
    c = np.floor(xyz / voxel).astype(np.int64) + _OFF
    return (c[:, 0] << 42) | (c[:, 1] << 21) | c[:, 2]


class TileIndex:
    """Positions grouped by square xy tiles, for fast "everything within R of p" queries."""

    def __init__(self, xy: np.ndarray, tile: float):
        self.tile = float(tile)
        cell = np.floor(xy / self.tile).astype(np.int64)
        key = (cell[:, 0] + _OFF) * (4 * _OFF) + (cell[:, 1] + _OFF)
        self.order = np.argsort(key, kind="stable").astype(np.int64)
        sk = key[self.order]
        self.keys, self.starts = np.unique(sk, return_index=True)
        self.ends = np.append(self.starts[1:], len(sk))
        self.cx = self.keys // (4 * _OFF) - _OFF
        self.cy = self.keys % (4 * _OFF) - _OFF

    def query(self, center: np.ndarray, radius: float) -> np.ndarray:
        """Indices of positions in tiles that intersect the disc (a superset of the disc)."""
        t = self.tile
        dx = np.maximum(np.abs((self.cx + 0.5) * t - center[0]) - t / 2, 0)
        dy = np.maximum(np.abs((self.cy + 0.5) * t - center[1]) - t / 2, 0)
        sel = np.flatnonzero(dx * dx + dy * dy <= radius * radius)
        if sel.size == 0:
            return np.zeros(0, np.int64)
        return np.concatenate([self.order[self.starts[i]:self.ends[i]] for i in sel])


@dataclass
class RangeImage:
    """Spherical range image of one sweep (min range per bin, then min over 3x3 neighbours)."""

    rmin: np.ndarray  # (n_el, n_az) float32, inf where no return
    el0: float
    el_res: float
    az_res: float

    @classmethod
    def from_points(cls, xyz: np.ndarray, az_res_deg: float, el_res_deg: float) -> "RangeImage":
        az_res, el_res = math.radians(az_res_deg), math.radians(el_res_deg)
        r = np.linalg.norm(xyz, axis=1)
        az = np.arctan2(xyz[:, 1], xyz[:, 0])
        el = np.arcsin(np.clip(xyz[:, 2] / np.maximum(r, 1e-6), -1, 1))
        el0 = float(el.min()) - el_res
        n_el = int((float(el.max()) - el0) / el_res) + 3
        n_az = int(math.ceil(2 * math.pi / az_res))
        iy = ((el - el0) / el_res).astype(np.int64)
        ix = ((az + math.pi) / az_res).astype(np.int64) % n_az
        img = np.full(n_el * n_az, np.inf, np.float32)
        np.minimum.at(img, iy * n_az + ix, r.astype(np.float32))
        img = img.reshape(n_el, n_az)
        img = ndimage.minimum_filter(img, size=3, mode=("nearest", "wrap"))
        return cls(img, el0, el_res, az_res)

    def lookup(self, xyz: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(range of the query points, image range at their bins, known)`` (unknown: outside the sweep's FOV)."""
        r = np.linalg.norm(xyz, axis=1)
        az = np.arctan2(xyz[:, 1], xyz[:, 0])
        el = np.arcsin(np.clip(xyz[:, 2] / np.maximum(r, 1e-6), -1, 1))
        iy = np.floor((el - self.el0) / self.el_res).astype(np.int64)
        n_el, n_az = self.rmin.shape
        known = (iy >= 1) & (iy < n_el - 1)
        ix = ((az + math.pi) / self.az_res).astype(np.int64) % n_az
        val = np.full(len(r), -np.inf, np.float32)
        val[known] = self.rmin[iy[known], ix[known]]
        return r, val, known


@dataclass
class VoxelMap:
    """The reconstructed drive (see the module docstring). World coordinates are relative to ``origin``."""

    voxel_size: float
    num_frames: int
    origin: np.ndarray  # (3,) world position subtracted from every coordinate
    lidar2world: np.ndarray  # (T, 4, 4) poses, translation relative to origin
    point_offsets: np.ndarray  # (T + 1,) frame t's points are [off[t], off[t+1]) of the concatenation
    point_element: np.ndarray  # (P,) int32 element of each point, -1 = dropped (too close / too far / invalid)
    element_xyz: np.ndarray  # (E, 3) float32 centroids
    element_frame: np.ndarray  # (E,) int32, -1 = static
    element_npts: np.ndarray  # (E,) int32
    element_ground: np.ndarray  # (E,) bool
    num_static: int  # elements [0, num_static) are static, the rest dynamic sorted by frame
    dyn_offsets: np.ndarray  # (T + 1,) dynamic elements of frame t: num_static + [dyn_off[t], dyn_off[t+1])
    stats: Dict[str, float] = field(default_factory=dict)
    _tiles: "TileIndex" = None
    _elem_ptr: np.ndarray = None
    _elem_pts: np.ndarray = None

    @property
    def num_elements(self) -> int:
        return int(self.element_xyz.shape[0])

    @property
    def element_dynamic(self) -> np.ndarray:
        return self.element_frame >= 0

    def frame_points(self, t: int) -> slice:
        """Slice of frame ``t`` in the concatenated per-point arrays."""
        return slice(int(self.point_offsets[t]), int(self.point_offsets[t + 1]))

    def dynamic_elements(self, t: int) -> np.ndarray:
        """Element ids of the dynamic elements of frame ``t``."""
        return np.arange(self.num_static + self.dyn_offsets[t], self.num_static + self.dyn_offsets[t + 1])

    def static_near(self, center: np.ndarray, radius: float) -> np.ndarray:
        """Static element ids in tiles within ``radius`` (xy) of ``center``."""
        if self._tiles is None:
            self._tiles = TileIndex(self.element_xyz[:self.num_static, :2], 16.0)
        return self._tiles.query(center, radius)

    def element_points(self, e: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(frames, point indices within their frame)`` of element ``e``."""
        if self._elem_ptr is None:
            valid = np.flatnonzero(self.point_element >= 0)
            order = valid[np.argsort(self.point_element[valid], kind="stable")]
            self._elem_pts = order
            self._elem_ptr = np.searchsorted(self.point_element[order], np.arange(self.num_elements + 1))
        idx = self._elem_pts[self._elem_ptr[e]:self._elem_ptr[e + 1]]
        frames = np.searchsorted(self.point_offsets, idx, side="right") - 1
        return frames, idx - self.point_offsets[frames]


def _ground_flags(xyz: np.ndarray, cfg: EngineConfig) -> np.ndarray:
    """Elements within ``ground_height`` above the local ground (low percentile per cell, min over a window)."""
    if len(xyz) == 0:
        return np.zeros(0, bool)
    g = cfg.ground_cell
    cell = np.floor(xyz[:, :2] / g).astype(np.int64)
    lo = cell.min(0)
    cell -= lo
    shape = cell.max(0) + 1
    flat = cell[:, 0] * shape[1] + cell[:, 1]
    order = np.lexsort((xyz[:, 2], flat))
    fs = flat[order]
    starts = np.flatnonzero(np.r_[True, fs[1:] != fs[:-1]])
    counts = np.diff(np.r_[starts, len(fs)])
    pick = order[starts + (counts * 0.05).astype(np.int64)]  # 5th percentile height of the cell
    grid = np.full(int(shape[0] * shape[1]), np.inf, np.float32)
    grid[fs[starts]] = xyz[pick, 2]
    grid = ndimage.minimum_filter(grid.reshape(int(shape[0]), int(shape[1])), size=cfg.ground_window,
                                  mode="constant", cval=np.inf)
    return xyz[:, 2] - grid.reshape(-1)[flat] < cfg.ground_height


def _upright(xyz: np.ndarray, pe: np.ndarray, exyz: np.ndarray, npts: np.ndarray, cfg: EngineConfig) -> np.ndarray:
    """Elements whose points spread vertically (std of z) more than ``ground_flat_ratio`` x their horizontal spread
    (and more than ``ground_flat_min_std``): upright surfaces such as the base of a cone or a foot, which the height
    rule alone would call ground. ``xyz`` (P, 3) points, ``pe`` their elements, ``exyz`` element centroids.
    """
    n_el = len(exyz)
    d = xyz.astype(np.float64) - exyz[pe]
    var = np.stack([np.bincount(pe, d[:, k] * d[:, k], n_el) for k in range(3)], 1) / np.maximum(npts, 1)[:, None]
    std_z = np.sqrt(var[:, 2])
    std_xy = np.sqrt(0.5 * (var[:, 0] + var[:, 1]))
    return (npts >= 3) & (std_z > cfg.ground_flat_ratio * std_xy) & (std_z > cfg.ground_flat_min_std)


def _grow_dynamic(vxyz: np.ndarray, dyn: np.ndarray, n_occ: np.ndarray, n_confirm: np.ndarray,
                  frame_voxels: List[np.ndarray], cfg: EngineConfig) -> np.ndarray:
    """Voxels of moving objects that the seen-through test missed (legs in front of the ground, the body of a slow
    walker, which keeps hiding its own voxels): non-ground voxels occupied in at most ``dyn_grow_max_occ`` frames, and
    in at most a quarter of the frames that confirmed a surface at their range, that, in one of them, connect to a
    dynamic voxel occupied within ``dyn_grow_frames`` frames of it (links up to ``dyn_grow_dist``, also through other
    such voxels). ``frame_voxels[t]`` are the voxels occupied in frame ``t``.
    """
    cand = ~dyn & (n_occ <= cfg.dyn_grow_max_occ) & (n_confirm >= 4 * n_occ) & ~_ground_flags(vxyz, cfg)
    grown = np.zeros(len(dyn), bool)
    g = cfg.dyn_grow_frames
    for t, v in enumerate(frame_voxels):
        near = np.concatenate(frame_voxels[max(0, t - g):t + g + 1])
        seeds, c = np.unique(near[dyn[near]]), v[cand[v]]
        if len(seeds) == 0 or len(c) == 0:
            continue
        n = len(seeds) + len(c)
        pairs = cKDTree(vxyz[np.concatenate([seeds, c])]).query_pairs(cfg.dyn_grow_dist, output_type="ndarray")
        _, lab = connected_components(coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])),
                                                 shape=(n, n)), directed=False)
        moving = np.zeros(n, bool)
        moving[lab[:len(seeds)]] = True
        grown[c[moving[lab[len(seeds):]]]] = True
    return grown


def build_voxel_map(sweeps: List[np.ndarray], poses: List[np.ndarray], cfg: EngineConfig) -> VoxelMap:
    """Build the map from per-frame LiDAR-frame points ``(N_t, >=3)`` and ``lidar2world`` poses (4x4)."""
    t_n = len(sweeps)
    if t_n == 0:
        raise ValueError("no frames")
    poses = np.stack([np.asarray(p, np.float64) for p in poses])
    origin = poses[0, :3, 3].copy()
    poses_rel = poses.copy()
    poses_rel[:, :3, 3] -= origin
    counts = np.array([len(s) for s in sweeps], np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    p_total = int(offsets[-1])
    xyz = np.empty((p_total, 3), np.float32)
    keep = np.zeros(p_total, bool)
    frame_of = np.repeat(np.arange(t_n, dtype=np.int32), counts)
    ranges: List[RangeImage] = []
    for t, s in enumerate(sweeps):
        p = np.asarray(s[:, :3], np.float64)
        r = np.linalg.norm(p, axis=1)
        ok = np.isfinite(r) & (r >= cfg.min_range) & (r <= cfg.max_range)
        sl = slice(offsets[t], offsets[t + 1])
        xyz[sl] = rigid_transform(p, poses_rel[t, :3, :3], poses_rel[t, :3, 3])
        keep[sl] = ok
        if cfg.detect_dynamic and ok.any():
            ranges.append(RangeImage.from_points(p[ok], cfg.range_az_res_deg, cfg.range_el_res_deg))
        else:
            ranges.append(None)
    kidx = np.flatnonzero(keep)
    keys = voxel_keys(xyz[kidx], cfg.voxel_size)
    vkeys, vinv = np.unique(keys, return_inverse=True)
    n_vox = len(vkeys)
    vcnt = np.bincount(vinv, minlength=n_vox).astype(np.float64)
    vxyz = np.stack([np.bincount(vinv, xyz[kidx, k], n_vox) for k in range(3)], 1) / vcnt[:, None]
    vxyz = vxyz.astype(np.float32)
    fr = frame_of[kidx]
    occ_pairs = np.unique(vinv.astype(np.int64) * t_n + fr)
    occ_vox = (occ_pairs // t_n).astype(np.int64)
    n_occ = np.bincount(occ_vox, minlength=n_vox)

    dyn = np.zeros(n_vox, bool)
    n_through = np.zeros(n_vox, np.int32)
    n_confirm = np.zeros(n_vox, np.int32)
    if cfg.detect_dynamic and t_n > 1:
        tiles = TileIndex(vxyz[:, :2], cfg.tile_size)
        occ_frame = (occ_pairs % t_n).astype(np.int64)
        occ_by_frame = np.argsort(occ_frame, kind="stable")
        occ_off = np.searchsorted(occ_frame[occ_by_frame], np.arange(t_n + 1))
        mark = np.full(n_vox, -1, np.int32)
        for t in range(0, t_n, max(1, cfg.dyn_frame_step)):
            ri = ranges[t]
            if ri is None:
                continue
            o = poses_rel[t, :3, 3]
            cand = tiles.query(o[:2], cfg.dyn_max_range)
            if cand.size == 0:
                continue
            mark[occ_vox[occ_by_frame[occ_off[t]:occ_off[t + 1]]]] = t
            cand = cand[mark[cand] != t]
            loc = rigid_transform(vxyz[cand].astype(np.float64) - o, poses_rel[t, :3, :3].T)
            r, val, known = ri.lookup(loc)
            thr = r + cfg.dyn_margin + cfg.dyn_margin_rel * r
            inr = known & (r > cfg.min_range) & (r < cfg.dyn_max_range)
            through = inr & (val > thr)
            n_through[cand[through]] += 1
            n_confirm[cand[inr & ~through & (val >= 2 * r - thr)]] += 1
        dyn = ((n_through >= cfg.dyn_min_through) & (n_through >= cfg.dyn_ratio * n_occ)
               & (n_through >= cfg.dyn_confirm_ratio * n_confirm))
        if cfg.dyn_grow_dist > 0:
            frame_voxels = [occ_vox[occ_by_frame[occ_off[t]:occ_off[t + 1]]] for t in range(t_n)]
            dyn |= _grow_dynamic(vxyz, dyn, n_occ, n_confirm, frame_voxels, cfg)

    # elements: static voxels, then dynamic (voxel, frame) pairs sorted by frame
    static_ids = np.flatnonzero(~dyn)
    n_static = len(static_ids)
    vox2el = np.full(n_vox, -1, np.int64)
    vox2el[static_ids] = np.arange(n_static)
    point_element = np.full(p_total, -1, np.int32)
    pd = dyn[vinv]
    point_element[kidx[~pd]] = vox2el[vinv[~pd]]
    didx = kidx[pd]
    dkey = frame_of[didx].astype(np.int64) * n_vox + vinv[pd]
    dkeys, dinv = np.unique(dkey, return_inverse=True)
    point_element[didx] = n_static + dinv
    n_el = n_static + len(dkeys)
    valid = np.flatnonzero(point_element >= 0)
    pe = point_element[valid]
    npts = np.bincount(pe, minlength=n_el)
    exyz = (np.stack([np.bincount(pe, xyz[valid, k], n_el) for k in range(3)], 1)
            / np.maximum(npts, 1)[:, None]).astype(np.float32)
    eframe = np.full(n_el, -1, np.int32)
    eframe[n_static:] = (dkeys // n_vox).astype(np.int32)
    dyn_off = np.searchsorted(eframe[n_static:], np.arange(t_n + 1)).astype(np.int64)
    ground = _ground_flags(exyz, cfg)
    if cfg.ground_flat_ratio > 0:
        ground &= ~_upright(xyz[valid], pe, exyz, npts, cfg)
    stats = {"points": float(len(kidx)), "voxels": float(n_vox), "dynamic_voxels": float(dyn.sum()),
             "static_elements": float(n_static), "dynamic_elements": float(len(dkeys)),
             "ground_elements": float(ground.sum())}
    return VoxelMap(cfg.voxel_size, t_n, origin, poses_rel, offsets, point_element, exyz, eframe,
                    npts.astype(np.int32), ground, n_static, dyn_off, stats)


def splat_zbuffer(u: np.ndarray, v: np.ndarray, z: np.ndarray, radius: np.ndarray, width: int, height: int
                  ) -> np.ndarray:
    """Depth image of points splatted as squares of half-size ``radius`` px (min depth wins), ``inf`` = empty."""
    zb = np.full((height, width), np.inf, np.float32)
    pix = v.astype(np.int64) * width + u.astype(np.int64)
    for r in np.unique(radius):
        sel = radius == r
        img = np.full(height * width, np.inf, np.float32)
        np.minimum.at(img, pix[sel], z[sel].astype(np.float32))
        img = img.reshape(height, width)
        if r > 0:
            img = cv2.erode(img, np.ones((2 * int(r) + 1, 2 * int(r) + 1), np.uint8), borderType=cv2.BORDER_REPLICATE)
        np.minimum(zb, img, out=zb)
    return zb
