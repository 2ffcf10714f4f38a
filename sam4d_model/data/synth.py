# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Procedural driving scenes with exact ground truth (camera + spinning LiDAR), rendered by vectorised ray casting.

A drive is a curved road (lanes, parking strips, sidewalks with poles and trees, buildings behind them) populated with
parked and moving cars and trucks, pedestrians, cyclists and traffic cones; the ego car drives along its lane at
5-15 m/s. Every object is a union of analytic primitives (oriented boxes, vertical cylinders/cones, spheres) over a
ground plane, so ray casting is exact: each LiDAR point and each pixel knows which object it hit (visible masks,
no amodal completion), at what depth, and every pose is exact.

Conventions: world/odom frame z up; ``base_link`` on the ground under the ego's rear axle, x forward; the LiDAR
sweep is rendered at its stamp (points are motion-compensated, the per-point ``time`` field only encodes the azimuth
firing time); the camera is rendered at the same instant (the bag stamps it a few ms later).
Everything is a deterministic function of ``(seed, config)``; frames are independent of each other.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..types import CameraFrame, Frame, FrameLabels
from .geometry import invert_transform, make_transform, rot_y, rot_z

#: Class names of synthetic objects; index = class id used in ``FrameLabels.point_class`` (0 = no object).
CLASS_NAMES = ["none", "car", "truck", "pedestrian", "cyclist", "pole", "tree", "traffic_cone", "building",
               "bush", "fence", "bin", "bollard", "barrier"]
CLASS_IDS = {n: i for i, n in enumerate(CLASS_NAMES)}

#: Point columns of synthetic sweeps (all float32 in the arrays; ``ring`` holds small integers).
POINT_FIELDS = ("x", "y", "z", "intensity", "ring", "time")

CAMERA_NAME = "FRONT"
LIDAR_NAME = "LiDAR_TOP"
_EPS = 1e-4


@dataclass
class SynthConfig:
    """Parameters of a synthetic drive (sensor layout, scene density, timing). All lengths in metres."""

    # camera (pinhole, no distortion)
    width: int = 640
    height: int = 480
    hfov_deg: float = 80.0
    camera_xyz: Tuple[float, float, float] = (1.5, 0.0, 1.65)  # in base_link (top of the windscreen)
    camera_pitch_deg: float = 3.0  # positive = looking down
    # LiDAR (spinning, rendered at the sweep stamp)
    beams: int = 64
    azimuths: int = 1024
    elev_min_deg: float = -25.0
    elev_max_deg: float = 3.0
    lidar_xyz: Tuple[float, float, float] = (1.3, 0.0, 1.8)  # in base_link (roof)
    max_range: float = 100.0
    min_range: float = 1.0
    range_noise_std: float = 0.005
    range_noise_clip: float = 0.015  # keeps every point within 1.5 cm of the true surface
    dropout: float = 0.03
    #: extra LiDAR dropout on object surfaces, a fixed share per object in [0, object_dropout] (dark paint, glass,
    #: wet or absorbing surfaces: real cars hold 5-8x fewer points than rendered ones at 10-30 m, synth_vs_real.py)
    object_dropout: float = 0.0
    #: beam elevations: ``uniform`` spacing, or ``nonuniform`` (denser near the horizon, like HDL-64/VLP-32C)
    elev_spacing: str = "uniform"
    lidar_pitch_deg: float = 0.0  # mounting tilt of the LiDAR about its y axis (positive = looking down)
    #: ``default`` (reflectivity x incidence x range falloff, 0..1), ``none`` (all 0), ``raw255`` (same x 255,
    #: like nuScenes), ``saturated`` (gamma 0.5, clipped: bright and flat)
    intensity_model: str = "default"
    sweep_skew: bool = False  # points at their firing time (ego motion over the sweep not compensated)
    # camera sensor effects (defaults: none)
    exposure: float = 1.0  # gain on the linear image
    white_balance: Tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel gains
    blur_sigma: float = 0.0  # px, Gaussian
    jpeg_quality: int = 0  # > 0: JPEG round trip at this quality (artefacts in the image itself)
    saturation: float = 1.0  # colour saturation gain (real nuScenes frames are far greyer than the default)
    overcast: float = 0.0  # 0 clear blue sky and directional sun, 1 grey sky and flat light
    # timing
    rate_hz: float = 10.0
    start_time: float = 1_700_000_000.0
    # scene
    speed_range: Tuple[float, float] = (5.0, 15.0)
    lanes_per_direction: int = 2
    lane_width: float = 3.5
    parking_width: float = 2.3
    sidewalk_width: float = 3.5
    max_curvature: float = 1.0 / 70.0
    building_density: float = 1.0
    car_density: float = 1.0
    pedestrian_density: float = 1.0
    #: street clutter per metre of sidewalk (bushes, low walls and fences, bins, bollards, barriers); 0 = none.
    #: Real clouds hold 2-4x more points 0.2-2 m above the ground than the default scenes (synth_vs_real.py).
    clutter_density: float = 0.0
    parking_gap: Tuple[float, float] = (2.5, 2.5)  # m between parked cars (uniform range; small = occluding rows)
    render_distance: float = 160.0
    pixel_noise: float = 2.0  # std of additive image noise, in 8-bit levels

    @property
    def intrinsics(self) -> np.ndarray:
        """3x3 pinhole matrix (pixel centres at integer coordinates)."""
        f = (self.width / 2.0) / math.tan(math.radians(self.hfov_deg) / 2.0)
        return np.array([[f, 0.0, (self.width - 1) / 2.0], [0.0, f, (self.height - 1) / 2.0], [0.0, 0.0, 1.0]])

    @property
    def base2lidar(self) -> np.ndarray:
        """``T_base_lidar`` (LiDAR axes = base_link axes, tilted by ``lidar_pitch_deg``)."""
        return make_transform(rot_y(math.radians(self.lidar_pitch_deg)), self.lidar_xyz)

    @property
    def base2camera(self) -> np.ndarray:
        """``T_base_camera_optical``."""
        r0 = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # columns: cam x, y, z in base
        return make_transform(rot_y(math.radians(self.camera_pitch_deg)) @ r0, self.camera_xyz)

    @property
    def camera2lidar(self) -> np.ndarray:
        """``T_lidar_camera_optical``."""
        return invert_transform(self.base2lidar) @ self.base2camera

    def to_dict(self) -> dict:
        """Plain-dict form (for metadata)."""
        return asdict(self)


def sample_config(**overrides) -> SynthConfig:
    """Smaller/faster config used by the bundled sample drive and the tests."""
    base = dict(width=640, height=480, beams=64, azimuths=1024)
    base.update(overrides)
    return SynthConfig(**base)


#: LiDAR families of :func:`random_config`: beams -> (elevation min range, elevation max range, azimuths range)
_LIDARS = {16: ((-16.0, -14.0), (14.0, 16.0), (1500, 2048)),
           32: ((-31.0, -24.0), (8.0, 11.0), (1000, 1800)),
           64: ((-25.0, -23.0), (2.0, 3.5), (800, 1600)),
           128: ((-26.0, -18.0), (10.0, 16.0), (700, 1100))}
#: camera shapes of :func:`random_config` (aspect ratios of nuScenes 1600x900, KITTI 1242x375, VGA, Waymo-like),
#: rendered at a size the 384-768 px model input does not lose detail from
_CAMERAS = [(800, 450), (960, 540), (828, 250), (1024, 310), (640, 480), (768, 512)]


