# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The numpy core of ``sensor_msgs/PointCloud2`` and ``sensor_msgs/Image`` decoding, without any ROS import.

Shared by the ROS node (``sam4d_ros.pointcloud`` / ``sam4d_ros.image``, rclpy messages) and the bag tools
(``sam4d_model.data.rosbag_io``, ``rosbags`` messages): both message libraries expose the same attribute names
(``fields[i].name/offset/datatype/count``, ``height``, ``width``, ``point_step``, ``row_step``, ``is_bigendian``,
``encoding``, ``step``, ``data``), which is all this module reads. ``data`` may be ``bytes``, ``array.array`` or a
uint8 numpy array. Errors are :class:`MessageDecodeError` (a ``ValueError``); callers re-raise their own types.

Handled: fields at any offset with padding between fields and at the end of points and rows, big- and little-endian
data, organised and unorganised clouds, ``count > 1`` fields, ``row_step`` left at 0 on unorganised clouds (a common
driver bug); image rows padded to a larger ``step``, big-endian 16/32/64-bit pixels.
"""

from __future__ import annotations

from typing import Dict, Iterable, Tuple

import numpy as np

#: PointField datatype constant -> numpy type code (sensor_msgs/PointField).
POINTFIELD_DATATYPES: Dict[int, str] = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
#: numpy type code (no byte order) -> PointField datatype constant.
DTYPE_TO_POINTFIELD: Dict[str, int] = {v: k for k, v in POINTFIELD_DATATYPES.items()}

#: Image encoding -> (numpy dtype, channels). ``8UC3``/``8UC4`` are OpenCV order (bgr/bgra).
IMAGE_ENCODINGS: Dict[str, Tuple[type, int]] = {
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1), "8UC1": (np.uint8, 1), "8UC3": (np.uint8, 3), "8UC4": (np.uint8, 4),
    "mono16": (np.uint16, 1), "16UC1": (np.uint16, 1), "32SC1": (np.int32, 1), "32FC1": (np.float32, 1),
    "64FC1": (np.float64, 1),
}


class MessageDecodeError(ValueError):
    """A message whose header does not describe its data (unknown type or encoding, sizes that do not match)."""


def message_bytes(data) -> np.ndarray:
    """The ``data`` field as a flat uint8 array (a view when the object supports the buffer protocol)."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def structured_dtype(fields: Iterable, point_step: int, big_endian: bool, strict: bool = False) -> np.dtype:
    """A structured dtype with one entry per point field at its offset and ``itemsize == point_step``.

    ``fields``: objects with ``name``, ``offset``, ``datatype``, ``count``. A field with an unknown datatype
    raises :class:`MessageDecodeError` when ``strict``, else it is skipped like fields with an empty or duplicate
    name or that do not fit into the point (they cannot be read, but do not stop the others from being read).
    """
    order = ">" if big_endian else "<"
    names, formats, offsets = [], [], []
    for f in fields:
        name, offset, datatype, count = str(f.name), int(f.offset), int(f.datatype), max(int(f.count), 1)
        code = POINTFIELD_DATATYPES.get(datatype)
        if code is None and strict:
            raise MessageDecodeError(f"PointCloud2 field {name!r} has unknown datatype {datatype}")
        if code is None or not name or name in names:
            continue
        if offset < 0 or offset + np.dtype(code).itemsize * count > point_step:
            continue
        names.append(name)
        formats.append((order + code, (count,)) if count > 1 else order + code)
        offsets.append(offset)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": int(point_step)})


def cloud_point_rows(msg) -> np.ndarray:
    """The raw bytes of a cloud as ``(height * width, point_step)`` uint8, row padding removed."""
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    n = height * width
    if n == 0:
        return np.zeros((0, max(point_step, 0)), np.uint8)
    if point_step <= 0:
        raise MessageDecodeError(f"point_step is {point_step} for a cloud of {n} points")
    if row_step < width * point_step:
        if height == 1:
            row_step = width * point_step  # common producer bug: row_step left at 0 for unorganised clouds
        else:
            raise MessageDecodeError(f"row_step {row_step} < width {width} * point_step {point_step}")
    raw = message_bytes(msg.data)
    need = (height - 1) * row_step + width * point_step
    if raw.size < need:
        raise MessageDecodeError(f"data has {raw.size} bytes, the header (height {height}, width {width}, "
                                 f"point_step {point_step}, row_step {row_step}) needs {need}")
    if row_step == width * point_step:
        return raw[: n * point_step].reshape(n, point_step)
    rows = np.lib.stride_tricks.as_strided(raw, shape=(height, width * point_step), strides=(row_step, 1))
    return np.ascontiguousarray(rows).reshape(n, point_step)


def cloud_to_structured(msg, strict: bool = False) -> np.ndarray:
    """A PointCloud2 as a ``(height * width,)`` structured array (a view on the data when possible)."""
    dtype = structured_dtype(msg.fields, int(msg.point_step), bool(msg.is_bigendian), strict)
    rows = cloud_point_rows(msg)
    if rows.shape[0] == 0:
        return np.zeros(0, dtype=dtype)
    return rows.reshape(-1).view(dtype)


def image_to_array(msg) -> np.ndarray:
    """The pixels of a ``sensor_msgs/Image`` as ``(H, W)`` or ``(H, W, C)`` in the encoding's dtype and order."""
    enc = str(msg.encoding)
    if enc not in IMAGE_ENCODINGS:
        raise MessageDecodeError(f"unsupported image encoding {enc!r} (supported: "
                                 f"{', '.join(sorted(IMAGE_ENCODINGS))})")
    dtype, ch = IMAGE_ENCODINGS[enc]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    px = dt.itemsize * ch
    if h <= 0 or w <= 0:
        raise MessageDecodeError(f"empty image ({w}x{h})")
    if step < w * px:
        raise MessageDecodeError(f"step {step} < width {w} * {px} bytes per pixel ({enc})")
    raw = message_bytes(msg.data)
    if raw.size < (h - 1) * step + w * px:
        raise MessageDecodeError(f"image data has {raw.size} bytes, {w}x{h} {enc} with step {step} needs {h * step}")
    rows = np.lib.stride_tricks.as_strided(raw, shape=(h, w * px), strides=(step, 1))
    arr = np.ascontiguousarray(rows).view(dt).reshape((h, w, ch) if ch > 1 else (h, w))
    return arr.astype(dt.newbyteorder("="), copy=False)
