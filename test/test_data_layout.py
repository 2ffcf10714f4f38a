# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Waymo-4DSeg layout: write/read round trips, JPEG/PNG handling, resume, the clip dataset."""

import json
import pickle

import numpy as np
import pytest

from sam4d_model.data.synth import SynthConfig, SynthDrive, write_layout
from sam4d_model.data.waymo4dseg import (
    ClipDataset,
    InMemorySequence,
    SequenceWriter,
    collate_clips,
    decode_mask,
    encode_mask,
    list_sequences,
    read_sequence,
)

SMALL = SynthConfig(width=160, height=120, beams=16, azimuths=256)


@pytest.fixture(scope="module")
def drive():
    return SynthDrive(5, 4, SMALL)


@pytest.fixture(scope="module")
def rendered(drive):
    return [drive.render(i) for i in range(drive.num_frames)]


def test_rle_roundtrip():
    rng = np.random.default_rng(0)
    m = rng.uniform(size=(37, 53)) > 0.7
    assert np.array_equal(decode_mask(encode_mask(m)), m)
    p = rng.uniform(size=(1000, 1)) > 0.5
    rle = encode_mask(p)
    assert rle["size"] == [1000, 1] and isinstance(rle["counts"], str)
    assert np.array_equal(decode_mask(rle, (1000, 1)), p)


def test_layout_roundtrip_lossless(tmp_path, drive, rendered):
    write_layout(drive, tmp_path, "s", image_format="both")
    assert list_sequences(tmp_path) == ["s"]
    meta = pickle.loads((tmp_path / "meta_infos" / "s.pkl").read_bytes())
    f0 = meta["frames"][0]
    assert set(f0) >= {"cams_info", "path", "lidar2world"}
    assert f0["cams_info"]["FRONT"]["camera_intrinsics"].shape == (3, 3)
    assert f0["cams_info"]["FRONT"]["camera2lidar"].shape == (4, 4)
    assert f0["cams_info"]["FRONT"]["data_path"].endswith(".jpg")
    assert (tmp_path / f0["cams_info"]["FRONT"]["data_path"]).with_suffix(".png").exists()
    with np.load(tmp_path / f0["path"]["pcd"]) as z:
        assert z["data"].shape[1] == 6
    lab = json.loads((tmp_path / f0["path"]["sam4d_label"]).read_text())
    objs = lab["sensors"]["LiDAR_TOP"]["objects"]
    assert objs and {"object_id", "score", "volume", "semantic", "lidar_mask"} <= set(objs[0])
    assert "image_mask" in lab["sensors"]["FRONT"]["objects"][0]

    seq = read_sequence(tmp_path, "s")
    assert len(seq) == 4 and seq.camera_names == ["FRONT"]
    for i, sf in enumerate(rendered):
        f, lab = seq.frame(i), seq.labels(i)
        assert np.array_equal(f.points, sf.frame.points)
        assert np.array_equal(f.cameras[0].image, sf.frame.cameras[0].image)  # png preferred
        assert np.allclose(f.lidar2world, sf.frame.lidar2world, atol=1e-12)
        assert f.timestamp == sf.frame.timestamp
        assert np.array_equal(lab.point_instance, sf.labels.point_instance)
        assert np.array_equal(lab.point_class, sf.labels.point_class)
        assert np.array_equal(lab.image_instance["FRONT"], sf.labels.image_instance["FRONT"])
        assert lab.object_classes == sf.labels.object_classes
    # jpeg path when lossless is not preferred: close but lossy
    jp = read_sequence(tmp_path, "s", prefer_lossless=False).frame(0).cameras[0].image
    diff = np.abs(jp.astype(int) - rendered[0].frame.cameras[0].image)
    assert 0 < diff.mean() < 6


def test_resume_after_interruption(tmp_path, drive, rendered):
    class Boom(RuntimeError):
        pass

    with pytest.raises(Boom):
        with SequenceWriter(tmp_path, "r", image_format="png") as w:
            for i in range(2):
                w.add(rendered[i].frame, rendered[i].labels)
            raise Boom()
    assert not (tmp_path / "meta_infos" / "r.pkl").exists()  # incomplete sequence is not published
    assert not list(tmp_path.rglob("*.tmp"))
    calls = []
    orig = drive.render

    def counting(i):
        calls.append(i)
        return orig(i)

    drive.render = counting
    try:
        write_layout(drive, tmp_path, "r", image_format="png", resume=True)
    finally:
        drive.render = orig
    assert calls == [2, 3]  # frames 0 and 1 were kept
    seq = read_sequence(tmp_path, "r")
    assert len(seq) == 4
    assert np.array_equal(seq.frame(0).points, rendered[0].frame.points)
    assert np.array_equal(seq.labels(3).point_instance, rendered[3].labels.point_instance)
    with pytest.raises(FileExistsError):
        SequenceWriter(tmp_path, "r")


def test_clip_dataset(tmp_path, drive, rendered):
    write_layout(drive, tmp_path, "c", image_format="png")
    ds = ClipDataset(tmp_path, clip_len=3, cameras=["FRONT"])
    assert len(ds) == 2
    s = ds[1]
    assert s["images"].shape == (3, 1, 3, 120, 160)
    assert s["image_instance"].shape == (3, 1, 120, 160)
    assert s["lidar2world"].shape == (3, 4, 4) and s["intrinsics"].shape == (3, 1, 3, 3)
    assert len(s["points"]) == 3 and s["points"][0].shape[1] == 6
    assert s["frame_indices"].tolist() == [1, 2, 3]
    assert (s["point_instance"][0].numpy() == rendered[1].labels.point_instance).all()
    mem = ClipDataset([InMemorySequence([(r.frame, r.labels) for r in rendered])], clip_len=2, stride=2)
    assert len(mem) == 2 and mem[1]["frame_indices"].tolist() == [2, 3]
    import torch

    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate_clips)
    batch = next(iter(loader))
    assert len(batch) == 2
