# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Pure-PyTorch execution of the sparse MinkUNet on a :class:`~sam4d_model.geometry.VoxelPyramid`.

spconv is the sparse-convolution engine of the LiDAR encoder on GPUs, but its CPU build has no backward pass
and is slow. This module runs the *same modules with the same weights* (the spconv ``SubMConv3d`` /
``SparseConv3d`` / ``SparseInverseConv3d`` parameters, layout ``(out, k, k, k, in)``) with gather + matmul on
the pyramid's voxel sets, so the LiDAR encoder trains on CPU and checkpoints are interchangeable:

* submanifold 3x3x3 convolution: for each of the 27 offsets, the neighbour of every active voxel is found by
  binary search of its linear key among the level's sorted keys; the gathered features ``(V, 27 * C_in)`` are
  multiplied once by the reshaped kernel;
* kernel-2 stride-2 convolution: every fine voxel adds ``x @ W[child_offset]`` to its parent;
* kernel-2 inverse convolution: every fine voxel takes ``x[parent] @ W[child_offset]``.

Outputs are in pyramid order (sorted linear keys) at strides 16, 8 and 4, exactly like the spconv path after
reordering. Equivalence with spconv is tested.
"""

from __future__ import annotations

import itertools
from typing import Dict, List

import torch
from torch import nn

from ..geometry import VoxelPyramid

_OFFSETS = torch.tensor(list(itertools.product((-1, 0, 1), repeat=3)), dtype=torch.long)


def neighbour_map(pyr: VoxelPyramid, stride: int) -> torch.Tensor:
    """(27, V) index of the neighbour at each 3x3x3 offset of every voxel of a level (-1 where empty)."""
    lvl = pyr.level(stride)
    coords, keys = lvl.coords, lvl.keys
    shp = torch.tensor([s // stride for s in pyr.spatial_shape], device=coords.device)
    v = coords.shape[0]
    if v == 0:
        return torch.zeros((27, 0), dtype=torch.long, device=coords.device)
    nc = coords.unsqueeze(0) + _OFFSETS.to(coords.device).unsqueeze(1)  # (27, V, 3)
    inside = ((nc >= 0) & (nc < shp)).all(-1)
    nk = (nc[..., 0] * shp[1] + nc[..., 1]) * shp[2] + nc[..., 2]
    pos = torch.searchsorted(keys, nk.clamp(min=0)).clamp(max=v - 1)
    found = inside & (keys[pos] == nk)
    return torch.where(found, pos, torch.full_like(pos, -1))


def subm_conv(x: torch.Tensor, weight: torch.Tensor, nmap: torch.Tensor) -> torch.Tensor:
    """Submanifold convolution with a spconv weight ``(out, k, k, k, in)`` (k = 1 or 3) on features ``(V, in)``."""
    cout, k = weight.shape[0], weight.shape[1]
    cin = weight.shape[-1]
    if k == 1:
        # spconv's 1x1x1 fast path multiplies by the raw weight memory viewed as (in, out); match it exactly so
        # that weights are interchangeable between the two backends.
        return x @ weight.reshape(cin, cout)
    v = x.shape[0]
    xz = torch.cat([x, x.new_zeros((1, cin))], 0)  # row V = zeros for missing neighbours
    idx = torch.where(nmap >= 0, nmap, torch.full_like(nmap, v))  # (27, V)
    gathered = xz[idx.t().reshape(-1)].reshape(v, 27 * cin)
    w = weight.permute(1, 2, 3, 4, 0).reshape(27 * cin, cout)
    return gathered @ w


def down_conv(x: torch.Tensor, weight: torch.Tensor, parent: torch.Tensor, offset: torch.Tensor,
              num_parents: int) -> torch.Tensor:
    """Kernel-2 stride-2 convolution (spconv ``SparseConv3d`` weight ``(out, 2, 2, 2, in)``)."""
    cout, cin = weight.shape[0], weight.shape[-1]
    v = x.shape[0]
    w = weight.permute(4, 1, 2, 3, 0).reshape(cin, 8 * cout)
    y = (x @ w).view(v, 8, cout)[torch.arange(v, device=x.device), offset]  # (V, out)
    out = x.new_zeros((num_parents, cout))
    return out.index_add(0, parent, y)


def up_conv(x: torch.Tensor, weight: torch.Tensor, parent: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Kernel-2 inverse convolution (spconv ``SparseInverseConv3d`` weight ``(out, 2, 2, 2, in)``)."""
    cout, cin = weight.shape[0], weight.shape[-1]
    w = weight.permute(4, 1, 2, 3, 0).reshape(cin, 8 * cout)
    return (x @ w).view(x.shape[0], 8, cout)[parent, offset]


