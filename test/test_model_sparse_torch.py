# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The pure-PyTorch sparse backend computes what spconv computes, with the same weights, and trains on CPU."""

import numpy as np
import pytest
import torch

spconv = pytest.importorskip("spconv.pytorch")

from sam4d_model.geometry import build_voxel_pyramid  # noqa: E402
from sam4d_model.modeling import sparse_torch as st  # noqa: E402
from sam4d_model.modeling.lidar_encoder import _reorder  # noqa: E402


@pytest.fixture(scope="module")
def cloud():
    rng = np.random.default_rng(0)
    # a dense-ish surface patch plus scattered points: voxels with and without neighbours
    a = rng.uniform(0, 3, (3000, 3)) * [1, 1, 0.1]
    b = rng.uniform(-5, 5, (500, 3))
    pts = np.concatenate([a, b]).astype(np.float32)
    pyr = build_voxel_pyramid(pts, 0.15, 1)
    l1 = pyr.level(1)
    n1 = l1.coords.shape[0]
    idx = torch.cat([torch.zeros((n1, 1), dtype=torch.int32), l1.coords.int()], 1)
    return pyr, idx


@pytest.fixture
def one_thread():
    # spconv's CPU submanifold convolution races with more than one torch thread (outputs change from run to
    # run); compare against it single-threaded. (README, "Sparse convolution on CPU").
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_ops_match_spconv(cloud, one_thread):
    torch.manual_seed(0)
    pyr, idx = cloud
    x = torch.randn(idx.shape[0], 4)
    sp = spconv.SparseConvTensor(x, idx, pyr.spatial_shape, 1)
    fine = pyr.level(1)
    with torch.no_grad():
        c = spconv.SubMConv3d(4, 5, 3, padding=1, bias=False, indice_key="s")
        ref = _reorder(c(sp), pyr, 1)
        got = st.subm_conv(x, c.weight, st.neighbour_map(pyr, 1))
        np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-5)
        c1 = spconv.SubMConv3d(4, 5, 1, bias=False, indice_key="p")
        np.testing.assert_allclose(st.subm_conv(x, c1.weight, None).numpy(), _reorder(c1(sp), pyr, 1).numpy(),
                                   atol=1e-5)
        d = spconv.SparseConv3d(4, 6, 2, stride=2, bias=False, indice_key="d")
        sd = d(sp)
        down = st.down_conv(x, d.weight, fine.parent, fine.child_offset, pyr.num_voxels(2))
        np.testing.assert_allclose(down.numpy(), _reorder(sd, pyr, 2).numpy(), atol=1e-5)
        u = spconv.SparseInverseConv3d(6, 3, 2, bias=False, indice_key="d")
        up = st.up_conv(_reorder(sd, pyr, 2), u.weight, fine.parent, fine.child_offset)
        np.testing.assert_allclose(up.numpy(), _reorder(u(sd), pyr, 1).numpy(), atol=1e-5)


def test_neighbour_map_is_symmetric(cloud):
    pyr, _ = cloud
    nm = st.neighbour_map(pyr, 1)
    assert nm.shape[0] == 27 and (nm[13] == torch.arange(nm.shape[1])).all()  # centre offset = itself
    # if b is a's neighbour at offset k, then a is b's neighbour at the opposite offset 26 - k
    for k in (0, 4, 10, 22):
        a = torch.nonzero(nm[k] >= 0).flatten()
        assert (nm[26 - k][nm[k][a]] == a).all()


def test_gradients_flow_on_cpu(cloud):
    pyr, _ = cloud
    torch.manual_seed(1)
    w = torch.randn(8, 3, 3, 3, 4, requires_grad=True)
    x = torch.randn(pyr.num_voxels(1), 4, requires_grad=True)
    y = st.subm_conv(x, w, st.neighbour_map(pyr, 1))
    y.square().sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_torch_backend_is_deterministic(cloud):
    pyr, _ = cloud
    torch.manual_seed(2)
    w = torch.randn(5, 3, 3, 3, 4)
    x = torch.randn(pyr.num_voxels(1), 4)
    nm = st.neighbour_map(pyr, 1)
    a, b = st.subm_conv(x, w, nm), st.subm_conv(x, w, nm)
    assert torch.equal(a, b)


def _dense_subm(x, weight, nmap):
    """The textbook form: gather all 27 neighbours (zeros where empty) and multiply once."""
    v, cin = x.shape
    xz = torch.cat([x, x.new_zeros((1, cin))], 0)
    idx = torch.where(nmap >= 0, nmap, torch.full_like(nmap, v))
    return xz[idx.t().reshape(-1)].reshape(v, 27 * cin) @ weight.permute(1, 2, 3, 4, 0).reshape(27 * cin, -1)


