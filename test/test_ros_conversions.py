# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Unit tests of the rclpy glue on real rclpy message objects: clouds, images, sync, prompts."""

import array

import numpy as np
import pytest

pytest.importorskip("rclpy")
from builtin_interfaces.msg import Time  # noqa: E402
from geometry_msgs.msg import Point  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from sam4d_ros import image as im  # noqa: E402
from sam4d_ros import pointcloud as pc  # noqa: E402
from sam4d_ros import prompts as pr  # noqa: E402
from sam4d_ros.sync import LidarDrivenSync  # noqa: E402

pytestmark = pytest.mark.ros


def _cloud(xyz, dtype="f4", big=False, pad=0, extra=True, organised=None, row_pad=0, offsets=None):
    """A cloud with x/y/z of ``dtype`` at shuffled offsets, an intensity, padding, optional organisation."""
    n = len(xyz)
    order = ">" if big else "<"
    size = np.dtype(dtype).itemsize
    offsets = offsets or {"x": 4, "y": 4 + size + 2, "z": 4 + 2 * size + 4}
    names, formats, offs = ["x", "y", "z"], [order + dtype] * 3, [offsets["x"], offsets["y"], offsets["z"]]
    end = max(offs) + size
    if extra:
        names.append("intensity")
        formats.append(order + "f4")
        offs.append(0)
    step = end + pad
    dt = np.dtype({"names": names, "formats": formats, "offsets": offs, "itemsize": step})
    arr = np.zeros(n, dt)
    for i, c in enumerate("xyz"):
        arr[c] = xyz[:, i]
    if extra:
        arr["intensity"] = np.arange(n)
    h, w = organised if organised else (1, n)
    raw = arr.view(np.uint8).reshape(h, w * step)
    raw = np.concatenate([raw, np.full((h, row_pad), 7, np.uint8)], 1)
    code = {"f4": PointField.FLOAT32, "f8": PointField.FLOAT64}[dtype]
    msg = PointCloud2(header=Header(frame_id="lidar", stamp=Time(sec=5, nanosec=7)), height=h, width=w,
                      is_bigendian=big, point_step=step, row_step=w * step + row_pad, is_dense=False)
    msg.fields = [PointField(name=c, offset=offsets[c], datatype=code, count=1) for c in "xyz"]
    if extra:
        msg.fields.append(PointField(name="intensity", offset=0, datatype=PointField.FLOAT32, count=1))
    msg.data = array.array("B", raw.tobytes())
    return msg


@pytest.mark.parametrize("dtype", ["f4", "f8"])
@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("organised", [None, (3, 4)])
def test_read_cloud_layouts(dtype, big, organised):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(12, 3)).astype(np.float32)
    xyz[3, 1] = np.nan
    msg = _cloud(xyz, dtype=dtype, big=big, pad=5, organised=organised, row_pad=3 if organised else 0)
    c = pc.read_cloud(msg)
    np.testing.assert_allclose(c.xyz, xyz)
    assert c.valid.sum() == 11 and not c.valid[3]
    np.testing.assert_allclose(c.intensity, np.arange(12))
    # append labels: every input byte kept, new fields readable, header copied
    ids = np.arange(12, dtype=np.int32) - 1
    out = pc.append_fields(msg, ids, np.linspace(0, 1, 12, dtype=np.float32))
    assert out.header.stamp.sec == 5 and out.header.frame_id == "lidar"
    assert (out.height, out.width) == (msg.height, msg.width)
    assert out.point_step == msg.point_step + 8 and out.is_bigendian == big
    got_ids, got_scores = pc.labels_from_cloud(out)
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_allclose(pc.read_cloud(out).xyz, xyz)
    kept = pc.append_fields(msg, ids, np.zeros(12, np.float32), keep=ids >= 0)
    assert kept.height == 1 and kept.width == 11
    np.testing.assert_array_equal(pc.labels_from_cloud(kept)[0], ids[ids >= 0])


def test_bad_clouds():
    xyz = np.zeros((4, 3), np.float32)
    msg = _cloud(xyz)
    msg.fields = [f for f in msg.fields if f.name != "z"]
    with pytest.raises(pc.PointCloudError, match="no field"):
        pc.read_cloud(msg)
    msg = _cloud(xyz)
    msg.data = msg.data[:-10]
    with pytest.raises(pc.PointCloudError, match="bytes"):
        pc.read_cloud(msg)
    empty = _cloud(np.zeros((0, 3), np.float32))
    assert pc.read_cloud(empty).num_points == 0
    # row_step 0 on an unorganised cloud is accepted (common driver bug)
    msg = _cloud(xyz)
    msg.row_step = 0
    assert pc.read_cloud(msg).num_points == 4


