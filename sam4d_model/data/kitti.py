# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""KITTI raw drives (calibration files, ``image_02``, Velodyne ``.bin``, OXTS poses) as SAM4D frames.

Frames: the colour camera ``image_02`` (rectified, ``K = P_rect_02[:3, :3]``) and the HDL-64E sweep with columns
x, y, z, intensity, ring, time (ring recovered from the scan order, time from the azimuth relative to the sweep
stamp, the moment the scanner faces forward). ``camera2lidar`` is the inverse of
``[I | K^-1 P_rect_02[:, 3]] @ R_rect_00 @ [R | T]_velo_to_cam``; ``lidar2world`` is the OXTS (Mercator) IMU pose
relative to the first frame times ``T_imu_velo``; ``base_link`` is the IMU frame.
"""

from __future__ import annotations

import calendar
import math
from datetime import datetime
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..types import CameraFrame, Frame
from .geometry import invert_transform, make_transform, rot_x, rot_y, rot_z
from .io_utils import DataError, check_pose

CAMERA_NAME = "FRONT"
POINT_FIELDS = ("x", "y", "z", "intensity", "ring", "time")
_EARTH_RADIUS = 6378137.0


def read_calib_file(path: Path) -> Dict[str, np.ndarray]:
    """``key: numbers`` lines of a KITTI calibration file (non-numeric entries such as calib_time are skipped)."""
    out = {}
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise DataError(f"{path}: cannot read calibration: {e}") from None
    for line in text.splitlines():
        if ":" not in line:
            continue
        k, v = line.split(":", 1)
        try:
            out[k.strip()] = np.array([float(x) for x in v.split()])
        except ValueError:
            continue
    return out


def parse_timestamp_ns(s: str) -> int:
    """``'2011-09-26 13:08:24.967930880'`` (UTC) -> integer nanoseconds since the epoch."""
    s = s.strip()
    base, _, frac = s.partition(".")
    try:
        sec = calendar.timegm(datetime.strptime(base, "%Y-%m-%d %H:%M:%S").timetuple())
        return sec * 1_000_000_000 + int((frac + "000000000")[:9])
    except ValueError as e:
        raise DataError(f"bad KITTI timestamp {s!r}: {e}") from None


def _read_stamps(path: Path) -> List[int]:
    if not path.exists():
        raise DataError(f"{path}: timestamps file is missing")
    return [parse_timestamp_ns(x) for x in path.read_text().splitlines() if x.strip()]


def estimate_rings(points: np.ndarray, num_rings: int = 64) -> np.ndarray:
    """Laser index per point of a KITTI sweep (points are stored ring after ring; a ring ends where the azimuth
    wraps around), clipped to ``[0, num_rings)``.
    """
    az = np.arctan2(points[:, 1], points[:, 0])
    jumps = np.flatnonzero((az[:-1] < 0) & (az[1:] >= 0) & (np.abs(np.diff(az)) < np.pi / 2)) + 1 \
        if len(az) > 1 else np.zeros(0, int)
    # a new ring starts where the azimuth crosses the rear half from negative to positive (scan goes clockwise
    # from the back); require big gaps between crossings to ignore noise
    ring = np.zeros(len(points), dtype=np.int64)
    if len(jumps):
        keep = [jumps[0]]
        for j in jumps[1:]:
            if j - keep[-1] > 200:
                keep.append(j)
        ring[np.asarray(keep)] = 1
        ring = np.cumsum(ring)
    ring = ring.max() - ring if ring.max() > 0 else ring  # first stored ring is the highest laser
    return np.clip(ring, 0, num_rings - 1)


def oxts_poses(oxts: np.ndarray) -> np.ndarray:
    """IMU-to-world 4x4 poses from OXTS records (lat, lon, alt, roll, pitch, yaw first); world = first position,
    x east, y north, z up.
    """
    lat0 = oxts[0, 0]
    scale = math.cos(math.radians(lat0))
    poses = []
    t0 = None
    for rec in oxts:
        lat, lon, alt, roll, pitch, yaw = rec[:6]
        tx = scale * lon * math.pi * _EARTH_RADIUS / 180.0
        ty = scale * _EARTH_RADIUS * math.log(math.tan((90.0 + lat) * math.pi / 360.0))
        t = np.array([tx, ty, alt])
        if t0 is None:
            t0 = t.copy()
        poses.append(make_transform(rot_z(yaw) @ rot_y(pitch) @ rot_x(roll), t - t0))
    return np.stack(poses)


class KittiRawDrive:
    """A KITTI raw drive. ``path``: the ``*_sync`` folder, or its parent holding the calibration files."""

    def __init__(self, path: str | Path, camera: str = "image_02"):
        p = Path(path)
        if not p.is_dir():
            raise DataError(f"{p}: KITTI drive folder not found")
        if (p / "velodyne_points").is_dir():
            self.drive_dir, self.calib_dir = p, p.parent
        else:
            subs = sorted(d for d in p.iterdir() if d.is_dir() and (d / "velodyne_points").is_dir())
            if not subs:
                raise DataError(f"{p}: no '*_sync' drive folder with velodyne_points inside")
            self.drive_dir, self.calib_dir = subs[0], p
        self.name = self.drive_dir.name
        self.camera = camera
        cam_id = camera[-2:]
        c2c = read_calib_file(self.calib_dir / "calib_cam_to_cam.txt")
        v2c = read_calib_file(self.calib_dir / "calib_velo_to_cam.txt")
        i2v = read_calib_file(self.calib_dir / "calib_imu_to_velo.txt")
        try:
            p_rect = c2c[f"P_rect_{cam_id}"].reshape(3, 4)
            r_rect = np.eye(4)
            r_rect[:3, :3] = c2c["R_rect_00"].reshape(3, 3)
            velo2cam0 = make_transform(v2c["R"].reshape(3, 3), v2c["T"].reshape(3))
            self.imu2velo = check_pose(make_transform(i2v["R"].reshape(3, 3), i2v["T"].reshape(3)),
                                       "calib_imu_to_velo")
        except (KeyError, ValueError) as e:
            raise DataError(f"{self.calib_dir}: incomplete KITTI calibration ({e})") from None
        self.intrinsics = p_rect[:, :3].copy()
        t_cam = np.linalg.solve(self.intrinsics, p_rect[:, 3])
        velo2cam = make_transform(np.eye(3), t_cam) @ r_rect @ velo2cam0
        self.camera2lidar = invert_transform(velo2cam)
        self.camera2lidar[3] = (0, 0, 0, 1)
        self.base2lidar = invert_transform(self.imu2velo)  # base_link = IMU
        vdir = self.drive_dir / "velodyne_points"
        self.lidar_stamps = _read_stamps(vdir / "timestamps.txt")
        self.lidar_start = _read_stamps(vdir / "timestamps_start.txt") if (vdir / "timestamps_start.txt").exists() \
            else None
        self.lidar_end = _read_stamps(vdir / "timestamps_end.txt") if (vdir / "timestamps_end.txt").exists() else None
        self.image_stamps = _read_stamps(self.drive_dir / camera / "timestamps.txt")
        odir = self.drive_dir / "oxts" / "data"
        n_files = min(len(list((vdir / "data").glob("*.bin"))), len(list((self.drive_dir / camera / "data")
                                                                          .glob("*.png"))))
        self.indices = [i for i in range(n_files) if (vdir / "data" / f"{i:010d}.bin").exists()
                        and (self.drive_dir / camera / "data" / f"{i:010d}.png").exists()
                        and (odir / f"{i:010d}.txt").exists()]
        if not self.indices:
            raise DataError(f"{self.drive_dir}: no frame has velodyne, {camera} and oxts data")
        recs = []
        for i in range(max(self.indices) + 1):
            f = odir / f"{i:010d}.txt"
            if f.exists():
                recs.append(np.array([float(x) for x in f.read_text().split()][:6]))
            else:
                recs.append(recs[-1] if recs else np.zeros(6))
        self.imu_poses = oxts_poses(np.stack(recs))

    def __len__(self) -> int:
        return len(self.indices)

    def lidar2world(self, k: int) -> np.ndarray:
        """``T_world_lidar`` of the ``k``-th available frame."""
        return self.imu_poses[self.indices[k]] @ self.base2lidar

    def stamp_ns(self, k: int) -> int:
        """Sweep stamp (scanner facing forward) of the ``k``-th available frame."""
        return self.lidar_stamps[self.indices[k]]

    def points(self, k: int) -> np.ndarray:
        """``(N, 6)`` float32 x, y, z, intensity, ring, time of the ``k``-th available frame."""
        i = self.indices[k]
        path = self.drive_dir / "velodyne_points" / "data" / f"{i:010d}.bin"
        raw = np.fromfile(path, dtype=np.float32)
        if raw.size % 4:
            raise DataError(f"{path}: size is not a multiple of 4 floats (truncated?)")
        pts = raw.reshape(-1, 4)
        period = 0.1
        if self.lidar_start and self.lidar_end:
            period = max(1e-3, (self.lidar_end[i] - self.lidar_start[i]) * 1e-9)
        az = np.arctan2(pts[:, 1], pts[:, 0])
        tm = (-az / (2 * np.pi) * period).astype(np.float32)  # clockwise spin, forward at the stamp
        ring = estimate_rings(pts).astype(np.float32)
        return np.concatenate([pts, ring[:, None], tm[:, None]], 1).astype(np.float32)

    def image(self, k: int) -> np.ndarray:
        """RGB image of the ``k``-th available frame."""
        from .waymo4dseg import read_image

        return read_image(self.drive_dir / self.camera / "data" / f"{self.indices[k]:010d}.png")

    def frame(self, k: int) -> Frame:
        """The ``k``-th available frame as a :class:`~sam4d_model.types.Frame`."""
        cam = CameraFrame(CAMERA_NAME, self.image(k), self.intrinsics.copy(), self.camera2lidar.copy())
        ts_us = self.stamp_ns(k) // 1000
        return Frame(points=self.points(k), cameras=[cam], lidar2world=self.lidar2world(k), timestamp=ts_us / 1e6,
                     index=int(self.indices[k]))

    def camera_offset_ns(self, k: int) -> int:
        """Camera stamp minus sweep stamp for frame ``k``."""
        i = self.indices[k]
        return self.image_stamps[i] - self.lidar_stamps[i] if i < len(self.image_stamps) else 0

    def __iter__(self) -> Iterator[Tuple[Frame, None]]:
        for k in range(len(self)):
            yield self.frame(k), None


def import_kitti(path: str | Path, out_root: Optional[str | Path] = None, bag_path: Optional[str | Path] = None,
                 seq_name: Optional[str] = None, max_frames: Optional[int] = None, image_format: str = "png",
                 storage: str = "mcap", overwrite: bool = False, resume: bool = True, progress: bool = False,
                 **bag_kwargs) -> Dict[str, Path]:
    """Convert a KITTI raw drive to the Waymo-4DSeg layout (``out_root``) and/or a rosbag2 (``bag_path``)."""
    from .rosbag_io import write_bag
    from .waymo4dseg import SequenceWriter, timestamp_us

    drive = KittiRawDrive(path)
    n = len(drive) if max_frames is None else min(len(drive), int(max_frames))
    seq_name = seq_name or drive.name
    out: Dict[str, Path] = {}

    def rng_():
        it = range(n)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc=f"kitti {drive.name}", unit="frame", dynamic_ncols=True)
        return it

    if out_root is not None:
        extra = {"source": "kitti_raw", "drive": drive.name, "base2lidar": drive.base2lidar}
        with SequenceWriter(out_root, seq_name, image_format=image_format, resume=resume and not overwrite,
                            overwrite=overwrite, point_fields=POINT_FIELDS, extra_meta=extra) as w:
            for k in rng_():
                ts = drive.stamp_ns(k) // 1000
                if w.frame_complete(ts, [CAMERA_NAME]):
                    w.add_existing(ts, drive.indices[k])
                    continue
                f = drive.frame(k)
                assert timestamp_us(f) == ts
                w.add(f)
        out["layout"] = w.meta_path
    if bag_path is not None:
        offs = [drive.camera_offset_ns(k) for k in range(n)]
        bag_kwargs.setdefault("camera_offset_ms", float(np.median(offs)) * 1e-6 if offs else 8.0)
        frames = (drive.frame(k) for k in range(n))
        out["bag"] = write_bag(((f, None) for f in frames), bag_path, storage=storage, overwrite=overwrite,
                               progress=progress, num_frames=n, base2lidar=drive.base2lidar, point_fields=POINT_FIELDS,
                               write_ground_truth=False, **bag_kwargs)
    return out