def test_per_offset_ops_equal_dense_forms_forward_and_backward(cloud):
    """The per-offset sparse ops compute what the dense all-offsets forms compute, values and gradients."""
    pyr, _ = cloud
    torch.manual_seed(3)
    fine = pyr.level(1)
    x = torch.randn(pyr.num_voxels(1), 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 3, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    nm = st.neighbour_map(pyr, 1)
    got, ref = st.subm_conv(x, w, st.pyramid_pairs(pyr, 1)), _dense_subm(x, w, nm)
    torch.testing.assert_close(got, ref)
    g1 = torch.autograd.grad(got.sin().sum(), (x, w))
    g2 = torch.autograd.grad(ref.sin().sum(), (x, w))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)
    # stride-2 down / up against "multiply all 8 child kernels, keep the child's one"
    wd = torch.randn(6, 2, 2, 2, 4, dtype=torch.float64)
    w8 = wd.permute(4, 1, 2, 3, 0).reshape(4, 8 * 6)
    v = x.shape[0]
    sel = (x @ w8).view(v, 8, 6)[torch.arange(v), fine.child_offset]
    ref_down = torch.zeros(pyr.num_voxels(2), 6, dtype=torch.float64).index_add(0, fine.parent, sel)
    torch.testing.assert_close(st.down_conv(x, wd, fine.parent, fine.child_offset, pyr.num_voxels(2)), ref_down)
    xc = torch.randn(pyr.num_voxels(2), 6, dtype=torch.float64)
    wu = torch.randn(3, 2, 2, 2, 6, dtype=torch.float64)
    ref_up = (xc @ wu.permute(4, 1, 2, 3, 0).reshape(6, 24)).view(-1, 8, 3)[fine.parent, fine.child_offset]
    torch.testing.assert_close(st.up_conv(xc, wu, fine.parent, fine.child_offset, st.pyramid_groups(pyr, 1)), ref_up)


def test_batched_up_down_modules_match_dense_forms(cloud):
    from sam4d_model.modeling.lidar_encoder import SparseDown2x, SparseUp2x

    pyr, _ = cloud
    torch.manual_seed(4)
    lvl = pyr.level(4)
    down, up = SparseDown2x(3, 5).double(), SparseUp2x(5, 2).double()
    x = torch.randn(2, pyr.num_voxels(4), 3, dtype=torch.float64)
    v = x.shape[1]
    y = (x @ down.weight).view(2, v, 8, 5)[:, torch.arange(v), lvl.child_offset]
    ref = torch.zeros(2, pyr.num_voxels(8), 5, dtype=torch.float64).index_add(1, lvl.parent, y) + down.bias
    got = down(x, pyr, 4)
    torch.testing.assert_close(got, ref)
    ref_up = (got @ up.weight).view(2, -1, 8, 2)[:, lvl.parent, lvl.child_offset] + up.bias
    torch.testing.assert_close(up(got, pyr, 4), ref_up)
    assert ("groups", 4) in pyr.conv_cache  # built once per pyramid, shared by both modules


def test_cpu_inference_uses_spconv_on_one_thread_with_the_torch_paths_numbers():
    """Inference on CPU ('auto') runs spconv single-threaded: same outputs as the torch path, threads restored."""
    from sam4d_model.config import load_config
    from sam4d_model.modeling.lidar_encoder import SAM4DLidarEncoder

    torch.manual_seed(5)
    enc = SAM4DLidarEncoder(load_config("sam4d_tiny")).eval()
    rng = np.random.default_rng(5)
    ang = rng.uniform(-np.pi, np.pi, 6000)
    r = rng.uniform(3, 40, 6000)
    pts = np.stack([r * np.cos(ang), r * np.sin(ang), rng.uniform(-1.8, 1.0, 6000), rng.random(6000)], 1)
    pyr = build_voxel_pyramid(pts.astype(np.float32), 0.15, 1)
    cpu = torch.device("cpu")
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert enc.backend_for(cpu) == "torch"  # gradients on: the differentiable path
        with torch.no_grad():
            assert enc.backend_for(cpu) == "spconv"
            auto = [enc(pyr) for _ in range(3)]
            assert torch.get_num_threads() == 2
            enc.backend = "torch"
            ref = enc(pyr)
    finally:
        torch.set_num_threads(n)
    for out in auto:
        for k in ("tokens", "feat_s8", "feat_s4"):
            torch.testing.assert_close(out[k], ref[k], atol=1e-5, rtol=1e-5)
        assert torch.equal(out["tokens"], auto[0]["tokens"])  # no thread race
