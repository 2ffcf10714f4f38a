# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""UMPE geometry and ego-motion compensation."""

import numpy as np
import pytest
import torch
from test_model_utils import CAM2LIDAR, K

from sam4d_model.config import load_config
from sam4d_model.geometry import build_voxel_pyramid, image_aug_matrix
from sam4d_model.losses import umpe_alignment_loss
from sam4d_model.modeling import build_sam4d
from sam4d_model.tracker import StreamingTracker
from sam4d_model.types import CameraFrame, Frame


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    return build_sam4d(load_config("sam4d_tiny"))


def _calib():
    c2l = torch.tensor(CAM2LIDAR)
    k = torch.tensor(K)
    aug = torch.tensor(image_aug_matrix((384, 640), 384))
    return c2l, k, aug


def _sample(n, g, c2l):
    z = torch.empty(n).uniform_(2, 60, generator=g)
    x = torch.empty(n).uniform_(0, 640, generator=g)
    y = torch.empty(n).uniform_(0, 384, generator=g)
    pc = torch.stack([(x - 320) / 400 * z, (y - 192) / 400 * z, z], 1).double()
    p = (pc @ c2l[:3, :3].T + c2l[:3, 3]).float()
    return p, torch.stack([x * 384 / 640, y], 1)


def test_pixel_ray_passes_through_projected_point(model):
    c2l, k, aug = _calib()
    g = torch.Generator().manual_seed(0)
    p, uv = _sample(50, g, c2l)
    rays = model.umpe.ray_points(uv, aug, k, c2l).double()  # (50, D, 3)
    o, d = rays[:, 0], rays[:, -1] - rays[:, 0]
    d = d / d.norm(dim=1, keepdim=True)
    v = p.double() - o
    dist = (v - (v * d).sum(1, keepdim=True) * d).norm(dim=1)
    assert dist.max() < 1e-4
    wrong = c2l.clone()
    wrong[:3, 3] += torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64)
    rays_w = model.umpe.ray_points(uv, aug, k, wrong).double()
    o2, d2 = rays_w[:, 0], rays_w[:, -1] - rays_w[:, 0]
    d2 = d2 / d2.norm(dim=1, keepdim=True)
    v2 = p.double() - o2
    assert (v2 - (v2 * d2).sum(1, keepdim=True) * d2).norm(dim=1).min() > 0.1


def test_umpe_point_and_its_pixel_are_nearest_after_alignment():
    """After a short alignment of the shared UMPE MLP, a LiDAR point's 3D encoding is nearest to the token
    its pixel lies in (held-out points); with a wrong extrinsic this breaks."""
    torch.manual_seed(0)
    m = build_sam4d(load_config("sam4d_tiny"))
    u = m.umpe
    c2l, k, aug = _calib()
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(u.mlp.parameters(), lr=1e-3)
    for _ in range(300):
        p, uv = _sample(256, g, c2l)
        loss = umpe_alignment_loss(u, p, uv, aug, k, c2l, temperature=10.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    tok_uv = u.image_token_uv(24, 24, "cpu")
    tok_xy = (tok_uv / 16).floor()
    p, uv = _sample(200, torch.Generator().manual_seed(123), c2l)

    def hit_rate(calib):
        with torch.no_grad():
            e_img = u.encode_3d_rays(u.ray_points(tok_uv, aug, k, calib))
            e_pt = u.encode_3d_xyz(p)
        j = torch.cdist(e_pt, e_img).argmin(1)
        err = (tok_xy[j] - (uv / 16).floor()).abs().max(1).values
        return (err <= 1).float().mean().item()

    wrong = c2l.clone()
    th = 0.2
    rot = torch.tensor([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]], dtype=torch.float64)
    wrong[:3, :3] = rot @ wrong[:3, :3]
    assert hit_rate(c2l) >= 0.8
    assert hit_rate(wrong) <= 0.3


def _pose(t, yaw):
    p = np.eye(4)
    p[:3, :3] = [[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]]
    p[:3, 3] = t
    return p


def _world():
    rng = np.random.default_rng(0)
    return np.stack([rng.uniform(-20, 40, 3000), rng.uniform(-20, 20, 3000), rng.uniform(-1.7, 1.0, 3000)], 1)


def _frame(world, pose, idx):
    pts = (np.linalg.inv(pose) @ np.c_[world, np.ones(len(world))].T).T[:, :3].astype(np.float32)
    img = np.zeros((96, 160, 3), np.uint8)
    k = K.copy()
    k[0] *= 0.25
    k[1] *= 0.25
    return Frame(points=pts, cameras=[CameraFrame("c", img, k, CAM2LIDAR.copy())], lidar2world=pose, index=idx)