def _run_seq(seq: nn.Module, x: torch.Tensor, ctx: Dict) -> torch.Tensor:
    """Run a (Sparse)Sequential of convs / BN / ReLU / basic blocks on dense features ``x``."""
    import spconv.pytorch as spconv

    from .lidar_encoder import SparseBasicBlock

    for m in seq.children() if isinstance(seq, (nn.Sequential, spconv.SparseSequential)) else [seq]:
        if isinstance(m, SparseBasicBlock):
            identity = x if m.down is None else _run_seq(m.down, x, ctx)
            out = torch.relu(m.bn1(subm_conv(x, m.conv1.weight, ctx["nmap"])))
            out = m.bn2(subm_conv(out, m.conv2.weight, ctx["nmap"]))
            x = torch.relu(out + identity)
        elif isinstance(m, spconv.SubMConv3d):
            x = subm_conv(x, m.weight, ctx["nmap"])
            if m.bias is not None:
                x = x + m.bias
        elif isinstance(m, spconv.SparseInverseConv3d):
            fine = ctx["pyr"].level(ctx["stride"] // 2)
            x = up_conv(x, m.weight, fine.parent, fine.child_offset)
            ctx["stride"] //= 2
            ctx["nmap"] = ctx["nmaps"][ctx["stride"]]
        elif isinstance(m, spconv.SparseConv3d):
            fine = ctx["pyr"].level(ctx["stride"])
            ctx["stride"] *= 2
            x = down_conv(x, m.weight, fine.parent, fine.child_offset, ctx["pyr"].num_voxels(ctx["stride"]))
            ctx["nmap"] = ctx["nmaps"][ctx["stride"]]
        elif isinstance(m, (nn.BatchNorm1d, nn.ReLU, nn.Identity, nn.LeakyReLU)):
            x = m(x)
        elif isinstance(m, (nn.Sequential, spconv.SparseSequential)):
            x = _run_seq(m, x, ctx)
        else:
            raise TypeError(f"torch sparse backend: unsupported module {type(m).__name__}")
    return x


def minkunet_forward_torch(backbone: nn.Module, voxel_features: torch.Tensor, pyr: VoxelPyramid
                           ) -> Dict[int, torch.Tensor]:
    """Run a :class:`~sam4d_model.modeling.lidar_encoder.MinkUNet` with torch ops; features per stride {16, 8, 4}."""
    nmaps = {s: neighbour_map(pyr, s) for s in (1, 2, 4, 8, 16)}
    ctx = {"pyr": pyr, "stride": 1, "nmaps": nmaps, "nmap": nmaps[1]}
    x = _run_seq(backbone.stem, voxel_features, ctx)
    feats: List[torch.Tensor] = []
    for stage in backbone.encoder:
        x = _run_seq(stage, x, ctx)
        feats.append(x)
    outs = {16: x}
    skips = [feats[2], feats[1]]
    for j, (up, dec) in enumerate(zip(backbone.up, backbone.decoder)):
        x = _run_seq(up, x, ctx)
        x = torch.cat([x, skips[j]], dim=1)
        x = _run_seq(dec, x, ctx)
        outs[8 if j == 0 else 4] = x
    return outs
