# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Pure-PyTorch execution of the sparse MinkUNet on a :class:`~sam4d_model.geometry.VoxelPyramid`.

spconv is the sparse-convolution engine of the LiDAR encoder on GPUs, but its CPU build has no backward pass
and is slow. This module runs the *same modules with the same weights* (the spconv ``SubMConv3d`` /
``SparseConv3d`` / ``SparseInverseConv3d`` parameters, layout ``(out, k, k, k, in)``) with gather + matmul on
the pyramid's voxel sets, so the LiDAR encoder trains on CPU and checkpoints are interchangeable:

* submanifold 3x3x3 convolution: for each of the 27 offsets, the neighbour of every active voxel is found by
  binary search of its linear key among the level's sorted keys (:func:`neighbour_map`), turned once per level
  into the list of existing (output, input) pairs per offset (:class:`ConvPairs`); each offset multiplies only
  the inputs that exist (on LiDAR scans 1-17 of the 27, so far fewer FLOPs than a dense ``(V, 27 C)`` gather)
  and its products are scattered into the output in one ``index_add``;
* kernel-2 stride-2 convolution: every fine voxel adds ``x @ W[child_offset]`` to its parent, computed per
  child offset (8 groups) instead of multiplying all 8 kernels and keeping one;
* kernel-2 inverse convolution: every fine voxel takes ``x[parent] @ W[child_offset]``, also per child offset.

Both pair structures (:class:`ConvPairs`, :class:`ChildGroups`) are cached on the pyramid, so they are built
once per frame and reused by every convolution of that level and stride, in the backbone and in the prompt,
memory and decoder up/down convolutions.

Outputs are in pyramid order (sorted linear keys) at strides 16, 8 and 4, exactly like the spconv path after
reordering. Equivalence with spconv is tested.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Dict, List, Optional, Union

import torch
from torch import nn

from ..geometry import VoxelPyramid


def kernel_offsets(k: int) -> torch.Tensor:
    """``(k^3, 3)`` offsets of an odd ``k x k x k`` kernel, x slowest and z fastest: offset ``(a, b, c)`` (each in
    ``-(k//2) .. k//2``) is row ``((a + r) * k + b + r) * k + c + r`` with ``r = k // 2``, the position of
    ``weight[:, a + r, b + r, c + r, :]`` in a spconv ``(out, k, k, k, in)`` weight.
    """
    r = k // 2
    return torch.tensor(list(itertools.product(range(-r, r + 1), repeat=3)), dtype=torch.long)


