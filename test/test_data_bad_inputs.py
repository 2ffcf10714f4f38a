# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Bad inputs give clear errors and never leave half-written outputs."""

import os
import pickle
import shutil

import numpy as np
import pytest

from sam4d_model.data.io_utils import DataError, UnsafePickleError, safe_pickle_loads
from sam4d_model.data.rosbag_io import write_bag
from sam4d_model.data.synth import SynthConfig, SynthDrive, write_layout
from sam4d_model.data.waymo4dseg import SequenceWriter, read_sequence

SMALL = SynthConfig(width=96, height=64, beams=8, azimuths=128)


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    drive = SynthDrive(9, 3, SMALL)
    write_layout(drive, root, "good", image_format="png")
    return root, drive


def _copy(layout, tmp_path):
    root, _ = layout
    dst = tmp_path / "copy"
    shutil.copytree(root, dst)
    return dst


def _rewrite_meta(root, fn):
    p = root / "meta_infos" / "good.pkl"
    meta = pickle.loads(p.read_bytes())
    fn(meta)
    p.write_bytes(pickle.dumps(meta))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/sam4d_pwned",))


def test_malicious_pickle(tmp_path, layout):
    root = _copy(layout, tmp_path)
    (root / "meta_infos" / "good.pkl").write_bytes(pickle.dumps({"seq_name": "good", "frames": [_Evil()]}))
    with pytest.raises(UnsafePickleError, match="posix.system|os.system|nt.system"):
        read_sequence(root, "good")
    assert not os.path.exists("/tmp/sam4d_pwned")
    with pytest.raises(UnsafePickleError):
        safe_pickle_loads(pickle.dumps(np.random.default_rng()))  # arbitrary numpy objects are refused too
    # the allowed subset still loads
    obj = {"a": [1, 2.5, "x", (None, True)], "m": np.eye(3), "s": np.float64(2.0), "i": np.arange(3, dtype=np.int16)}
    for proto in (2, 4, 5):
        back = safe_pickle_loads(pickle.dumps(obj, protocol=proto))
        assert np.array_equal(back["m"], np.eye(3)) and back["s"] == 2.0 and back["i"].dtype == np.int16


def test_truncated_and_missing_files(tmp_path, layout):
    root = _copy(layout, tmp_path)
    seq = read_sequence(root, "good")
    pcd = root / seq.frames_info[1]["path"]["pcd"]
    data = pcd.read_bytes()
    pcd.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt or truncated npz"):
        seq.frame(1)
    pcd.unlink()
    with pytest.raises(DataError, match="missing"):
        seq.frame(1)
    img = root / seq.frames_info[2]["cams_info"]["FRONT"]["data_path"]
    img.write_bytes(img.read_bytes()[:100])
    with pytest.raises(DataError, match="corrupt or truncated image"):
        seq.frame(2)
    lab = root / seq.frames_info[0]["path"]["sam4d_label"]
    lab.write_text("{not json")
    with pytest.raises(DataError, match="corrupt label"):
        seq.labels(0)
    with pytest.raises(IndexError):
        seq.frame(10)
    with pytest.raises(DataError, match="missing"):
        read_sequence(root, "nope")


@pytest.mark.parametrize("mutate,match", [
    (lambda m: m["frames"][0].__setitem__("lidar2world", np.eye(3)), "expected shape"),
    (lambda m: m["frames"][1]["lidar2world"].__setitem__((0, 3), np.nan), "non-finite"),
    (lambda m: m["frames"][0]["cams_info"]["FRONT"].__setitem__("camera_intrinsics", np.eye(4)), "expected shape"),
    (lambda m: m["frames"][0]["cams_info"]["FRONT"].__setitem__("camera2lidar", 2 * np.eye(4)), "rotation|last row"),
    (lambda m: m["frames"][0]["path"].__setitem__("pcd", "../../etc/passwd"), "relative"),
    (lambda m: m.__setitem__("frames", "nope"), "frames"),
])
def test_bad_meta(tmp_path, layout, mutate, match):
    root = _copy(layout, tmp_path)
    _rewrite_meta(root, mutate)
    with pytest.raises(DataError, match=match):
        seq = read_sequence(root, "good")
        seq.frame(0)


def test_nothing_half_written(tmp_path, layout):
    _, drive = layout
    sf = drive.render(0)
    bad = drive.render(1).frame
    bad.lidar2world = np.full((4, 4), np.inf)
    with pytest.raises(DataError, match="non-finite"):
        with SequenceWriter(tmp_path, "x") as w:
            w.add(sf.frame, sf.labels)
            w.add(bad)
    assert not (tmp_path / "meta_infos" / "x.pkl").exists()
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".*.tmp"))
    # wrong shapes in a frame
    bad2 = drive.render(1).frame
    bad2.cameras[0].intrinsics = np.eye(4)
    with pytest.raises(DataError, match="intrinsics"):
        SequenceWriter(tmp_path, "y").add(bad2)
    # the bag writer: an error mid-way leaves no bag behind
    bad3 = drive.render(2).frame
    bad3.lidar2world = np.full((4, 4), np.nan)
    with pytest.raises(DataError):
        write_bag([(sf.frame, sf.labels), (bad3, None)], tmp_path / "bag")
    assert not (tmp_path / "bag").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bag")]