@pytest.mark.parametrize("use_ego", [True, False])
def test_ego_motion_compensation(model, use_ego):
    world = _world()
    poses = [_pose([0, 0, 0], 0.0), _pose([3.0, 0.5, 0.05], 0.1), _pose([6.5, 1.5, 0.1], 0.25)]
    frames = [_frame(world, p, i) for i, p in enumerate(poses)]
    tr = StreamingTracker(model, use_ego_motion=use_ego)
    tr.add_prompt(1, lidar_points=[[10.0, 0.0, 0.0]])
    for f in frames:
        tr.step(f)
    entries = sorted(tr._memories[1], key=lambda e: e.frame_idx)
    cur_pose = entries[-1].pose
    model.use_ego_motion = use_ego
    try:
        for e in entries[:-1]:
            f = e.frame_idx
            pyr = build_voxel_pyramid(frames[f].points, 0.15)
            l16 = pyr.level(16)
            w_valid = world[pyr.valid.numpy()]
            cur = (np.linalg.inv(poses[2]) @ np.c_[w_valid, np.ones(len(w_valid))].T).T[:, :3]
            idx = l16.point2vox.numpy()
            expect = np.zeros((l16.coords.shape[0], 3))
            np.add.at(expect, idx, cur)
            expect /= np.bincount(idx)[:, None]
            got = model.memory_lidar_xyz(e, cur_pose).double().numpy()
            err = np.abs(got - expect).max()
            # image frustum of the stored memory vs the same world points seen from the current frame
            rays = model.memory_ray_points(e, 0, cur_pose).double().numpy()  # (HW, D, 3)
            cam = e.cams[0]
            uv = model.umpe.image_token_uv(*e.img_hw, "cpu").double().numpy()
            uvo = uv / np.array([cam.img_aug[0, 0].item(), cam.img_aug[1, 1].item()])
            kk = cam.intrinsics.numpy()
            dirs = np.c_[uvo, np.ones(len(uvo))] @ np.linalg.inv(kk).T
            depths = model.umpe.depths.double().numpy()
            pc = dirs[:, None, :] * depths[None, :, None]
            pw = (poses[f] @ CAM2LIDAR @ np.c_[pc.reshape(-1, 3), np.ones(pc.size // 3)].T).T
            exp_rays = (np.linalg.inv(poses[2]) @ pw.T).T[:, :3].reshape(rays.shape)
            err_rays = np.abs(rays - exp_rays).max()
            if use_ego:
                assert err < 1e-4 and err_rays < 1e-4, (err, err_rays)
            else:
                assert err > 0.5 and err_rays > 0.5
    finally:
        model.use_ego_motion = True


@pytest.mark.parametrize("moving", [True, False])
def test_ego_motion_compensation_changes_the_memory_conditioned_features(model, moving):
    """With the car moving, compensating its ego motion moves the memories' positions and so changes what the
    current frame's tokens get from memory attention; with the car standing still it changes nothing."""
    world = _world()
    if moving:
        poses = [_pose([0, 0, 0], 0.0), _pose([3.0, 0.5, 0.05], 0.1), _pose([6.5, 1.5, 0.1], 0.25)]
    else:
        poses = [_pose([0, 0, 0], 0.0)] * 3
    frames = [_frame(world, p, i) for i, p in enumerate(poses)]
    tr = StreamingTracker(model, use_ego_motion=True)
    tr.add_prompt(1, lidar_points=[[10.0, 0.0, 0.0]])
    for f in frames[:2]:
        tr.step(f)
    mems = [list(tr._memories[1])]
    out = {}
    with torch.inference_mode():
        feats = model.encode_frame(frames[2], frame_idx=2)
        for ego in (True, False):
            out[ego] = model.condition_on_memory(feats, mems, ego=ego)
    for k, name in ((0, "image"), (1, "LiDAR")):
        a, b = out[True][k], out[False][k]
        rel = float((a - b).norm() / a.norm())
        print(f"{name}: moving {moving}, relative change of the memory-conditioned tokens {rel:.2e}")
        if moving:
            assert rel > 5e-4, f"{name}: compensation changed the conditioned tokens by only {rel:.2e}"
        else:  # identity motion: only float rounding of the (identity) transform
            assert rel < 1e-4, f"{name}: {rel:.2e} without motion"


def test_trilinear_voxel_to_point_reproduces_linear_fields():
    """Stride-4 voxel-to-point interpolation: convex weights that include the point's own voxel, and exact on a
    linear function of the voxel centres inside a fully occupied block (away from its border)."""
    rng = np.random.default_rng(0)
    # A dense 6 m cube of points (occupies every 0.6 m stride-4 voxel) plus a few isolated far points.
    dense = rng.uniform(0.0, 6.0, size=(40000, 3))
    far = np.array([[30.0, 1.0, 1.0], [-20.0, 5.0, 2.0]])
    pyr = build_voxel_pyramid(np.concatenate([dense, far]).astype(np.float32), 0.15)
    idx, w = pyr.trilinear(4)
    l4 = pyr.level(4)
    assert idx.shape == w.shape == (pyr.num_points, 8)
    assert bool((w >= 0).all()) and torch.allclose(w.sum(1), torch.ones(pyr.num_points), atol=1e-5)
    assert bool((idx == l4.point2vox[:, None]).any(1).all())
    # Isolated points have no occupied neighbours: all weight on their own voxel.
    assert torch.allclose(w[-2:][idx[-2:] == l4.point2vox[-2:, None]].view(2, -1).sum(1), torch.ones(2))
    size = 0.15 * 4
    centres = (l4.coords.double() + 0.5) * size + pyr.origin.double()
    a, b = torch.tensor([0.7, -1.3, 2.1], dtype=torch.float64), 0.4
    field = centres @ a + b
    interp = (field[idx] * w.double()).sum(1)
    inner = ((pyr.xyz.double() > 1.0) & (pyr.xyz.double() < 5.0)).all(1)
    expected = pyr.xyz.double() @ a + b
    assert torch.allclose(interp[inner], expected[inner], atol=1e-4)
    # Nearest-voxel lookup is off by up to half a voxel: the interpolation is really used.
    nearest = field[l4.point2vox]
    assert float((nearest[inner] - expected[inner]).abs().max()) > 0.3