def neighbour_map(pyr: VoxelPyramid, stride: int, k: int = 3) -> torch.Tensor:
    """(k^3, V) index of the neighbour at each offset of a ``k x k x k`` kernel (:func:`kernel_offsets`) of every
    voxel of a level (-1 where empty).
    """
    lvl = pyr.level(stride)
    coords, keys = lvl.coords, lvl.keys
    shp = torch.tensor([s // stride for s in pyr.spatial_shape], device=coords.device)
    v = coords.shape[0]
    if v == 0:
        return torch.zeros((k ** 3, 0), dtype=torch.long, device=coords.device)
    nc = coords.unsqueeze(0) + kernel_offsets(k).to(coords.device).unsqueeze(1)  # (k^3, V, 3)
    inside = ((nc >= 0) & (nc < shp)).all(-1)
    nk = (nc[..., 0] * shp[1] + nc[..., 1]) * shp[2] + nc[..., 2]
    pos = torch.searchsorted(keys, nk.clamp(min=0)).clamp(max=v - 1)
    found = inside & (keys[pos] == nk)
    return torch.where(found, pos, torch.full_like(pos, -1))


@dataclass
class ConvPairs:
    """Existing neighbour pairs of a level, grouped by kernel offset (the centre offset is the identity).

    ``inputs`` holds, offset after offset (centre excluded), the input voxel of every pair; ``outputs`` the
    output voxel of the same pair; ``bounds[k]`` / ``bounds[k + 1]`` delimit offset ``k``'s slice (a python list,
    so slicing costs nothing).
    """

    num_voxels: int
    inputs: torch.Tensor
    outputs: torch.Tensor
    bounds: List[int]
    offsets: List[int]
    kernel: int = 3


def conv_pairs(nmap: torch.Tensor) -> ConvPairs:
    """Neighbour pairs per offset of a :func:`neighbour_map` (offsets with no pair are left out)."""
    v = nmap.shape[1]
    kernel = round(nmap.shape[0] ** (1 / 3))
    centre = nmap.shape[0] // 2
    ins, outs, bounds, offs = [], [], [0], []
    for k in range(nmap.shape[0]):
        if k == centre:
            continue
        o = torch.nonzero(nmap[k] >= 0).flatten()
        if o.numel() == 0:
            continue
        ins.append(nmap[k, o])
        outs.append(o)
        offs.append(k)
        bounds.append(bounds[-1] + int(o.numel()))
    e = nmap.new_zeros((0,))
    return ConvPairs(v, torch.cat(ins) if ins else e, torch.cat(outs) if outs else e, bounds, offs, kernel)


def pyramid_pairs(pyr: VoxelPyramid, stride: int, k: int = 3) -> ConvPairs:
    """:func:`conv_pairs` of a pyramid level for a ``k x k x k`` kernel, computed once and cached on the pyramid."""
    key = ("pairs", stride) if k == 3 else ("pairs", stride, k)
    if key not in pyr.conv_cache:
        pyr.conv_cache[key] = conv_pairs(neighbour_map(pyr, stride, k))
    return pyr.conv_cache[key]


@dataclass
class ChildGroups:
    """Fine voxels of a level grouped by child offset (0..7) within their parent cell.

    ``order`` lists the fine voxels group after group, ``bounds`` delimit the groups, ``inverse`` undoes
    ``order`` and ``parent`` is ``parent[order]``.
    """

    order: torch.Tensor
    inverse: Optional[torch.Tensor]
    parent: torch.Tensor
    bounds: List[int]
    num_fine: int = 0


def child_groups(parent: torch.Tensor, offset: torch.Tensor, num_offsets: int = 8) -> ChildGroups:
    """Group fine voxels by ``offset`` (a stable sort keeps the voxel order inside each group).

    Voxels without a parent (``parent < 0``: the official boundary drop) are left out: they add nothing to the
    coarse level and an inverse convolution gives them 0 (``inverse`` is then ``None``).
    """
    n = int(parent.numel())
    orphans = parent < 0
    has_orphans = bool(orphans.any())
    if has_orphans:
        offset = torch.where(orphans, torch.full_like(offset, num_offsets), offset)  # orphans sort last
    order = torch.sort(offset, stable=True).indices
    counts = torch.bincount(offset, minlength=num_offsets + 1).tolist()[:num_offsets]
    bounds = [0]
    for c in counts:
        bounds.append(bounds[-1] + c)
    if has_orphans:
        order = order[: bounds[-1]]
        return ChildGroups(order, None, parent[order], bounds, n)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    return ChildGroups(order, inverse, parent[order], bounds, n)


def pyramid_groups(pyr: VoxelPyramid, stride: int) -> ChildGroups:
    """:func:`child_groups` of the level at ``stride`` (towards ``2 * stride``), cached on the pyramid."""
    key = ("groups", stride)
    if key not in pyr.conv_cache:
        lvl = pyr.level(stride)
        pyr.conv_cache[key] = child_groups(lvl.parent, lvl.child_offset)
    return pyr.conv_cache[key]


def subm_conv(x: torch.Tensor, weight: torch.Tensor, pairs: Optional[Union[ConvPairs, torch.Tensor]]
              ) -> torch.Tensor:
    """Submanifold convolution with a spconv weight ``(out, k, k, k, in)`` (k = 1 or odd) on features ``(..., V, in)``.

    ``pairs`` is the level's :class:`ConvPairs` for kernel ``k`` (a raw :func:`neighbour_map` is accepted too);
    unused for k = 1.
    """
    cout, k = weight.shape[0], weight.shape[1]
    cin = weight.shape[-1]
    if k == 1:
        # spconv's 1x1x1 fast path multiplies by the raw weight memory viewed as (in, out); match it exactly so
        # that weights are interchangeable between the two backends.
        return x @ weight.reshape(cin, cout)
    if not isinstance(pairs, ConvPairs):
        pairs = conv_pairs(pairs)
    if pairs.kernel != k:
        raise ValueError(f"subm_conv: pairs of a {pairs.kernel}^3 kernel for a {k}^3 weight")
    w = weight.permute(1, 2, 3, 4, 0).reshape(k ** 3, cin, cout)
    y = x @ w[k ** 3 // 2]
    if not pairs.offsets:
        return y
    xi = x.index_select(-2, pairs.inputs)
    b = pairs.bounds
    prod = torch.cat([xi[..., b[j]:b[j + 1], :] @ w[o] for j, o in enumerate(pairs.offsets)], dim=-2)
    return y.index_add(y.dim() - 2, pairs.outputs, prod)


def _kernel8(weight: torch.Tensor) -> torch.Tensor:
    cout, cin = weight.shape[0], weight.shape[-1]
    return weight.permute(1, 2, 3, 4, 0).reshape(8, cin, cout)


def down_conv(x: torch.Tensor, weight: torch.Tensor, parent: torch.Tensor, offset: torch.Tensor,
              num_parents: int, groups: Optional[ChildGroups] = None) -> torch.Tensor:
    """Kernel-2 stride-2 convolution (spconv ``SparseConv3d`` weight ``(out, 2, 2, 2, in)``)."""
    return grouped_down(x, _kernel8(weight), groups or child_groups(parent, offset), num_parents)


def up_conv(x: torch.Tensor, weight: torch.Tensor, parent: torch.Tensor, offset: torch.Tensor,
            groups: Optional[ChildGroups] = None) -> torch.Tensor:
    """Kernel-2 inverse convolution (spconv ``SparseInverseConv3d`` weight ``(out, 2, 2, 2, in)``)."""
    return grouped_up(x, _kernel8(weight), groups or child_groups(parent, offset))


def grouped_down(x: torch.Tensor, w8: torch.Tensor, g: ChildGroups, num_parents: int) -> torch.Tensor:
    """``out[parent[i]] += x[i] @ w8[offset[i]]`` with one matmul per child offset; ``x`` is ``(..., V, in)``."""
    xs = x.index_select(-2, g.order)
    b = g.bounds
    y = torch.cat([xs[..., b[o]:b[o + 1], :] @ w8[o] for o in range(len(b) - 1) if b[o + 1] > b[o]], dim=-2)
    out = y.new_zeros(y.shape[:-2] + (num_parents, y.shape[-1]))
    return out.index_add(out.dim() - 2, g.parent, y)


def grouped_up(x: torch.Tensor, w8: torch.Tensor, g: ChildGroups) -> torch.Tensor:
    """``out[i] = x[parent[i]] @ w8[offset[i]]`` with one matmul per child offset; ``x`` is ``(..., P, in)``."""
    xp = x.index_select(-2, g.parent)
    b = g.bounds
    y = torch.cat([xp[..., b[o]:b[o + 1], :] @ w8[o] for o in range(8) if b[o + 1] > b[o]], dim=-2)
    if g.inverse is not None:
        return y.index_select(-2, g.inverse)
    out = y.new_zeros(y.shape[:-2] + (g.num_fine, y.shape[-1]))
    return out.index_copy(out.dim() - 2, g.order, y)


def pyramid_cells(pyr: VoxelPyramid, fine_stride: int, factor: int) -> ChildGroups:
    """Voxels at ``fine_stride`` grouped by their position in the ``factor``-times coarser cell (offset
    ``(jx * factor + jy) * factor + jz``, z fastest as the official torchsparse kernel maps of even kernels),
    with the index of that cell at ``fine_stride * factor``; cached on the pyramid.
    """
    key = ("cells", fine_stride, factor)
    if key not in pyr.conv_cache:
        parent = torch.arange(pyr.num_voxels(fine_stride), device=pyr.level(fine_stride).coords.device)
        s = fine_stride
        while s < fine_stride * factor:
            up = pyr.level(s).parent
            parent = torch.where(parent >= 0, up[parent.clamp(min=0)], parent)
            s *= 2
        off = pyr.level(fine_stride).coords % factor
        offset = (off[:, 0] * factor + off[:, 1]) * factor + off[:, 2]
        pyr.conv_cache[key] = child_groups(parent, offset, factor ** 3)
    return pyr.conv_cache[key]


def _run_seq(seq: nn.Module, x: torch.Tensor, ctx: Dict) -> torch.Tensor:
    """Run a (Sparse)Sequential of convs / BN / ReLU / basic blocks on dense features ``x``."""
    import spconv.pytorch as spconv

    from .lidar_encoder import SparseBasicBlock

    for m in seq.children() if isinstance(seq, (nn.Sequential, spconv.SparseSequential)) else [seq]:
        if isinstance(m, SparseBasicBlock):
            identity = x if m.down is None else _run_seq(m.down, x, ctx)
            pairs = pyramid_pairs(ctx["pyr"], ctx["stride"])
            out = torch.relu(m.bn1(subm_conv(x, m.conv1.weight, pairs)))
            out = m.bn2(subm_conv(out, m.conv2.weight, pairs))
            x = torch.relu(out + identity)
        elif isinstance(m, spconv.SubMConv3d):
            x = subm_conv(x, m.weight, pyramid_pairs(ctx["pyr"], ctx["stride"]))
            if m.bias is not None:
                x = x + m.bias
        elif isinstance(m, spconv.SparseInverseConv3d):
            fine = ctx["pyr"].level(ctx["stride"] // 2)
            x = up_conv(x, m.weight, fine.parent, fine.child_offset, pyramid_groups(ctx["pyr"], ctx["stride"] // 2))
            ctx["stride"] //= 2
        elif isinstance(m, spconv.SparseConv3d):
            fine = ctx["pyr"].level(ctx["stride"])
            groups = pyramid_groups(ctx["pyr"], ctx["stride"])
            ctx["stride"] *= 2
            x = down_conv(x, m.weight, fine.parent, fine.child_offset, ctx["pyr"].num_voxels(ctx["stride"]), groups)
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
    ctx = {"pyr": pyr, "stride": 1}
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
