# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""``sensor_msgs/PointCloud2`` <-> numpy for any field layout.

The reading core is duck-typed: it only uses the attributes ``fields[i].name/offset/datatype/count``,
``height``, ``width``, ``point_step``, ``row_step``, ``is_bigendian`` and ``data``, so it works the same on
rclpy messages and on ``rosbags`` messages (``sam4d_model.data.rosbag_io`` can reuse it without ROS).

Supported: x/y/z as float32 or float64 at any offset, padding between fields and at the end of points and
rows, big- and little-endian data, organised (``height > 1``) and unorganised clouds, fields with
``count > 1``. Building messages imports ``sensor_msgs`` lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

#: PointField datatype constant -> numpy type code (sensor_msgs/PointField).
DATATYPES: Dict[int, str] = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
#: numpy type code -> PointField datatype constant.
DTYPE_TO_DATATYPE: Dict[str, int] = {v: k for k, v in DATATYPES.items()}


class PointCloudError(ValueError):
    """A cloud that cannot be read: missing x/y/z, inconsistent sizes, unknown datatypes."""


@dataclass
class FieldSpec:
    """One ``PointField``: name, byte offset in the point, datatype constant and element count."""

    name: str
    offset: int
    datatype: int
    count: int = 1


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


def field_specs(msg) -> List[FieldSpec]:
    """The fields of a PointCloud2 (rclpy or rosbags message) as :class:`FieldSpec`."""
    return [FieldSpec(str(f.name), int(f.offset), int(f.datatype), max(int(f.count), 1)) for f in msg.fields]


def structured_dtype(fields: Sequence[FieldSpec], point_step: int, big_endian: bool) -> np.dtype:
    """A numpy structured dtype with one entry per field at its offset and ``itemsize == point_step``.

    Fields with an unknown datatype, an empty or duplicate name, or that do not fit into the point are
    skipped (they cannot be read, but they do not stop the others from being read).
    """
    order = ">" if big_endian else "<"
    names, formats, offsets = [], [], []
    for f in fields:
        code = DATATYPES.get(f.datatype)
        if code is None or not f.name or f.name in names:
            continue
        size = np.dtype(code).itemsize * f.count
        if f.offset < 0 or f.offset + size > point_step:
            continue
        names.append(f.name)
        formats.append((order + code, (f.count,)) if f.count > 1 else order + code)
        offsets.append(f.offset)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": int(point_step)})


def cloud_point_rows(msg) -> np.ndarray:
    """The raw bytes of the cloud as ``(height * width, point_step)`` uint8, row padding removed."""
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    n = height * width
    if n == 0:
        return np.zeros((0, max(point_step, 0)), np.uint8)
    if point_step <= 0:
        raise PointCloudError(f"point_step is {point_step} for a cloud of {n} points")
    if row_step < width * point_step:
        if height == 1:
            row_step = width * point_step  # common producer bug: row_step left at 0 for unorganised clouds
        else:
            raise PointCloudError(f"row_step {row_step} < width {width} * point_step {point_step}")
    raw = np.frombuffer(msg.data, dtype=np.uint8)
    need = (height - 1) * row_step + width * point_step
    if raw.size < need:
        raise PointCloudError(f"data has {raw.size} bytes, the header (height {height}, width {width}, "
                              f"point_step {point_step}, row_step {row_step}) needs {need}")
    if row_step == width * point_step:
        return raw[: n * point_step].reshape(n, point_step)
    rows = np.lib.stride_tricks.as_strided(raw, shape=(height, width * point_step), strides=(row_step, 1))
    return np.ascontiguousarray(rows).reshape(n, point_step)


def cloud_to_structured(msg) -> np.ndarray:
    """The cloud as a ``(height * width,)`` structured array (a view on the message data when possible)."""
    rows = cloud_point_rows(msg)
    dtype = structured_dtype(field_specs(msg), int(msg.point_step), bool(msg.is_bigendian))
    if rows.shape[0] == 0:
        return np.zeros(0, dtype=dtype)
    return rows.reshape(-1).view(dtype)


def read_cloud(msg, intensity_fields: Sequence[str] = ("intensity", "i", "reflectivity")) -> CloudArrays:
    """Read x, y, z (and intensity when present) from any PointCloud2 layout.

    Raises :class:`PointCloudError` with a readable reason when x, y or z is missing or not numeric or
    when the sizes in the header do not match the data.
    """
    specs = {f.name: f for f in field_specs(msg)}
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
