# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""``sensor_msgs/PointCloud2`` <-> numpy for any field layout.

Reading uses the message-library-independent core in :mod:`sam4d_model.data.msg_codec` (shared with the bag tools
of ``sam4d_model.data.rosbag_io``): x/y/z as float32 or float64 at any offset, padding between fields and at the
end of points and rows, big- and little-endian data, organised (``height > 1``) and unorganised clouds, fields with
``count > 1``. Fields that cannot be read (unknown datatype, not fitting into the point) are skipped. Building
messages imports ``sensor_msgs`` lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from sam4d_model.data import msg_codec
from sam4d_model.data.msg_codec import DTYPE_TO_POINTFIELD as DTYPE_TO_DATATYPE
from sam4d_model.data.msg_codec import POINTFIELD_DATATYPES as DATATYPES


class PointCloudError(ValueError):
    """A cloud that cannot be read: missing x/y/z, inconsistent sizes, unknown datatypes."""


@dataclass
class CloudArrays:
    """Points of one cloud as arrays, in message order (row-major for organised clouds).

    ``xyz``: ``(N, 3)`` float32 (NaN/inf kept as they are); ``valid``: ``(N,)`` finite xyz;
    ``intensity``: ``(N,)`` float32 or ``None`` when the cloud has no intensity field.
    """

    xyz: np.ndarray
    valid: np.ndarray
    intensity: Optional[np.ndarray]
    height: int
    width: int

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])


def cloud_point_rows(msg) -> np.ndarray:
    """The raw bytes of the cloud as ``(height * width, point_step)`` uint8, row padding removed."""
    try:
        return msg_codec.cloud_point_rows(msg)
    except msg_codec.MessageDecodeError as exc:
        raise PointCloudError(str(exc)) from None


def cloud_to_structured(msg) -> np.ndarray:
    """The cloud as a ``(height * width,)`` structured array (a view on the message data when possible)."""
    try:
        return msg_codec.cloud_to_structured(msg)
    except msg_codec.MessageDecodeError as exc:
        raise PointCloudError(str(exc)) from None


def read_cloud(msg, intensity_fields: Sequence[str] = ("intensity", "i", "reflectivity")) -> CloudArrays:
    """Read x, y, z (and intensity when present) from any PointCloud2 layout.

    Raises :class:`PointCloudError` with a readable reason when x, y or z is missing or not numeric or
    when the sizes in the header do not match the data.
    """
    specs = {str(f.name): f for f in msg.fields}
    missing = [c for c in "xyz" if c not in specs]
    if missing:
        raise PointCloudError(f"cloud has no field(s) {', '.join(missing)} (fields: {sorted(specs) or 'none'})")
    for c in "xyz":
        if specs[c].datatype not in DATATYPES:
            raise PointCloudError(f"field {c} has unknown datatype {specs[c].datatype}")
    arr = cloud_to_structured(msg)
    for c in "xyz":
        if c not in arr.dtype.names:
            raise PointCloudError(f"field {c} (offset {specs[c].offset}) does not fit in point_step {msg.point_step}")
    n = arr.shape[0]
    xyz = np.empty((n, 3), np.float32)
    for i, c in enumerate("xyz"):
        col = arr[c]
        xyz[:, i] = col[:, 0] if col.ndim > 1 else col
    valid = np.isfinite(xyz).all(axis=1)
    intensity = None
    for name in intensity_fields:
        if name in arr.dtype.names:
            col = arr[name]
            intensity = (col[:, 0] if col.ndim > 1 else col).astype(np.float32)
            break
    return CloudArrays(xyz=xyz, valid=valid, intensity=intensity, height=int(msg.height), width=int(msg.width))


# --------------------------------------------------------------------------------------------------------------
# Building messages (rclpy)
# --------------------------------------------------------------------------------------------------------------


def _byte_array(buf: np.ndarray):
    import array

    return array.array("B", np.ascontiguousarray(buf).tobytes())


