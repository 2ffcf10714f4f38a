# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Small rigid-transform helpers (pure numpy): quaternions (x, y, z, w, ROS order), slerp, 4x4 matrices."""

from __future__ import annotations

import numpy as np


def quat_to_matrix(q) -> np.ndarray:
    """Rotation matrix (3x3) of a quaternion ``(x, y, z, w)``; the quaternion is normalised first."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-12:
        raise ValueError(f"invalid quaternion {q!r}")
    x, y, z, w = q / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quat(r) -> np.ndarray:
    """Quaternion ``(x, y, z, w)`` with ``w >= 0`` of a 3x3 rotation matrix."""
    m = np.asarray(r, dtype=np.float64)[:3, :3]
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def slerp(q0, q1, f: float) -> np.ndarray:
    """Spherical linear interpolation between unit quaternions ``q0`` (f=0) and ``q1`` (f=1)."""
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    if f == 0.0:
        return q0.copy()
    if f == 1.0:
        return q1.copy()
    d = float(np.dot(q0, q1))
    if d < 0:
        q1, d = -q1, -d
    if d > 0.9995:
        q = q0 + f * (q1 - q0)
        return q / np.linalg.norm(q)
    th = np.arccos(min(d, 1.0))
    s = np.sin(th)
    return (np.sin((1 - f) * th) * q0 + np.sin(f * th) * q1) / s


def make_transform(rotation=None, translation=None) -> np.ndarray:
    """4x4 matrix from a 3x3 rotation (or quaternion ``(x, y, z, w)``) and a translation."""
    t = np.eye(4)
    if rotation is not None:
        rotation = np.asarray(rotation, dtype=np.float64)
        t[:3, :3] = quat_to_matrix(rotation) if rotation.shape == (4,) else rotation
    if translation is not None:
        t[:3, 3] = np.asarray(translation, dtype=np.float64)
    return t


def split_transform(t) -> tuple[np.ndarray, np.ndarray]:
    """``(translation (3,), quaternion (x, y, z, w))`` of a 4x4 rigid transform."""
    t = np.asarray(t, dtype=np.float64)
    return t[:3, 3].copy(), matrix_to_quat(t[:3, :3])


def invert_transform(t) -> np.ndarray:
    """Inverse of a 4x4 rigid transform."""
    t = np.asarray(t, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = t[:3, :3].T
    out[:3, 3] = -t[:3, :3].T @ t[:3, 3]
    return out


def interpolate_transform(t0, t1, f: float) -> np.ndarray:
    """Interpolate two 4x4 rigid transforms: lerp of the translation, slerp of the rotation."""
    p0, q0 = split_transform(t0)
    p1, q1 = split_transform(t1)
    return make_transform(slerp(q0, q1, f), p0 + f * (p1 - p0))


def rot_z(yaw: float) -> np.ndarray:
    """3x3 rotation about +z."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(a: float) -> np.ndarray:
    """3x3 rotation about +y."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_x(a: float) -> np.ndarray:
    """3x3 rotation about +x."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def transform_points(t, pts) -> np.ndarray:
    """Apply a 4x4 transform to ``(N, 3+)`` points (xyz only), returns ``(N, 3)`` float64."""
    t = np.asarray(t, dtype=np.float64)
    p = np.asarray(pts)[:, :3].astype(np.float64)
    return p @ t[:3, :3].T + t[:3, 3]


def project_points(points_cam: np.ndarray, intrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection of camera-frame points: ``(uv (N, 2), z (N,))``; ``uv`` is NaN where ``z <= 0``."""
    z = points_cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uvw = points_cam @ np.asarray(intrinsics, dtype=np.float64).T
        uv = uvw[:, :2] / uvw[:, 2:3]
    uv[z <= 0] = np.nan
    return uv, z


#: Points nearer the camera than this (metres along its axis) are not projected.
MIN_PROJECTION_DEPTH = 0.1


def project_to_image(xyz: np.ndarray, intrinsics: np.ndarray, camera2lidar: np.ndarray, width: int, height: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one projection of LiDAR-frame points into a camera image (model, data engine, evaluation, node).

    Returns pixel coordinates ``uv`` ``(N, 2)`` (origin at the top-left pixel's centre; NaN behind the camera),
    depth ``z`` ``(N,)`` and ``ok`` ``(N,)``: in front (``z > MIN_PROJECTION_DEPTH``), finite, and on a pixel centre
    grid cell of the image (``0 <= u <= width - 1``, ``0 <= v <= height - 1``).
    """
    uv, z = project_points(transform_points(invert_transform(camera2lidar), xyz), intrinsics)
    ok = (z > MIN_PROJECTION_DEPTH) & np.all(np.isfinite(uv), axis=1)
    ok &= (uv[:, 0] >= 0) & (uv[:, 0] <= width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= height - 1)
    return uv, z, ok