def test_make_cloud_roundtrip():
    xyz = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    msg = pc.make_cloud(Header(frame_id="lidar"), {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
                                                   "ring": np.arange(5, dtype=np.uint16)})
    np.testing.assert_allclose(pc.read_cloud(msg).xyz, xyz)
    assert pc.read_cloud(msg).intensity is None


@pytest.mark.parametrize("enc", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC3", "mono16", "16UC1", "32SC1"])
def test_image_encodings(enc):
    rng = np.random.default_rng(2)
    dtype, ch = im.ENCODINGS[enc]
    shape = (6, 5, ch) if ch > 1 else (6, 5)
    arr = rng.integers(0, 200, size=shape).astype(dtype)
    msg = im.numpy_to_image(arr, enc, Header(frame_id="cam"))
    # add row padding
    step = msg.step + 3
    raw = np.frombuffer(msg.data, np.uint8).reshape(6, msg.step)
    msg.data = array.array("B", np.concatenate([raw, np.zeros((6, 3), np.uint8)], 1).tobytes())
    msg.step = step
    np.testing.assert_array_equal(im.image_to_numpy(msg), arr)
    rgb = im.image_msg_to_rgb(msg)
    assert rgb.shape == (6, 5, 3) and rgb.dtype == np.uint8
    if enc in ("bgr8", "8UC3"):
        np.testing.assert_array_equal(rgb, arr[..., ::-1])


def test_image_errors_and_big_endian():
    msg = Image(height=2, width=2, encoding="yuv422", step=4, data=array.array("B", bytes(8)))
    with pytest.raises(im.ImageError, match="unsupported image encoding"):
        im.image_to_numpy(msg)
    arr = np.array([[1, 256], [513, 65535]], np.uint16)
    msg = Image(height=2, width=2, encoding="mono16", is_bigendian=1, step=4,
                data=array.array("B", arr.astype(">u2").tobytes()))
    np.testing.assert_array_equal(im.image_to_numpy(msg), arr)
    bad = CompressedImage(format="jpeg", data=array.array("B", b"notajpeg"))
    with pytest.raises(im.ImageError, match="cannot decode"):
        im.compressed_to_rgb(bad)


def test_compressed_and_camera_info():
    import cv2
    img = np.zeros((8, 10, 3), np.uint8)
    img[..., 0] = 200  # red in RGB
    ok, buf = cv2.imencode(".png", img[..., ::-1])
    msg = CompressedImage(format="png", data=array.array("B", buf.tobytes()))
    np.testing.assert_array_equal(im.compressed_to_rgb(msg), img)
    info = CameraInfo(width=10, height=8, k=[5.0, 0, 5, 0, 5.0, 4, 0, 0, 1])
    cam = im.camera_model(info)
    assert cam.check_size(10, 8) is None and "says 10x8" in cam.check_size(12, 8)
    with pytest.raises(im.ImageError):
        im.camera_model(CameraInfo(width=10, height=8))


def test_sync_nearest_newest_wins():
    t = [0.0]
    s = LidarDrivenSync(num_cameras=1, tolerance_ns=30, max_wait_ns=50, queue_size=1, clock=lambda: t[0] * 1e-9)
    s.add_image(0, 90, "im90")
    assert s.add_cloud(100, "c100") == "ok"
    assert s.get(0) is None  # waits for a possibly closer image
    s.add_image(0, 105, "im105")
    f = s.get(0)
    assert f.cloud == "c100" and f.images[0] == (105, "im105")
    # no image within tolerance -> unpaired after the wait
    s.add_cloud(300, "c300")
    t[0] = 100
    assert s.get(0) is None and s.counters.unpaired == 1
    # duplicate, out of order
    assert s.add_cloud(300, "c300") == "duplicate"
    assert s.add_cloud(200, "c200") == "out_of_order"
    # newest wins when the worker is slow
    for k in range(5):
        st = 1000 + 100 * k
        s.add_image(0, st + 1, f"im{st}")
        s.add_cloud(st, f"c{st}")
        s.add_image(0, st + 60, "late")
    f = s.get(0)
    assert f.cloud == "c1400" and s.get(0) is None
    assert s.counters.skipped == 4


class _Ctx:
    pass


def _prompt(modality, pos=(), neg=(), box=None, obj=0, frame="", cam="", stamp=0):
    from sam4d_ros.msg import Prompt
    p = Prompt(object_id=obj, modality=modality, camera=cam)
    p.header.frame_id = frame
    p.header.stamp.sec = stamp
    p.positive_points = [Point(x=float(a[0]), y=float(a[1]), z=float(a[2]) if len(a) > 2 else 0.0) for a in pos]
    p.negative_points = [Point(x=float(a[0]), y=float(a[1]), z=float(a[2]) if len(a) > 2 else 0.0) for a in neg]
    if box is not None:
        p.has_box = True
        p.box_min = Point(x=float(box[0][0]), y=float(box[0][1]), z=float(box[0][2]) if len(box[0]) > 2 else 0.0)
        p.box_max = Point(x=float(box[1][0]), y=float(box[1][1]), z=float(box[1][2]) if len(box[1]) > 2 else 0.0)
    return p


def test_prompt_validation():
    pytest.importorskip("sam4d_ros.msg")
    T = np.eye(4)
    T[0, 3] = 10.0

    def lookup(target, source, stamp):
        if source != "odom":
            raise LookupError(f"unknown frame {source!r}")
        return T

    ctx = pr.PromptContext(camera_names=["front"], camera_sizes=[(100, 50)], lidar_frame="lidar",
                           latest_cloud_ns=5, max_objects=2, lookup=lookup)
    cmd, why = pr.validate_prompt(_prompt(0, pos=[(10, 10)], neg=[(20, 20)]), ctx)
    assert why == "" and cmd.image_labels.tolist() == [1, 0]
    assert "outside" in pr.validate_prompt(_prompt(0, pos=[(100, 10)]), ctx)[1]
    assert "unknown camera" in pr.validate_prompt(_prompt(0, pos=[(1, 1)], cam="rear"), ctx)[1]
    assert "NaN" in pr.validate_prompt(_prompt(1, pos=[(float("nan"), 0, 0)]), ctx)[1]
    assert "no points" in pr.validate_prompt(_prompt(1), ctx)[1]
    assert "only negative" in pr.validate_prompt(_prompt(1, neg=[(1, 1, 1)]), ctx)[1]
    assert "unknown frame" in pr.validate_prompt(_prompt(2, pos=[(1, 2, 3)], frame="mars"), ctx)[1]
    cmd, why = pr.validate_prompt(_prompt(2, pos=[(1, 2, 3)], box=[(0, 0, 0), (1, 1, 1)], frame="odom"), ctx)
    assert why == "" and cmd.lidar_points.tolist() == [[11, 2, 3]] and cmd.lidar_box[0].tolist() == [10, 0, 0]
    assert "below box_min" in pr.validate_prompt(_prompt(1, box=[(1, 1, 1), (0, 0, 0)]), ctx)[1]
    reg = pr.ObjectRegistry(2)
    assert reg.reserve(0) == (1, None) and reg.reserve(7) == (7, None)
    oid, why = reg.reserve(0)
    assert oid == -1 and "too many objects" in why
    assert reg.reserve(-3)[0] == -1


def test_command_queue_order():
    q = pr.CommandQueue()
    q.put(pr.PromptCommand(obj_id=1))
    q.put(pr.PromptCommand(obj_id=2, target_stamp_ns=500))
    q.put(pr.RemoveCommand(obj_id=2))
    q.put(pr.PromptCommand(obj_id=3))
    due = q.take_due(100)
    assert [type(c).__name__ + str(c.obj_id) for c in due] == ["PromptCommand1", "PromptCommand3"]
    due = q.take_due(500)
    assert [type(c).__name__ for c in due] == ["PromptCommand", "RemoveCommand"]
    q.put(pr.PromptCommand(obj_id=4))
    q.put(pr.ResetCommand())
    assert [type(c).__name__ for c in q.take_due(0)] == ["ResetCommand"]


def test_bag_tools_decode_rclpy_messages_alike():
    # one decoding core (sam4d_model.data.msg_codec) behind both the node and the bag tools
    from sam4d_model.data import rosbag_io as rb

    xyz = np.random.default_rng(3).normal(size=(12, 3)).astype(np.float32)
    msg = _cloud(xyz, big=True, pad=5, organised=(3, 4), row_pad=3)
    a, b = pc.cloud_to_structured(msg), rb.pointcloud2_to_array(msg)
    assert a.dtype == b.dtype and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a.dtype.names)
    depth = np.linspace(0, 5, 30).reshape(5, 6)
    img = Image(height=5, width=6, encoding="64FC1", is_bigendian=1, step=6 * 8 + 4,
                data=array.array("B", np.concatenate([depth.astype(">f8").view(np.uint8).reshape(5, 48),
                                                      np.zeros((5, 4), np.uint8)], 1).tobytes()))
    np.testing.assert_array_equal(im.image_to_numpy(img), depth)
    np.testing.assert_array_equal(rb.image_from_msg(img, rgb=False), depth)
    assert im.image_msg_to_rgb(img).shape == (5, 6, 3)
    img.step = 10
    with pytest.raises(im.ImageError, match="step 10"):
        im.image_to_numpy(img)
