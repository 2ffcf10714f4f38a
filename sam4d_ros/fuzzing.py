# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Property-based fuzzing of everything that reads outside input (hypothesis strategies and targets).

Each target feeds generated input to one decoder and passes when the decoder returns or raises its documented error
(a ``ValueError`` subclass whose message names the problem); any other exception is a failure. Used by
``test/test_fuzz_inputs.py`` (a few hundred cases per target) and ``benchmarks/fuzz_inputs.py`` (100k cases).
Development tooling: imports ``hypothesis``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Callable, Dict, Tuple, Type

import numpy as np
from hypothesis import strategies as st

from sam4d_model.data.io_utils import DataError
from sam4d_ros.image import ImageError
from sam4d_ros.pointcloud import PointCloudError

_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)
_NAMES = st.sampled_from(["x", "y", "z", "intensity", "i", "reflectivity", "ring", "t", "", "x "]) | st.text(max_size=6)


@dataclass
class Target:
    """One fuzzed decoder: a strategy of inputs, the call, and the error type it may raise."""

    strategy: st.SearchStrategy
    call: Callable
    allowed: Tuple[Type[BaseException], ...]


@st.composite
def point_clouds(draw):
    """``sensor_msgs/PointCloud2`` with arbitrary fields, offsets, sizes and data (mostly near-valid)."""
    from sensor_msgs.msg import PointCloud2, PointField

    n_fields = draw(st.integers(0, 6))
    fields = []
    for _ in range(n_fields):
        fields.append(PointField(name=draw(_NAMES), offset=draw(st.integers(0, 40)),
                                 datatype=draw(st.integers(0, 9)), count=draw(st.integers(0, 3))))
    width, height = draw(st.integers(0, 40)), draw(st.integers(0, 3))
    step = draw(st.integers(0, 48))
    row = draw(st.sampled_from([step * width, step * width + draw(st.integers(-8, 8))]))
    n = max(0, draw(st.sampled_from([row * height, row * height + draw(st.integers(-16, 16))])))
    msg = PointCloud2(height=height, width=width, point_step=step, row_step=max(0, row),
                      is_bigendian=draw(st.booleans()), is_dense=draw(st.booleans()))
    msg.fields = fields
    msg.data = draw(st.binary(min_size=min(n, 2000), max_size=min(n, 2000)))
    return msg


def _read_cloud(msg):
    from sam4d_ros.pointcloud import read_cloud

    c = read_cloud(msg)
    assert c.xyz.shape == (c.num_points, 3) and c.valid.shape == (c.num_points,)


_ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC3", "8UC4", "16UC1", "32FC1", "yuv422",
              "bayer_rggb8", "", "RGB8"]


@st.composite
def images(draw):
    """``sensor_msgs/Image`` with arbitrary encodings, sizes, steps and data."""
    from sensor_msgs.msg import Image

    enc = draw(st.sampled_from(_ENCODINGS) | st.text(max_size=8))
    w, h = draw(st.integers(0, 24)), draw(st.integers(0, 24))
    step = draw(st.integers(0, 100))
    n = draw(st.sampled_from([step * h, max(0, step * h + draw(st.integers(-10, 10)))]))
    msg = Image(height=h, width=w, encoding=enc, step=step, is_bigendian=draw(st.integers(0, 1)))
    msg.data = draw(st.binary(min_size=min(n, 3000), max_size=min(n, 3000)))
    return msg


def _image(msg):
    from sam4d_ros.image import image_msg_to_rgb

    rgb = image_msg_to_rgb(msg)
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8