def make_cloud(header, columns: Dict[str, np.ndarray], big_endian: bool = False):
    """Build an unorganised ``sensor_msgs/PointCloud2`` from named 1-D columns (packed, no padding).

    ``columns`` maps field names to ``(N,)`` arrays of any PointField-compatible dtype, in field order.
    """
    from sensor_msgs.msg import PointCloud2, PointField

    order = ">" if big_endian else "<"
    names = list(columns)
    n = int(len(next(iter(columns.values())))) if columns else 0
    fields, formats, offset = [], [], 0
    for name in names:
        col = np.asarray(columns[name])
        code = col.dtype.str[1:]
        if code not in DTYPE_TO_DATATYPE:
            raise PointCloudError(f"column {name} has dtype {col.dtype} that PointField cannot describe")
        fields.append(PointField(name=name, offset=offset, datatype=DTYPE_TO_DATATYPE[code], count=1))
        formats.append(order + code)
        offset += col.dtype.itemsize
    dtype = np.dtype({"names": names, "formats": formats})
    arr = np.empty(n, dtype=dtype)
    for name in names:
        arr[name] = columns[name]
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = 1, n
    msg.fields = fields
    msg.is_bigendian = bool(big_endian)
    msg.point_step = int(dtype.itemsize)
    msg.row_step = int(dtype.itemsize) * n
    msg.is_dense = False
    msg.data = _byte_array(arr.view(np.uint8))
    return msg


def append_fields(msg, object_id: np.ndarray, score: np.ndarray, keep: Optional[np.ndarray] = None,
                  id_field: str = "object_id", score_field: str = "score"):
    """The input cloud with an ``object_id`` (int32) and a ``score`` (float32) field appended to every point.

    The original bytes of every point are kept as they are (all input fields, their offsets and padding), the
    two fields are added after them in the cloud's byte order. ``keep`` (bool per point) drops the other points;
    the result is then unorganised (``height == 1``). Existing fields of the same names are renamed
    ``<name>_in`` so the output stays unambiguous. Header (stamp, frame) is copied.
    """
    from sensor_msgs.msg import PointCloud2, PointField

    rows = cloud_point_rows(msg)
    n, step = rows.shape[0], int(msg.point_step)
    object_id = np.asarray(object_id)
    score = np.asarray(score)
    if object_id.shape != (n,) or score.shape != (n,):
        raise PointCloudError(f"labels have shapes {object_id.shape}/{score.shape}, the cloud has {n} points")
    order = ">" if msg.is_bigendian else "<"
    out_step = step + 8
    if keep is not None:
        keep = np.asarray(keep, bool)
        rows, object_id, score = rows[keep], object_id[keep], score[keep]
    m = rows.shape[0]
    out = np.empty((m, out_step), np.uint8)
    out[:, :step] = rows
    out[:, step:step + 4] = object_id.astype(order + "i4").view(np.uint8).reshape(m, 4)
    out[:, step + 4:] = score.astype(order + "f4").view(np.uint8).reshape(m, 4)
    fields = []
    for f in msg.fields:
        name = f.name + "_in" if f.name in (id_field, score_field) else f.name
        fields.append(PointField(name=name, offset=int(f.offset), datatype=int(f.datatype), count=int(f.count)))
    fields.append(PointField(name=id_field, offset=step, datatype=PointField.INT32, count=1))
    fields.append(PointField(name=score_field, offset=step + 4, datatype=PointField.FLOAT32, count=1))
    res = PointCloud2()
    res.header = msg.header
    organised = keep is None
    res.height = int(msg.height) if organised else 1
    res.width = int(msg.width) if organised else m
    if res.height * res.width != m:  # inconsistent header on input: publish unorganised
        res.height, res.width = 1, m
    res.fields = fields
    res.is_bigendian = bool(msg.is_bigendian)
    res.point_step = out_step
    res.row_step = out_step * res.width
    res.is_dense = bool(msg.is_dense) if organised else False
    res.data = _byte_array(out)
    return res


def labels_from_cloud(msg, id_field: str = "object_id") -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Read back ``(object_id, score)`` from an output cloud (tests, demo, evaluation)."""
    arr = cloud_to_structured(msg)
    ids = np.asarray(arr[id_field], np.int32)
    score = np.asarray(arr["score"], np.float32) if "score" in arr.dtype.names else None
    return ids, score