def random_config(seed: int, **overrides) -> SynthConfig:
    """A randomised sensor rig and scene density for drive ``seed`` (deterministic): 16/32/64/128-beam LiDARs
    with their vertical FOVs, uniform or non-uniform beam spacing, azimuth resolution, mounting height and tilt,
    range noise, 5-30 % dropout, intensity model, sweep skew (20k-150k points); camera size, field of view,
    height and pitch, exposure, white balance, saturation, overcast sky, noise, blur, JPEG; object densities,
    street clutter and parking-row gaps. ``overrides`` win.
    """
    rng = np.random.default_rng([int(seed), 424242])
    beams = int(rng.choice([16, 32, 64, 128], p=[0.15, 0.35, 0.35, 0.15]))
    (e0, e1), (f0, f1), (a0, a1) = _LIDARS[beams]
    w, h = _CAMERAS[int(rng.integers(len(_CAMERAS)))]
    cam_h = float(rng.uniform(1.3, 1.9))
    noise_std = float(rng.uniform(0.005, 0.03))
    cfg = dict(
        width=w, height=h, hfov_deg=float(rng.uniform(60.0, 95.0)),
        camera_xyz=(float(rng.uniform(1.0, 1.8)), float(rng.uniform(-0.2, 0.2)), cam_h),
        camera_pitch_deg=float(rng.uniform(-2.0, 5.0)),
        beams=beams, azimuths=int(rng.integers(a0, a1 + 1)),
        elev_min_deg=float(rng.uniform(e0, e1)), elev_max_deg=float(rng.uniform(f0, f1)),
        elev_spacing=str(rng.choice(["uniform", "nonuniform"])),
        lidar_xyz=(float(rng.uniform(0.8, 1.5)), 0.0, float(rng.uniform(1.5, 2.1))),
        lidar_pitch_deg=float(rng.uniform(-2.0, 2.0)),
        range_noise_std=noise_std, range_noise_clip=3.0 * noise_std,
        dropout=float(rng.uniform(0.05, 0.30)), object_dropout=float(rng.uniform(0.0, 0.8)),
        intensity_model=str(rng.choice(["default", "none", "raw255", "saturated"], p=[0.4, 0.2, 0.2, 0.2])),
        sweep_skew=bool(rng.uniform() < 0.5),
        exposure=float(np.exp(rng.uniform(np.log(0.55), np.log(2.2)))),
        white_balance=tuple(float(x) for x in rng.uniform(0.85, 1.15, 3)),
        blur_sigma=float(rng.choice([0.0, rng.uniform(0.4, 1.5)])),
        jpeg_quality=int(rng.choice([0, int(rng.integers(35, 95))])),
        pixel_noise=float(rng.uniform(1.0, 8.0)),
        saturation=float(rng.uniform(0.2, 1.2)), overcast=float(rng.choice([0.0, rng.uniform(0.3, 1.0)])),
        clutter_density=float(rng.uniform(0.5, 2.0)), parking_gap=(0.4, float(rng.uniform(0.8, 2.5))),
        car_density=float(rng.uniform(0.5, 2.0)), pedestrian_density=float(rng.uniform(0.3, 2.0)),
        building_density=float(rng.uniform(0.5, 1.5)), speed_range=(2.0, float(rng.uniform(4.0, 15.0))),
    )
    cfg.update(overrides)
    return SynthConfig(**cfg)


# ----------------------------------------------------------------------------------------------------------------
# primitives
# ----------------------------------------------------------------------------------------------------------------
BOX, FRUSTUM, SPHERE = 0, 1, 2
# texture kinds
TEX_PLAIN, TEX_BUILDING, TEX_CARBODY, TEX_GLASS, TEX_CLOTHES, TEX_CONE, TEX_FOLIAGE, TEX_METAL = range(8)


@dataclass
class Part:
    """A primitive in object-local coordinates (x forward, z up, origin on the ground at the object's centre)."""

    kind: int
    center: Tuple[float, float, float]  # BOX/SPHERE centre; FRUSTUM: (x, y, z_bottom)
    size: Tuple[float, ...]  # BOX: half sizes; FRUSTUM: (r_bottom, r_top, height); SPHERE: (r,)
    albedo: Tuple[float, float, float]
    refl: float  # LiDAR reflectivity 0..1
    tex: int = TEX_PLAIN
    albedo2: Tuple[float, float, float] = (0.1, 0.1, 0.1)  # secondary colour for textured parts


@dataclass
class SceneObject:
    """An object instance: parts + motion along the road (or static)."""

    obj_id: int
    cls: str
    parts: List[Part]
    s0: float
    lateral: float
    speed: float = 0.0  # along +s if heading_flip is False
    heading_flip: bool = False
    yaw_offset: float = 0.0


@dataclass
class Prim:
    """A primitive placed in the world at one instant."""

    kind: int
    obj_index: int
    part: Part
    center: np.ndarray
    rot: np.ndarray  # world-from-local rotation (boxes; identity yaw for others)
    size: np.ndarray
    bc: np.ndarray  # bounding sphere
    br: float


