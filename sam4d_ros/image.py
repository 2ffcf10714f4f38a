# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""``sensor_msgs/Image``, ``CompressedImage`` and ``CameraInfo`` <-> numpy (no cv_bridge needed).

Readable encodings: rgb8, bgr8, rgba8, bgra8, mono8, mono16, 8UC1, 8UC3 (OpenCV order, i.e. bgr), 8UC4,
16UC1, 32SC1, 32FC1, 64FC1. Anything else raises :class:`ImageError` with the list of supported encodings.
Row padding (``step > width * pixel size``) and big-endian 16/32/64-bit data are handled (the decoding core is
:mod:`sam4d_model.data.msg_codec`, shared with the bag tools).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from sam4d_model.data.msg_codec import IMAGE_ENCODINGS, MessageDecodeError, image_to_array

#: encoding -> (numpy dtype, channels) (shared with the bag tools).
ENCODINGS = IMAGE_ENCODINGS


class ImageError(ValueError):
    """An image that cannot be used: unknown encoding, inconsistent sizes, undecodable compressed data."""


def image_to_numpy(msg) -> np.ndarray:
    """The pixels of a ``sensor_msgs/Image`` as ``(H, W)`` or ``(H, W, C)`` in the encoding's dtype and order."""
    try:
        return image_to_array(msg)
    except MessageDecodeError as exc:
        raise ImageError(str(exc)) from None


def to_rgb8(arr: np.ndarray, encoding: str) -> np.ndarray:
    """Convert decoded pixels to ``(H, W, 3)`` uint8 RGB (what the model takes)."""
    if encoding in ("rgb8",):
        return arr
    if encoding in ("bgr8", "8UC3"):
        return np.ascontiguousarray(arr[..., ::-1])
    if encoding == "rgba8":
        return np.ascontiguousarray(arr[..., :3])
    if encoding in ("bgra8", "8UC4"):
        return np.ascontiguousarray(arr[..., 2::-1])
    if arr.ndim == 2:
        if arr.dtype != np.uint8:
            a = arr.astype(np.float32)
            lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
            a = np.zeros_like(a) if hi <= lo else (a - lo) * (255.0 / (hi - lo))
            arr = np.nan_to_num(a).clip(0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    raise ImageError(f"cannot convert encoding {encoding!r} to rgb8")


def image_msg_to_rgb(msg) -> np.ndarray:
    """A ``sensor_msgs/Image`` as ``(H, W, 3)`` uint8 RGB."""
    return to_rgb8(image_to_numpy(msg), str(msg.encoding))


def compressed_to_rgb(msg) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (jpeg/png) as ``(H, W, 3)`` uint8 RGB."""
    import cv2

    buf = np.frombuffer(msg.data, np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise ImageError(f"cannot decode compressed image (format {msg.format!r}, {buf.size} bytes)")
    return np.ascontiguousarray(img[:, :, ::-1])


def numpy_to_image(arr: np.ndarray, encoding: str, header=None):
    """Build a ``sensor_msgs/Image`` from an array in the given encoding (little-endian, no padding)."""
    import array

    from sensor_msgs.msg import Image

    if encoding not in ENCODINGS:
        raise ImageError(f"unsupported image encoding {encoding!r}")
    dtype, ch = ENCODINGS[encoding]
    arr = np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("<"))
    if arr.ndim != (3 if ch > 1 else 2) or (ch > 1 and arr.shape[2] != ch):
        raise ImageError(f"array of shape {arr.shape} does not match encoding {encoding}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(arr.shape[1] * arr.dtype.itemsize * ch)
    msg.data = array.array("B", arr.tobytes())
    return msg


@dataclass
class CameraModel:
    """Pinhole intrinsics of one camera from ``sensor_msgs/CameraInfo``.

    ``K`` is the matrix of the image the model sees: the raw image's K, or when ``rectify`` is on and the
    camera has distortion, the same K after undistortion.
    """

    frame_id: str
    width: int
    height: int
    K: np.ndarray
    D: np.ndarray
    distortion_model: str

    @property
    def has_distortion(self) -> bool:
        return bool(self.D.size and np.any(np.abs(self.D) > 1e-9))

    def check_size(self, width: int, height: int) -> Optional[str]:
        """``None`` when an image of that size matches this calibration, else the reason it does not."""
        if (width, height) != (self.width, self.height):
            return (f"image is {width}x{height} but CameraInfo ({self.frame_id}) says {self.width}x{self.height}; "
                    f"dropping the pair (fix the driver or the calibration)")
        return None


def camera_model(info) -> CameraModel:
    """Validate a CameraInfo and return its :class:`CameraModel`; :class:`ImageError` with the reason if bad."""
    K = np.asarray(info.k, np.float64).reshape(3, 3) if len(info.k) == 9 else np.zeros((3, 3))
    w, h = int(info.width), int(info.height)
    if w <= 0 or h <= 0:
        raise ImageError(f"CameraInfo has size {w}x{h}")
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] == 0:
        raise ImageError(f"CameraInfo K is not a valid pinhole matrix: {K.ravel().tolist()}")
    D = np.asarray(info.d, np.float64).reshape(-1)
    model = str(info.distortion_model)
    if not np.all(np.isfinite(D)):
        raise ImageError(f"CameraInfo D has non-finite coefficients: {D.tolist()}")
    if D.size and np.any(np.abs(D) > 1e-9):
        sizes = (4,) if model == "equidistant" else (4, 5, 8, 12, 14)
        if model == "equidistant" and D.size > 4:
            sizes = (D.size,) if not np.any(np.abs(D[4:]) > 1e-9) else sizes  # trailing zeros are fine
        if D.size not in sizes:
            raise ImageError(f"CameraInfo D has {D.size} coefficients for distortion model {model!r} "
                             f"(expected one of {list(sizes)})")
    return CameraModel(frame_id=str(info.header.frame_id), width=w, height=h, K=K / K[2, 2], D=D,
                       distortion_model=model)


class Rectifier:
    """Undistorts images of one camera with OpenCV (maps cached per calibration)."""

    def __init__(self):
        self._key: Optional[Tuple] = None
        self._maps = None

    def __call__(self, img: np.ndarray, cam: CameraModel) -> np.ndarray:
        if not cam.has_distortion:
            return img
        import cv2

        key = (cam.width, cam.height, cam.K.tobytes(), cam.D.tobytes(), cam.distortion_model)
        if key != self._key:
            if cam.distortion_model == "equidistant":
                m1, m2 = cv2.fisheye.initUndistortRectifyMap(cam.K, cam.D[:4], np.eye(3), cam.K,
                                                             (cam.width, cam.height), cv2.CV_16SC2)
            else:
                m1, m2 = cv2.initUndistortRectifyMap(cam.K, cam.D, np.eye(3), cam.K, (cam.width, cam.height),
                                                     cv2.CV_16SC2)
            self._key, self._maps = key, (m1, m2)
        return cv2.remap(img, self._maps[0], self._maps[1], cv2.INTER_LINEAR)