@st.composite
def compressed_images(draw):
    """``sensor_msgs/CompressedImage``: random bytes, or a valid small JPEG/PNG with some bytes flipped or cut."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    fmt = draw(st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8", "", "tiff"]))
    if draw(st.booleans()):
        data = draw(st.binary(max_size=400))
    else:
        h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
        img = np.frombuffer(draw(st.binary(min_size=h * w * 3, max_size=h * w * 3)), np.uint8).reshape(h, w, 3)
        ok, enc = cv2.imencode(".png" if "png" in fmt else ".jpg", img)
        data = bytearray(enc.tobytes())
        for _ in range(draw(st.integers(0, 4))):
            if data:
                data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        data = bytes(data[: draw(st.integers(0, len(data)))])
    msg = CompressedImage(format=fmt)
    msg.data = data
    return msg


def _compressed(msg):
    from sam4d_ros.image import compressed_to_rgb

    rgb = compressed_to_rgb(msg)
    assert rgb.ndim == 3 and rgb.shape[2] == 3


@st.composite
def camera_infos(draw):
    """``sensor_msgs/CameraInfo`` with arbitrary K, D, distortion models and sizes."""
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo(width=draw(st.integers(-2, 64)), height=draw(st.integers(-2, 64)))
    k = draw(st.lists(_FLOATS | st.floats(1, 500), min_size=9, max_size=9))
    msg.k = [float(v) for v in k]
    msg.d = [float(v) for v in draw(st.lists(_FLOATS | st.floats(-0.5, 0.5), max_size=14))]
    msg.distortion_model = draw(st.sampled_from(["plumb_bob", "rational_polynomial", "equidistant", "", "fisheye"]))
    return msg


def _camera_info(msg):
    from sam4d_ros.image import Rectifier, camera_model

    cam = camera_model(msg)
    out = Rectifier()(np.zeros((cam.height, cam.width, 3), np.uint8), cam)
    assert out.shape[:2] == (cam.height, cam.width)


@st.composite
def prompts(draw):
    """``sam4d_ros/Prompt`` with arbitrary modalities, ids, points (NaN, inf, huge), boxes, cameras and stamps."""
    from geometry_msgs.msg import Point

    from sam4d_ros.msg import Prompt

    def pt():
        return Point(x=float(draw(_FLOATS | st.floats(-300, 300))), y=float(draw(_FLOATS | st.floats(-300, 300))),
                     z=float(draw(_FLOATS | st.floats(-300, 300))))

    p = Prompt(object_id=draw(st.integers(-3, 2**31 - 1)), modality=draw(st.integers(0, 255)),
               camera=draw(st.sampled_from(["", "camera", "cam2"]) | st.text(max_size=5)))
    p.header.frame_id = draw(st.sampled_from(["", "lidar", "odom", "map", "nowhere"]))
    p.header.stamp.sec = draw(st.integers(0, 2**31 - 1))
    p.header.stamp.nanosec = draw(st.integers(0, 999_999_999))
    p.positive_points = [pt() for _ in range(draw(st.integers(0, 4)))]
    p.negative_points = [pt() for _ in range(draw(st.integers(0, 3)))]
    p.has_box = draw(st.booleans())
    p.box_min, p.box_max = pt(), pt()
    p.reset_object = draw(st.booleans())
    return p


def _prompt(msg):
    from sam4d_ros.prompts import PromptContext, validate_prompt

    def lookup(target, source, stamp):
        if "nowhere" in (target, source):
            raise LookupError(f"no transform {source} -> {target}")
        return np.eye(4)

    ctx = PromptContext(["camera"], [(64, 48)], "lidar", 1_700_000_000 * 10**9, 16, lookup=lookup)
    cmd, why = validate_prompt(msg, ctx)
    assert (cmd is None) == bool(why), (cmd, why)


def _json_values(depth: int = 3):
    leaf = st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True) | st.text(max_size=6)
    return st.recursive(leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                        max_leaves=12)


@st.composite
def label_files(draw):
    """SAM4D label JSON: arbitrary structures, and near-valid ones with broken RLE masks and ids."""
    if draw(st.booleans()):
        return draw(_json_values())
    obj = {"object_id": draw(st.integers(-2, 40) | st.text(max_size=3) | st.none()),
           "semantic": draw(st.text(max_size=6) | st.integers()),
           "lidar_mask": draw(st.sampled_from([{"size": [50, 1], "counts": "0"},
                                               {"size": [50, 1], "counts": draw(st.text(max_size=10))},
                                               {"size": [draw(st.integers(-1, 60)), 1], "counts": [10, 40]},
                                               draw(_json_values())])),
           "image_mask": {"size": [draw(st.integers(0, 10)), draw(st.integers(0, 10))],
                          "counts": draw(st.lists(st.integers(-3, 50), max_size=5) | st.text(max_size=8))}}
    return {"sensors": {"LIDAR_TOP": {"objects": [obj]}, "CAM_FRONT": {"objects": [obj]}}}


def _labels(d):
    from sam4d_model.data.waymo4dseg import labels_from_json

    labels_from_json(json.loads(json.dumps(d, default=str)), 50, {"CAM_FRONT": (8, 10)})


@st.composite
def npz_files(draw):
    """Layout point files: valid npz with arbitrary arrays, truncated or corrupted npz, random bytes."""
    buf = io.BytesIO()
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=300))
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=1, max_size=3)))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int16, np.uint8, np.bool_]))
    arr = np.frombuffer(draw(st.binary(min_size=int(np.prod(shape)) * np.dtype(dtype).itemsize,
                                       max_size=int(np.prod(shape)) * np.dtype(dtype).itemsize)), dtype).reshape(shape)
    arrays = {draw(st.sampled_from(["data", "points", "fields"])): arr}
    if draw(st.booleans()):
        arrays["fields"] = np.array(draw(st.lists(st.text(max_size=4), max_size=6)), dtype=object).astype(str)
    np.savez(buf, **arrays)
    data = bytearray(buf.getvalue())
    if kind == 2 and data:
        data = data[: draw(st.integers(0, len(data)))]
    if kind == 3 and data:
        data[draw(st.integers(0, len(data) - 1))] ^= 0xFF
    return bytes(data)


def _npz(data, tmp_dir=None):
    import tempfile
    from pathlib import Path

    from sam4d_model.data.waymo4dseg import read_points

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.npz"
        p.write_bytes(data)
        pts, fields = read_points(p)
        assert pts.ndim == 2 and pts.shape[1] >= 3 and len(fields) == pts.shape[1]


TARGETS: Dict[str, Target] = {
    "PointCloud2": Target(point_clouds(), _read_cloud, (PointCloudError,)),
    "Image": Target(images(), _image, (ImageError,)),
    "CompressedImage": Target(compressed_images(), _compressed, (ImageError,)),
    "CameraInfo": Target(camera_infos(), _camera_info, (ImageError,)),
    "Prompt": Target(prompts(), _prompt, ()),
    "label JSON": Target(label_files(), _labels, (DataError,)),
    "points npz": Target(npz_files(), _npz, (DataError,)),
}


def check(name: str, value) -> None:
    """Run one target on one input: return normally or raise its allowed error; anything else propagates."""
    t = TARGETS[name]
    try:
        t.call(value)
    except t.allowed as exc:
        if not str(exc).strip():
            raise AssertionError(f"{name}: {type(exc).__name__} without a message") from exc