class Road:
    """Curved road centreline sampled every ``ds`` metres; lateral offset positive to the left of +s."""

    def __init__(self, rng: np.random.Generator, s_min: float, s_max: float, max_curv: float, ds: float = 0.5):
        self.s = np.arange(s_min, s_max + ds, ds)
        a1, a2 = rng.uniform(0.3, 1.0) * max_curv, rng.uniform(0.0, 0.5) * max_curv
        l1, l2 = rng.uniform(150, 300), rng.uniform(60, 120)
        p1, p2 = rng.uniform(0, 2 * np.pi, 2)
        scale = max_curv / max(a1 + a2, 1e-9)
        kappa = scale * (a1 * np.sin(2 * np.pi * self.s / l1 + p1) + a2 * np.sin(2 * np.pi * self.s / l2 + p2))
        i0 = int(np.argmin(np.abs(self.s)))
        heading = np.concatenate([[0.0], np.cumsum(0.5 * (kappa[1:] + kappa[:-1]) * ds)])
        heading -= heading[i0]
        x = np.concatenate([[0.0], np.cumsum(0.5 * (np.cos(heading[1:]) + np.cos(heading[:-1])) * ds)])
        y = np.concatenate([[0.0], np.cumsum(0.5 * (np.sin(heading[1:]) + np.sin(heading[:-1])) * ds)])
        self.x, self.y, self.heading = x - x[i0], y - y[i0], heading
        self._tree = None

    def pose(self, s, lateral) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World ``(x, y, heading)`` of the point at arc length ``s`` and signed lateral offset."""
        s = np.asarray(s, dtype=np.float64)
        x = np.interp(s, self.s, self.x)
        y = np.interp(s, self.s, self.y)
        h = np.interp(s, self.s, self.heading)
        return x - np.sin(h) * lateral, y + np.cos(h) * lateral, h

    def frenet(self, xy: np.ndarray, s_guess: Optional[float] = None, heading_guess: float = 0.0,
               origin: Optional[np.ndarray] = None, iters: int = 4) -> Tuple[np.ndarray, np.ndarray]:
        """``(s, lateral)`` of world points: projection onto the centreline by Newton steps from a guess.

        The guess is ``s_guess`` plus the distance along ``heading_guess`` from ``origin`` (the sensor); without one,
        a KD-tree gives the nearest centreline sample.
        """
        if s_guess is None:
            if self._tree is None:
                from scipy.spatial import cKDTree

                self._tree = cKDTree(np.stack([self.x, self.y], 1))
            _, i = self._tree.query(xy, workers=1)
            s = self.s[i]
        else:
            s = s_guess + (xy[:, 0] - origin[0]) * math.cos(heading_guess) + (xy[:, 1] - origin[1]) * math.sin(
                heading_guess)
        for _ in range(iters):
            cx, cy, h = np.interp(s, self.s, self.x), np.interp(s, self.s, self.y), np.interp(s, self.s, self.heading)
            s = s + (xy[:, 0] - cx) * np.cos(h) + (xy[:, 1] - cy) * np.sin(h)
        cx, cy, h = np.interp(s, self.s, self.x), np.interp(s, self.s, self.y), np.interp(s, self.s, self.heading)
        return s, -(xy[:, 0] - cx) * np.sin(h) + (xy[:, 1] - cy) * np.cos(h)


# ----------------------------------------------------------------------------------------------------------------
# ray / primitive intersection (one origin, many directions)
# ----------------------------------------------------------------------------------------------------------------
def _hit_box(o, d, p: Prim):
    ol = p.rot.T @ (o - p.center)
    dl = d @ p.rot
    dl = np.where(np.abs(dl) < 1e-12, 1e-12, dl)
    inv = 1.0 / dl
    t1 = (-p.size - ol) * inv
    t2 = (p.size - ol) * inv
    tmin = np.minimum(t1, t2).max(1)
    tmax = np.maximum(t1, t2).min(1)
    t = np.where(tmin > _EPS, tmin, tmax)
    return np.where((tmax >= tmin) & (t > _EPS), t, np.inf)


def _hit_frustum(o, d, p: Prim):
    r0, r1, h = p.size
    z0 = p.center[2]
    k = (r1 - r0) / h
    ox, oy, oz = o[0] - p.center[0], o[1] - p.center[1], o[2] - z0
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    rr = r0 + k * oz
    a = dx * dx + dy * dy - k * k * dz * dz
    b = 2.0 * (ox * dx + oy * dy - k * dz * rr)
    c = ox * ox + oy * oy - rr * rr
    disc = b * b - 4.0 * a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        sq = np.sqrt(np.maximum(disc, 0.0))
        ta = (-b - sq) / (2.0 * a)
        tb = (-b + sq) / (2.0 * a)
    lo, hi = np.minimum(ta, tb), np.maximum(ta, tb)
    ok = (disc >= 0) & (np.abs(a) > 1e-12)
    t_side = np.full(len(d), np.inf)
    for cand in (hi, lo):  # lo last so it wins where both are valid
        z = oz + cand * dz
        v = ok & (cand > _EPS) & (z >= 0) & (z <= h) & (r0 + k * z >= 0)
        t_side = np.where(v, cand, t_side)
    best = t_side
    with np.errstate(divide="ignore", invalid="ignore"):
        for zc, rc in ((h, r1), (0.0, r0)):
            if rc <= 0:
                continue
            tc = (zc - oz) / dz
            px, py = ox + tc * dx, oy + tc * dy
            v = (tc > _EPS) & (px * px + py * py <= rc * rc)
            best = np.where(v & (tc < best), tc, best)
    return best


def _hit_sphere(o, d, p: Prim):
    oc = o - p.center
    b = d @ oc
    c = oc @ oc - p.size[0] ** 2
    disc = b * b - c
    sq = np.sqrt(np.maximum(disc, 0.0))
    t = np.where(-b - sq > _EPS, -b - sq, -b + sq)
    return np.where((disc >= 0) & (t > _EPS), t, np.inf)


_HIT = {BOX: _hit_box, FRUSTUM: _hit_frustum, SPHERE: _hit_sphere}


def _normals(p: Prim, pts: np.ndarray) -> np.ndarray:
    if p.kind == BOX:
        pl = (pts - p.center) @ p.rot
        rel = np.abs(pl) / p.size
        ax = np.argmax(rel, 1)
        nl = np.zeros_like(pl)
        nl[np.arange(len(pl)), ax] = np.sign(pl[np.arange(len(pl)), ax])
        return nl @ p.rot.T
    if p.kind == SPHERE:
        n = pts - p.center
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    r0, r1, h = p.size
    k = (r1 - r0) / h
    q = pts - p.center
    rho = np.maximum(np.hypot(q[:, 0], q[:, 1]), 1e-9)
    n = np.stack([q[:, 0] / rho, q[:, 1] / rho, np.full(len(q), -k)], 1) / math.sqrt(1 + k * k)
    side_err = np.abs(rho - (r0 + k * q[:, 2]))
    top = np.abs(q[:, 2] - h) < np.minimum(side_err, 1e-3 + side_err)
    bot = np.abs(q[:, 2]) < np.minimum(side_err, 1e-3 + side_err)
    n[top] = (0.0, 0.0, 1.0)
    n[bot] = (0.0, 0.0, -1.0)
    return n


def surface_distance(p: Prim, pts: np.ndarray) -> np.ndarray:
    """Unsigned distance of world points to the surface of a placed primitive (exact for boxes/spheres/cylinders)."""
    if p.kind == BOX:
        q = np.abs((pts - p.center) @ p.rot) - p.size
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
        inside = np.minimum(q.max(1), 0.0)
        return np.abs(outside + inside)
    if p.kind == SPHERE:
        return np.abs(np.linalg.norm(pts - p.center, axis=1) - p.size[0])
    r0, r1, h = p.size
    k = (r1 - r0) / h
    q = pts - p.center
    rho = np.hypot(q[:, 0], q[:, 1])
    d_side = (rho - (r0 + k * np.clip(q[:, 2], 0, h))) / math.sqrt(1 + k * k)
    d_cap = np.maximum(-q[:, 2], q[:, 2] - h)
    outside = np.hypot(np.maximum(d_side, 0), np.maximum(d_cap, 0))
    inside = np.minimum(np.maximum(d_side, d_cap), 0.0)
    return np.abs(outside + inside)


def _hash01(q: np.ndarray, salt: float = 0.0) -> np.ndarray:
    h = np.sin(q[:, 0] * 12.9898 + q[:, 1] * 78.233 + q[:, 2] * 37.719 + salt * 4.1414) * 43758.5453
    return h - np.floor(h)


def _noise(p: np.ndarray, scale: float, salt: float = 0.0) -> np.ndarray:
    return _hash01(np.floor(p / scale), salt)


# ----------------------------------------------------------------------------------------------------------------
# object factories
# ----------------------------------------------------------------------------------------------------------------
_CAR_COLORS = [(0.75, 0.1, 0.1), (0.1, 0.2, 0.6), (0.85, 0.85, 0.85), (0.1, 0.1, 0.1), (0.5, 0.5, 0.52),
               (0.8, 0.65, 0.1), (0.15, 0.4, 0.2), (0.6, 0.3, 0.1), (0.35, 0.55, 0.75)]
_CLOTHES = [(0.2, 0.2, 0.5), (0.6, 0.1, 0.1), (0.1, 0.1, 0.1), (0.8, 0.8, 0.7), (0.3, 0.5, 0.3), (0.7, 0.5, 0.2)]
_SKIN = [(0.9, 0.75, 0.6), (0.6, 0.45, 0.3), (0.4, 0.28, 0.2)]


def _car(rng) -> List[Part]:
    length, width = rng.uniform(3.9, 4.9), rng.uniform(1.7, 1.95)
    h_body, h_cab = rng.uniform(0.75, 0.95), rng.uniform(0.55, 0.7)
    col = _CAR_COLORS[rng.integers(len(_CAR_COLORS))]
    z_body = 0.25  # ground clearance
    return [
        Part(BOX, (0.0, 0.0, z_body + h_body / 2), (length / 2, width / 2, h_body / 2), col, 0.6, TEX_CARBODY),
        Part(BOX, (-0.25, 0.0, z_body + h_body + h_cab / 2), (length * 0.28, width / 2 - 0.08, h_cab / 2),
             (0.08, 0.1, 0.12), 0.15, TEX_GLASS, albedo2=col),
    ]


def _truck(rng) -> List[Part]:
    length, width, height = rng.uniform(6.5, 10.0), rng.uniform(2.3, 2.55), rng.uniform(3.0, 3.8)
    cab_col = _CAR_COLORS[rng.integers(len(_CAR_COLORS))]
    box_col = [(0.9, 0.9, 0.88), (0.7, 0.72, 0.75), (0.2, 0.3, 0.6), (0.8, 0.4, 0.1)][rng.integers(4)]
    cab_len = 2.0
    return [
        Part(BOX, (length / 2 - cab_len / 2, 0.0, 0.4 + 1.2), (cab_len / 2, width / 2, 1.2), cab_col, 0.6,
             TEX_CARBODY),
        Part(BOX, (-cab_len / 2 - 0.15, 0.0, 0.5 + height / 2 - 0.25), ((length - cab_len - 0.3) / 2, width / 2,
                                                                       height / 2 - 0.25), box_col, 0.7, TEX_PLAIN),
    ]


def _pedestrian(rng) -> List[Part]:
    h = rng.uniform(1.5, 1.9)
    r = rng.uniform(0.17, 0.24)
    shirt, pants = _CLOTHES[rng.integers(len(_CLOTHES))], _CLOTHES[rng.integers(len(_CLOTHES))]
    return [
        Part(FRUSTUM, (0.0, 0.0, 0.0), (r * 0.8, r, h - 0.24), shirt, 0.5, TEX_CLOTHES, albedo2=pants),
        Part(SPHERE, (0.0, 0.0, h - 0.12), (0.12,), _SKIN[rng.integers(len(_SKIN))], 0.4),
    ]


def _cyclist(rng) -> List[Part]:
    shirt = _CLOTHES[rng.integers(len(_CLOTHES))]
    return [
        Part(BOX, (0.0, 0.0, 0.5), (0.85, 0.06, 0.4), (0.1, 0.1, 0.1), 0.5, TEX_METAL),
        Part(FRUSTUM, (-0.1, 0.0, 0.75), (0.16, 0.2, 0.85), shirt, 0.5, TEX_CLOTHES, albedo2=shirt),
        Part(SPHERE, (-0.05, 0.0, 1.72), (0.13,), (0.9, 0.9, 0.2), 0.5),
    ]


def _pole(rng) -> List[Part]:
    h = rng.uniform(5.0, 9.0)
    return [Part(FRUSTUM, (0.0, 0.0, 0.0), (0.12, 0.08, h), (0.45, 0.45, 0.47), 0.7, TEX_METAL)]


def _tree(rng) -> List[Part]:
    trunk_h, crown_r = rng.uniform(2.0, 3.5), rng.uniform(1.5, 2.8)
    return [
        Part(FRUSTUM, (0.0, 0.0, 0.0), (0.22, 0.16, trunk_h + 0.5), (0.35, 0.25, 0.15), 0.4, TEX_PLAIN),
        Part(SPHERE, (0.0, 0.0, trunk_h + crown_r * 0.9), (crown_r,), (0.2, 0.45, 0.15), 0.35, TEX_FOLIAGE),
    ]


def _cone(rng) -> List[Part]:
    return [Part(FRUSTUM, (0.0, 0.0, 0.0), (0.18, 0.03, 0.7), (0.95, 0.4, 0.05), 0.9, TEX_CONE,
                 albedo2=(0.95, 0.95, 0.95))]


def _bush(rng) -> List[Part]:
    r = rng.uniform(0.4, 0.9)
    return [Part(SPHERE, (0.0, 0.0, r * rng.uniform(0.5, 0.9)), (r,), (0.18, 0.38, 0.14), 0.35, TEX_FOLIAGE)]


def _fence(rng) -> List[Part]:
    length, h = rng.uniform(3.0, 12.0), rng.uniform(0.5, 1.3)
    col = [(0.55, 0.55, 0.55), (0.45, 0.32, 0.2), (0.75, 0.72, 0.65), (0.2, 0.35, 0.2)][rng.integers(4)]
    return [Part(BOX, (0.0, 0.0, h / 2), (length / 2, rng.uniform(0.05, 0.25), h / 2), col, 0.5, TEX_BUILDING,
                 albedo2=tuple(c * 0.6 for c in col))]


def _bin(rng) -> List[Part]:
    col = [(0.1, 0.3, 0.12), (0.15, 0.15, 0.16), (0.2, 0.3, 0.6), (0.6, 0.6, 0.58)][rng.integers(4)]
    return [Part(BOX, (0.0, 0.0, 0.5), (rng.uniform(0.25, 0.4), rng.uniform(0.25, 0.4), rng.uniform(0.4, 0.6)), col,
                 0.5, TEX_PLAIN)]


def _bollard(rng) -> List[Part]:
    return [Part(FRUSTUM, (0.0, 0.0, 0.0), (0.1, 0.09, rng.uniform(0.7, 1.1)), (0.3, 0.3, 0.32), 0.7, TEX_METAL)]


def _barrier(rng) -> List[Part]:
    return [Part(BOX, (0.0, 0.0, 0.45), (rng.uniform(0.8, 1.5), 0.25, 0.45), (0.85, 0.85, 0.82), 0.8, TEX_CONE,
                 albedo2=(0.9, 0.3, 0.1))]


_CLUTTER = [("bush", _bush, 0.35), ("fence", _fence, 0.2), ("bin", _bin, 0.2), ("bollard", _bollard, 0.15),
            ("barrier", _barrier, 0.1)]


def _building(rng, length: float) -> List[Part]:
    depth, height = rng.uniform(8, 16), rng.uniform(6, 25)
    col = [(0.7, 0.65, 0.55), (0.6, 0.35, 0.3), (0.8, 0.8, 0.78), (0.5, 0.5, 0.55), (0.75, 0.7, 0.5)][rng.integers(5)]
    return [Part(BOX, (0.0, 0.0, height / 2), (length / 2, depth / 2, height / 2), col, 0.5, TEX_BUILDING,
                 albedo2=(0.15, 0.2, 0.28))]


# ----------------------------------------------------------------------------------------------------------------
# the drive
# ----------------------------------------------------------------------------------------------------------------
class _RayTiles:
    """Groups of neighbouring rays (sensor frame) with a centre direction and an angular radius, for culling."""

    def __init__(self, dirs_grid: np.ndarray, th: int, tw: int):
        rows, cols = dirs_grid.shape[:2]
        idx = np.arange(rows * cols).reshape(rows, cols)
        pr, pc = (-rows) % th, (-cols) % tw
        idx = np.pad(idx, ((0, pr), (0, pc)), mode="edge")
        r2, c2 = idx.shape
        self.rays = idx.reshape(r2 // th, th, c2 // tw, tw).transpose(0, 2, 1, 3).reshape(-1, th * tw)
        d = dirs_grid.reshape(-1, 3)[self.rays]
        c = d.mean(1)
        self.centers = c / np.linalg.norm(c, axis=1, keepdims=True)
        cosang = np.clip(np.einsum("tkc,tc->tk", d, self.centers), -1, 1)
        self.radius = np.arccos(cosang.min(1)) + 1e-6


@dataclass
class SynthFrame:
    """One rendered frame plus extras that do not fit :class:`~sam4d_model.types.FrameLabels`."""

    frame: Frame
    labels: FrameLabels
    depth: Dict[str, np.ndarray] = field(default_factory=dict)  # camera z-depth (inf = sky), float32
    stamp_ns: int = 0
    base2world: np.ndarray = field(default_factory=lambda: np.eye(4))


class SynthDrive:
    """A deterministic synthetic drive: ``render(i)`` gives frame ``i`` with exact ground truth."""

    def __init__(self, seed: int, num_frames: int, config: Optional[SynthConfig] = None):
        self.seed = int(seed)
        self.num_frames = int(num_frames)
        self.config = cfg = config or SynthConfig()
        rng = np.random.default_rng(self.seed)
        self.duration = num_frames / cfg.rate_hz
        self.ego_speed = float(rng.uniform(*cfg.speed_range))
        self._ego_wobble = (float(rng.uniform(0.0, 0.6)), float(rng.uniform(0.3, 0.8)), float(rng.uniform(0, 6.28)))
        margin = 200.0 + 16.0 * self.duration
        self.s_lo, self.s_hi = -margin, self.ego_speed * self.duration + margin
        self.road = Road(rng, self.s_lo - 50, self.s_hi + 50, cfg.max_curvature)
        nl = max(1, int(cfg.lanes_per_direction))
        self.road_half = nl * cfg.lane_width + cfg.parking_width
        self.ego_lateral = -cfg.lane_width / 2
        self.objects: List[SceneObject] = []
        self._populate(rng)
        self.object_classes = {o.obj_id: o.cls for o in self.objects}
        k = cfg.intrinsics
        self._cam_dirs = self._camera_rays(k, cfg.width, cfg.height)
        self._lidar_dirs, self._ring, self._az_time = self._lidar_rays()
        self._cam_tiles = _RayTiles(self._cam_dirs.reshape(cfg.height, cfg.width, 3), 16, 16)
        self._lidar_tiles = _RayTiles(self._lidar_dirs.reshape(cfg.azimuths, cfg.beams, 3), 8, 16)

    # ---------------------------------------------------------------------------------------------- scene
    def _add(self, cls, parts, s0, lateral, speed=0.0, flip=False, yaw_offset=0.0):
        self.objects.append(SceneObject(len(self.objects) + 1, cls, parts, float(s0), float(lateral), float(speed),
                                        bool(flip), float(yaw_offset)))

    def _populate(self, rng: np.random.Generator) -> None:
        cfg = self.config
        lw, nl = cfg.lane_width, max(1, int(cfg.lanes_per_direction))
        road_half, sw = self.road_half, cfg.sidewalk_width
        lo, hi = self.s_lo, self.s_hi
        v_ego = self.ego_speed
        cyclist_side = -1 if rng.uniform() < 0.5 else 1  # the outer lane of this side carries cyclists
        for side in (-1, 1):  # -1: right side (ego's direction), +1: left side (oncoming)
            # buildings behind the sidewalk
            s = lo + rng.uniform(0, 10)
            while s < hi:
                length = rng.uniform(8, 22)
                if rng.uniform() < 0.85 * cfg.building_density:
                    parts = _building(rng, length)
                    depth = parts[0].size[1] * 2
                    setback = rng.uniform(1.0, 6.0)
                    lat = side * (road_half + sw + setback + depth / 2)
                    self._add("building", parts, s + length / 2, lat)
                s += length + rng.uniform(1.0, 8.0)
            # poles and trees in the furniture zone of the sidewalk
            s = lo + rng.uniform(0, 20)
            while s < hi:
                lat = side * (road_half + 0.6)
                if rng.uniform() < 0.45:
                    self._add("pole", _pole(rng), s, lat)
                else:
                    self._add("tree", _tree(rng), s, side * (road_half + 1.0))
                s += rng.uniform(12, 30)
            # parked cars and traffic cones in the parking strip
            s = lo + rng.uniform(0, 6)
            lat_park = side * (road_half - cfg.parking_width / 2)
            while s < hi:
                u = rng.uniform()
                if u < 0.45 * cfg.car_density:
                    parts = _car(rng) if rng.uniform() < 0.9 else _truck(rng)
                    self._add("car" if len(parts) == 2 and parts[0].tex == TEX_CARBODY and parts[1].tex == TEX_GLASS
                              else "truck", parts, s, lat_park, flip=(side > 0) ^ (rng.uniform() < 0.1))
                    g0, g1 = cfg.parking_gap
                    gap = rng.uniform(g0, g1) if g1 > g0 else g0
                    s += 2 * parts[0].size[0] + gap if parts[1].tex == TEX_GLASS else 11.0
                    continue
                if u < 0.55:
                    for j in range(int(rng.integers(2, 5))):
                        self._add("traffic_cone", _cone(rng), s + 2.0 * j, lat_park + rng.uniform(-0.5, 0.5))
                    s += 10.0
                    continue
                s += rng.uniform(4, 12)
            # pedestrians on the walking zone, in lanes of constant lateral offset (no collisions)
            for slot in range(3):
                lat = side * (road_half + 1.7 + 0.6 * slot)
                speed = rng.uniform(0.8, 1.6) * (1 if rng.uniform() < 0.5 else -1) if slot < 2 else 0.0
                s = lo + rng.uniform(0, 30)
                while s < hi:
                    if rng.uniform() < 0.5 * cfg.pedestrian_density:
                        self._add("pedestrian", _pedestrian(rng), s, lat, speed=abs(speed), flip=speed < 0,
                                  yaw_offset=0.0 if speed else rng.uniform(-np.pi, np.pi))
                    s += rng.uniform(6, 40)
            # moving traffic, one platoon speed per lane
            for lane in range(nl):
                lat = side * (lane + 0.5) * lw
                oncoming = side > 0
                if not oncoming and lane == 0:
                    speed, start = v_ego + rng.uniform(0.0, 1.5), 12.0  # ego lane: vehicles only ahead of ego
                    s = start + rng.uniform(0, 15)
                    kind = "vehicle"
                else:
                    speed = rng.uniform(5.0, 14.0)
                    kind = "cyclist" if (lane == nl - 1 and nl > 1 and side == cyclist_side) else "vehicle"
                    if kind == "cyclist":
                        speed = rng.uniform(3.5, 6.0)
                    s = lo + rng.uniform(0, 20)
                while s < hi:
                    if kind == "cyclist":
                        if rng.uniform() < 0.5:
                            self._add("cyclist", _cyclist(rng), s, lat + side * 1.0, speed, oncoming)
                        s += rng.uniform(15, 60)
                        continue
                    if rng.uniform() < 0.6 * cfg.car_density:
                        truck = rng.uniform() < 0.15
                        parts = _truck(rng) if truck else _car(rng)
                        self._add("truck" if truck else "car", parts, s, lat, speed, oncoming)
                        s += 2 * parts[0].size[0] + (9.0 if truck else 0.0)
                    s += rng.uniform(8, 40)
        # street clutter behind the walking zone and at the kerb (drawn after everything else, so the scenes of
        # clutter_density 0 are the same as before it existed)
        if cfg.clutter_density > 0:
            names, makers, probs = zip(*_CLUTTER)
            probs = np.asarray(probs) / np.sum(probs)
            for side in (-1, 1):
                s = lo + rng.uniform(0, 8)
                while s < hi:
                    k = int(rng.choice(len(names), p=probs))
                    parts = makers[k](rng)
                    zone = rng.uniform()
                    lat = side * (road_half + (0.3 if zone < 0.3 else sw - rng.uniform(0.3, 0.8)))
                    self._add(names[k], parts, s, lat, yaw_offset=0.0 if names[k] == "fence" else rng.uniform(-3, 3))
                    s += (parts[0].size[0] * 2 if names[k] == "fence" else 0.0) + rng.exponential(
                        6.0 / cfg.clutter_density)
        # a few pedestrians standing at the kerb of the parking strip, away from parked cars is not guaranteed,
        # so they stand on the sidewalk edge instead
        for _ in range(int(6 * cfg.pedestrian_density)):
            side = 1 if rng.uniform() < 0.5 else -1
            self._add("pedestrian", _pedestrian(rng), rng.uniform(lo, hi), side * (road_half + 0.25),
                      yaw_offset=rng.uniform(-np.pi, np.pi))

    # ---------------------------------------------------------------------------------------------- kinematics
    def time_of(self, i: float) -> float:
        """Scene time (seconds since the start) of frame ``i``."""
        return float(i) / self.config.rate_hz

    def stamp_ns(self, i: int) -> int:
        """Absolute sweep stamp of frame ``i`` in integer nanoseconds (a whole number of microseconds)."""
        t0 = int(round(self.config.start_time * 1e6)) * 1000
        return t0 + int(round(self.time_of(i) * 1e6)) * 1000

    def ego_s(self, t):
        """Ego arc length at scene time ``t`` (seconds)."""
        a, w, ph = self._ego_wobble
        return self.ego_speed * np.asarray(t) + a * (np.sin(w * np.asarray(t) + ph) - math.sin(ph))

    def base2world(self, t: float) -> np.ndarray:
        """``T_world_base`` at scene time ``t``."""
        x, y, h = self.road.pose(self.ego_s(t), self.ego_lateral)
        return make_transform(rot_z(float(h)), (float(x), float(y), 0.0))

    def lidar2world(self, t: float) -> np.ndarray:
        """``T_world_lidar`` at scene time ``t``."""
        return self.base2world(t) @ self.config.base2lidar

    def object_pose(self, obj: SceneObject, t: float) -> Tuple[float, float, float]:
        """World ``(x, y, yaw)`` of an object at scene time ``t``."""
        s = obj.s0 + (-obj.speed if obj.heading_flip else obj.speed) * t
        x, y, h = self.road.pose(s, obj.lateral)
        return float(x), float(y), float(h) + (np.pi if obj.heading_flip else 0.0) + obj.yaw_offset

    def primitives(self, t: float, center: Optional[np.ndarray] = None, radius: float = np.inf) -> List[Prim]:
        """All primitives placed at time ``t`` (optionally only those within ``radius`` of ``center``)."""
        out = []
        for oi, obj in enumerate(self.objects):
            x, y, yaw = self.object_pose(obj, t)
            if center is not None and math.hypot(x - center[0], y - center[1]) > radius + 30.0:
                continue
            r = rot_z(yaw)
            pos = np.array([x, y, 0.0])
            for part in obj.parts:
                c = pos + r @ np.asarray(part.center, dtype=np.float64)
                size = np.asarray(part.size, dtype=np.float64)
                if part.kind == BOX:
                    br = float(np.linalg.norm(size))
                    bc = c
                elif part.kind == SPHERE:
                    br, bc = float(size[0]), c
                else:
                    h = size[2]
                    bc = c + np.array([0, 0, h / 2])
                    br = float(math.hypot(max(size[0], size[1]), h / 2))
                out.append(Prim(part.kind, oi, part, c, r, size, bc, br))
        return out

    def surface_distance(self, t: float, obj_id: int, pts_world: np.ndarray) -> np.ndarray:
        """Distance of world points to the surface of object ``obj_id`` at time ``t`` (min over its parts)."""
        oi = obj_id - 1
        prims = [p for p in self.primitives(t) if p.obj_index == oi]
        return np.min(np.stack([surface_distance(p, pts_world) for p in prims]), axis=0)

    # ---------------------------------------------------------------------------------------------- rays
    @staticmethod
    def _camera_rays(k: np.ndarray, w: int, h: int) -> np.ndarray:
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        pix = np.stack([u.ravel(), v.ravel(), np.ones(w * h)], 1)
        d = pix @ np.linalg.inv(k).T
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    def _lidar_rays(self):
        cfg = self.config
        x = np.linspace(0.0, 1.0, cfg.beams)
        if cfg.elev_spacing == "nonuniform":  # beams dense near the horizon, sparse towards the ground
            h0 = (0.0 - cfg.elev_min_deg) / max(cfg.elev_max_deg - cfg.elev_min_deg, 1e-6)  # horizon in [0, 1]
            h0 = min(max(h0, 0.0), 1.0)
            below, above = x < h0, x >= h0
            x = x.copy()
            x[below] = h0 - h0 * ((h0 - x[below]) / max(h0, 1e-6)) ** 1.8
            x[above] = h0 + (1 - h0) * ((x[above] - h0) / max(1 - h0, 1e-6)) ** 1.8
        elev = np.radians(cfg.elev_min_deg + (cfg.elev_max_deg - cfg.elev_min_deg) * x)
        col = np.arange(cfg.azimuths)
        az = np.pi - 2 * np.pi * col / cfg.azimuths  # clockwise from the back, like a Velodyne
        az_g, el_g = np.meshgrid(az, elev, indexing="ij")  # firing order: azimuth-major, then ring
        d = np.stack([np.cos(el_g) * np.cos(az_g), np.cos(el_g) * np.sin(az_g), np.sin(el_g)], -1).reshape(-1, 3)
        ring = np.broadcast_to(np.arange(cfg.beams)[None, :], az_g.shape).reshape(-1)
        tm = np.broadcast_to((col / cfg.azimuths / cfg.rate_hz)[:, None], az_g.shape).reshape(-1)
        return d, ring.astype(np.float32), tm.astype(np.float32)

    def _cast(self, origin: np.ndarray, dirs: np.ndarray, prims: List[Prim], max_range: float,
              tiles: Optional["_RayTiles"] = None, rot: Optional[np.ndarray] = None):
        m = len(dirs)
        tbest = np.full(m, max_range)
        pid = np.full(m, -1, dtype=np.int32)  # -1 sky/no return, -2 ground, >=0 primitive
        with np.errstate(divide="ignore", invalid="ignore"):
            tg = np.where(dirs[:, 2] < -1e-9, -origin[2] / dirs[:, 2], np.inf)
        g = tg < tbest
        tbest[g], pid[g] = tg[g], -2
        tile_dirs = tiles.centers @ rot.T if tiles is not None else None
        for j, p in enumerate(prims):
            v = p.bc - origin
            dist = float(np.linalg.norm(v))
            if dist - p.br > max_range:
                continue
            if dist > p.br * 1.001:
                th = math.asin(min(1.0, p.br / dist))
                if tiles is not None:  # coarse cull on ray tiles, then exact cone test on their rays
                    tsel = np.flatnonzero(tile_dirs @ (v / dist) >= np.cos(np.minimum(th + tiles.radius, np.pi)))
                    if tsel.size == 0:
                        continue
                    cand = tiles.rays[tsel].ravel()
                    cand = cand[dirs[cand] @ (v / dist) >= math.cos(th) - 1e-9]
                else:
                    cand = np.flatnonzero(dirs @ (v / dist) >= math.cos(th) - 1e-9)
                if cand.size == 0:
                    continue
                t = _HIT[p.kind](origin, dirs[cand], p)
                better = t < tbest[cand]
                idx = cand[better]
                tbest[idx], pid[idx] = t[better], j
            else:
                t = _HIT[p.kind](origin, dirs, p)
                better = t < tbest
                tbest[better], pid[better] = t[better], j
        return tbest, pid

    def _surface(self, origin, dirs, tbest, pid, prims):
        """Hit points, normals, instance ids, class ids, albedo, LiDAR reflectivity for rays that hit something."""
        hit = np.flatnonzero(pid != -1)
        pts = origin + dirs[hit] * tbest[hit, None]
        n = np.zeros_like(pts)
        inst = np.zeros(len(hit), dtype=np.int32)
        cls = np.zeros(len(hit), dtype=np.int32)
        alb = np.zeros_like(pts)
        refl = np.zeros(len(hit))
        ph = pid[hit]
        # ground
        g = np.flatnonzero(ph == -2)
        if g.size:
            n[g] = (0.0, 0.0, 1.0)
            alb[g], refl[g] = self._ground_material(pts[g])
        order = np.argsort(ph, kind="stable")
        sp = ph[order]
        starts = np.searchsorted(sp, np.arange(len(prims)), "left")
        ends = np.searchsorted(sp, np.arange(len(prims)), "right")
        for j, p in enumerate(prims):
            if ends[j] == starts[j]:
                continue
            idx = order[starts[j]:ends[j]]
            obj = self.objects[p.obj_index]
            n[idx] = _normals(p, pts[idx])
            inst[idx] = obj.obj_id
            cls[idx] = CLASS_IDS[obj.cls]
            alb[idx], refl[idx] = self._object_material(p, obj, pts[idx])
        return hit, pts, n, inst, cls, alb, refl

    def _ground_material(self, pts):
        cfg = self.config
        s_e = float(self.ego_s(self._t_now))
        x, y, h = self.road.pose(s_e, 0.0)
        s, lat = self.road.frenet(pts[:, :2], s_e, float(h), np.array([float(x), float(y)]))
        alat = np.abs(lat)
        rh = self.road_half
        nz = 0.75 + 0.5 * (0.6 * _noise(pts, 0.15, 1) + 0.4 * _noise(pts, 0.6, 2))
        alb = np.empty((len(pts), 3))
        refl = np.empty(len(pts))
        road = alat <= rh
        alb[road] = (0.22, 0.22, 0.23)
        refl[road] = 0.15
        side = (alat > rh) & (alat <= rh + cfg.sidewalk_width)
        tile = ((np.mod(s, 1.5) < 0.05) | (np.mod(alat - rh, 1.5) < 0.05))
        alb[side] = (0.6, 0.58, 0.55)
        alb[side & tile] = (0.4, 0.38, 0.36)
        refl[side] = 0.3
        grass = alat > rh + cfg.sidewalk_width
        alb[grass] = (0.25, 0.4, 0.15)
        refl[grass] = 0.25
        # lane markings: dashed between lanes of the same direction, double solid in the middle, solid at parking
        nl = max(1, int(cfg.lanes_per_direction))
        mark = (np.abs(alat - 0.15) < 0.07)
        for k in range(1, nl):
            mark |= (np.abs(alat - k * cfg.lane_width) < 0.07) & (np.mod(s, 9.0) < 3.0)
        mark |= np.abs(alat - nl * cfg.lane_width) < 0.07
        mark &= road
        alb[mark] = (0.9, 0.9, 0.85)
        refl[mark] = 0.9
        return alb * nz[:, None], refl * (0.8 + 0.4 * nz / 1.25)

    def _object_material(self, p: Prim, obj: SceneObject, pts):
        part = p.part
        x, y, yaw = self.object_pose(obj, self._t_now)
        r = rot_z(yaw)
        loc = (pts - np.array([x, y, 0.0])) @ r
        alb = np.tile(np.asarray(part.albedo, dtype=np.float64), (len(pts), 1))
        refl = np.full(len(pts), part.refl)
        salt = float(obj.obj_id % 97)
        if part.tex == TEX_BUILDING:
            u = loc[:, 0] + loc[:, 1]
            win = (np.mod(u, 3.0) > 0.8) & (np.mod(u, 3.0) < 2.2) & (np.mod(loc[:, 2], 3.2) > 1.0) & \
                  (np.mod(loc[:, 2], 3.2) < 2.4) & (loc[:, 2] > 0.9)
            alb[win] = part.albedo2
            refl[win] = 0.1
            nz = 0.85 + 0.3 * _noise(loc, 0.25, salt)
        elif part.tex == TEX_CARBODY:
            low = loc[:, 2] < 0.45
            alb[low] = (0.08, 0.08, 0.08)
            nz = 0.92 + 0.16 * _noise(loc, 0.2, salt)
        elif part.tex == TEX_GLASS:
            roof = loc[:, 2] > (p.center[2] + p.size[2] - 0.02)
            alb[roof] = part.albedo2
            nz = 0.9 + 0.2 * _noise(loc, 0.3, salt)
        elif part.tex == TEX_CLOTHES:
            low = loc[:, 2] < 0.85
            alb[low] = part.albedo2
            nz = 0.8 + 0.4 * _noise(loc, 0.08, salt)
        elif part.tex == TEX_CONE:
            band = (loc[:, 2] > 0.3) & (loc[:, 2] < 0.45)
            alb[band] = part.albedo2
            refl[band] = 1.0
            nz = np.full(len(pts), 1.0)
        elif part.tex == TEX_FOLIAGE:
            nz = 0.5 + 1.0 * (0.6 * _noise(loc, 0.25, salt) + 0.4 * _noise(loc, 0.7, salt + 1))
        else:
            nz = 0.85 + 0.3 * _noise(loc, 0.1, salt)
        return np.clip(alb * nz[:, None], 0, 1), refl

    # ---------------------------------------------------------------------------------------------- render
    def render(self, i: int) -> SynthFrame:
        """Render frame ``i``: LiDAR sweep, front camera and exact ground truth."""
        cfg = self.config
        t = self.time_of(i)
        self._t_now = t
        rng = np.random.default_rng([self.seed, int(i), 7])
        base2world = self.base2world(t)
        lidar2world = base2world @ cfg.base2lidar
        cam2world = base2world @ cfg.base2camera
        prims = self.primitives(t, base2world[:3, 3], cfg.render_distance)

        # ---------------- LiDAR
        o = lidar2world[:3, 3]
        dirs_w = self._lidar_dirs @ lidar2world[:3, :3].T
        tb, pid = self._cast(o, dirs_w, prims, cfg.max_range, self._lidar_tiles, lidar2world[:3, :3])
        hit, pts_w, nrm, inst, cls, alb, refl = self._surface(o, dirs_w, tb, pid, prims)
        rng_m = tb[hit]
        keep = rng_m >= cfg.min_range
        cos_inc = np.abs(np.sum(nrm * dirs_w[hit], axis=1))
        drop_p = cfg.dropout + 0.25 * (refl < 0.12) + 0.3 * (cos_inc < 0.05)
        if cfg.object_dropout > 0:
            share = ((inst.astype(np.int64) * 2654435761) % 1000) / 1000.0  # fixed per object, over frames too
            drop_p = drop_p + np.where(inst > 0, cfg.object_dropout * share, 0.0)
        keep &= rng.uniform(size=len(hit)) >= drop_p
        noise = np.clip(rng.normal(0.0, cfg.range_noise_std, len(hit)), -cfg.range_noise_clip, cfg.range_noise_clip)
        r_noisy = rng_m + noise
        inten = refl * (0.35 + 0.65 * cos_inc) * (1.0 - 0.4 * np.minimum(rng_m / cfg.max_range, 1.0))
        inten = np.clip(inten + rng.normal(0, 0.02, len(hit)), 0.0, 1.0)
        if cfg.intensity_model == "none":
            inten = np.zeros_like(inten)
        elif cfg.intensity_model == "raw255":
            inten = np.round(inten * 255.0)
        elif cfg.intensity_model == "saturated":
            inten = np.clip(np.sqrt(inten) * 1.3, 0.0, 1.0)
        sel = hit[keep]
        xyz_l = self._lidar_dirs[sel] * r_noisy[keep, None]
        if cfg.sweep_skew:  # each point where the moving LiDAR was at its firing time, seen from the sweep stamp
            v = (self.base2world(t + 0.01)[:3, 3] - base2world[:3, 3]) / 0.01
            v_l = lidar2world[:3, :3].T @ v
            xyz_l = xyz_l - (self._az_time[sel, None] - 0.5 / cfg.rate_hz) * v_l[None, :]
        points = np.concatenate([xyz_l, inten[keep, None], self._ring[sel, None], self._az_time[sel, None]],
                                1).astype(np.float32)
        point_inst = inst[keep].astype(np.int32)
        point_cls = cls[keep].astype(np.int32)

        # ---------------- camera
        h, w = cfg.height, cfg.width
        oc = cam2world[:3, 3]
        dirs_c = self._cam_dirs @ cam2world[:3, :3].T
        far = cfg.render_distance * 1.5
        tb, pid = self._cast(oc, dirs_c, prims, far, self._cam_tiles, cam2world[:3, :3])
        hit, pts_w, nrm, inst, cls, alb, refl = self._surface(oc, dirs_c, tb, pid, prims)
        zen = np.clip(dirs_c[:, 2], 0.0, 1.0)[:, None]
        sky = (0.75, 0.85, 0.95) * (1 - zen) + np.array([0.3, 0.5, 0.85]) * zen
        if cfg.overcast > 0:
            sky = sky * (1 - cfg.overcast) + cfg.overcast * (np.array([0.86, 0.87, 0.88]) - 0.12 * zen)
        img = sky.copy()
        sun = np.array([0.4, -0.3, 0.85])
        sun /= np.linalg.norm(sun)
        nd = np.sum(nrm * dirs_c[hit], 1)
        nrm = np.where(nd[:, None] > 0, -nrm, nrm)  # face the viewer
        lam = np.clip(nrm @ sun, 0.0, 1.0)
        shade = 0.38 + 0.62 * lam + 0.08 * nrm[:, 2]
        if cfg.overcast > 0:
            shade = shade * (1 - cfg.overcast) + cfg.overcast * (0.62 + 0.18 * nrm[:, 2])
        col = alb * shade[:, None]
        fog = (1.0 - np.exp(-tb[hit] / 350.0))[:, None]
        img[hit] = col * (1 - fog) + sky[hit] * fog
        img = img.reshape(h, w, 3)
        if cfg.saturation != 1.0:
            grey = img @ np.array([0.299, 0.587, 0.114])
            img = grey[..., None] + cfg.saturation * (img - grey[..., None])
        if cfg.exposure != 1.0 or tuple(cfg.white_balance) != (1.0, 1.0, 1.0):
            img = img * cfg.exposure * np.asarray(cfg.white_balance, np.float64)[None, None, :]
        if cfg.blur_sigma > 0:
            import cv2

            img = cv2.GaussianBlur(img, (0, 0), cfg.blur_sigma)
        img = img * 255.0 + rng.normal(0, cfg.pixel_noise, (h, w, 3))
        image = np.clip(np.round(img), 0, 255).astype(np.uint8)
        if cfg.jpeg_quality > 0:
            import cv2

            ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)])
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy()
        img_inst = np.zeros(h * w, dtype=np.int32)
        img_cls = np.zeros(h * w, dtype=np.int32)
        img_inst[hit], img_cls[hit] = inst, cls
        depth = np.full(h * w, np.inf, dtype=np.float32)
        depth[hit] = (tb[hit] * self._cam_dirs[hit, 2]).astype(np.float32)

        cam = CameraFrame(CAMERA_NAME, image, cfg.intrinsics.copy(), cfg.camera2lidar.copy())
        stamp = self.stamp_ns(i)
        frame = Frame(points=points, cameras=[cam], lidar2world=lidar2world, timestamp=(stamp // 1000) / 1e6,
                      index=int(i))
        present = set(np.unique(point_inst).tolist()) | set(np.unique(img_inst).tolist())
        present.discard(0)
        labels = FrameLabels(point_instance=point_inst, image_instance={CAMERA_NAME: img_inst.reshape(h, w)},
                             point_class=point_cls, image_class={CAMERA_NAME: img_cls.reshape(h, w)},
                             object_classes={k: self.object_classes[k] for k in sorted(present)})
        return SynthFrame(frame, labels, {CAMERA_NAME: depth.reshape(h, w)}, stamp, base2world)

    def __len__(self) -> int:
        return self.num_frames

    def __iter__(self) -> Iterator[Tuple[Frame, FrameLabels]]:
        for i in range(self.num_frames):
            sf = self.render(i)
            yield sf.frame, sf.labels


def generate_drive(seed: int, num_frames: int, out_dir: Optional[str | Path] = None,
                   config: Optional[SynthConfig] = None, seq_name: Optional[str] = None,
                   progress: bool = False, **write_kwargs) -> Iterator[Tuple[Frame, FrameLabels]]:
    """Synthetic drive as an iterator of ``(Frame, FrameLabels)`` (lazy: frames render as you iterate).

    With ``out_dir`` the drive is also written (Waymo-4DSeg layout, see :func:`write_layout`) as it is iterated;
    ``write_kwargs`` go to :func:`write_layout`. Use ``list(generate_drive(...))`` for an in-memory list.
    """
    drive = SynthDrive(seed, num_frames, config)
    if out_dir is None:
        return iter(drive)
    return iter(_write_through(drive, Path(out_dir), seq_name or f"synth_{seed:06d}", progress, write_kwargs))


def _write_through(drive, out_dir, seq_name, progress, kw):
    from .waymo4dseg import SequenceWriter

    with SequenceWriter(out_dir, seq_name, **kw) as w:
        for i in _progress(range(drive.num_frames), progress, f"synth {seq_name}"):
            sf = drive.render(i)
            w.add(sf.frame, sf.labels)
            yield sf.frame, sf.labels


def _progress(it, enabled: bool, desc: str):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, desc=desc, unit="frame", dynamic_ncols=True)


def write_layout(drive: SynthDrive, root: str | Path, seq_name: Optional[str] = None, image_format: str = "jpg",
                 resume: bool = True, overwrite: bool = False, progress: bool = False,
                 write_depth: bool = False) -> Path:
    """Render a drive into the Waymo-4DSeg layout under ``root``; resumable (frames already written are skipped).

    Returns the path of the sequence's ``meta_infos/<seq>.pkl``, written last (atomically) as the completion mark.
    """
    from .waymo4dseg import SequenceWriter

    seq_name = seq_name or f"synth_{drive.seed:06d}"
    extra = {"synth": {"seed": drive.seed, "num_frames": drive.num_frames, "config": drive.config.to_dict(),
                       "class_names": list(CLASS_NAMES), "point_fields": list(POINT_FIELDS)},
             "class_names": list(CLASS_NAMES), "base2lidar": drive.config.base2lidar}
    with SequenceWriter(root, seq_name, image_format=image_format, resume=resume, overwrite=overwrite,
                        point_fields=POINT_FIELDS, extra_meta=extra) as w:
        for i in _progress(range(drive.num_frames), progress, f"render {seq_name}"):
            ts_us = drive.stamp_ns(i) // 1000
            if w.frame_complete(ts_us, [CAMERA_NAME]):
                w.add_existing(ts_us, i)
                continue
            sf = drive.render(i)
            w.add(sf.frame, sf.labels, depth=sf.depth if write_depth else None)
    return w.meta_path


def write_bag(drive_or_frames, path: str | Path, storage: str = "mcap", overwrite: bool = False,
              progress: bool = False, **kwargs) -> Path:
    """Write a synthetic drive (a :class:`SynthDrive`, or an iterable of ``(Frame, FrameLabels)``) as a rosbag2.

    Uses :func:`sam4d_model.data.rosbag_io.write_bag` with the drive's ``base_link -> lidar`` mount and its
    continuous ego trajectory for ``/tf`` at 100 Hz; ``kwargs`` are forwarded (topics, camera offset, jitter...).
    """
    from .rosbag_io import write_bag as _write_bag

    if isinstance(drive_or_frames, SynthDrive):
        drive = drive_or_frames
        frames = (drive.render(i) for i in range(drive.num_frames))
        frames = ((sf.frame, sf.labels) for sf in frames)
        t0 = drive.stamp_ns(0)

        def base_pose(stamp_ns: int) -> np.ndarray:
            return drive.base2world((stamp_ns - t0) * 1e-9)

        kwargs.setdefault("base2lidar", drive.config.base2lidar)
        kwargs.setdefault("base_pose_fn", base_pose)
        kwargs.setdefault("num_frames", drive.num_frames)
        kwargs.setdefault("object_classes", drive.object_classes)
        kwargs.setdefault("point_fields", POINT_FIELDS)
        return _write_bag(frames, path, storage=storage, overwrite=overwrite, progress=progress, **kwargs)
    return _write_bag(drive_or_frames, path, storage=storage, overwrite=overwrite, progress=progress, **kwargs)
