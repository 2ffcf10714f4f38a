# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""LiDAR encoder: sparse MinkUNet (spconv) to stride-16 tokens, plus kernel-2 sparse up/down convolutions.

The backbone always runs in fp32 (autocast is disabled inside). Voxels of every stride are matched to the
:class:`~sam4d_model.geometry.VoxelPyramid` order by their linear keys, so decoders, prompt and memory
encoders can work on plain ``(batch, voxels, channels)`` tensors.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List

import spconv.pytorch as spconv
import torch
from torch import nn

from ..config import SAM4DConfig
from ..geometry import VoxelPyramid, scatter_mean
from .sparse_torch import grouped_down, grouped_up, minkunet_forward_torch, pyramid_cells, pyramid_groups


def _bn(c: int, eps: float = 1e-3) -> nn.Module:
    return nn.BatchNorm1d(c, eps=eps, momentum=0.01)


class SparseBasicBlock(spconv.SparseModule):
    """Residual basic block (two 3x3x3 submanifold convolutions; a 1x1x1 projection on the shortcut when the
    channels change).
    """

    def __init__(self, cin: int, cout: int, key: str, eps: float = 1e-3):
        super().__init__()
        self.conv1 = spconv.SubMConv3d(cin, cout, 3, padding=1, bias=False, indice_key=key)
        self.bn1 = _bn(cout, eps)
        self.conv2 = spconv.SubMConv3d(cout, cout, 3, padding=1, bias=False, indice_key=key)
        self.bn2 = _bn(cout, eps)
        self.act = nn.ReLU(inplace=True)
        self.down = None
        if cin != cout:
            self.down = spconv.SparseSequential(spconv.SubMConv3d(cin, cout, 1, bias=False, indice_key=key + "_p"),
                                                _bn(cout, eps))

    def forward(self, x):
        identity = x.features if self.down is None else self.down(x).features
        out = self.conv1(x)
        out = out.replace_feature(self.act(self.bn1(out.features)))
        out = self.conv2(out)
        out = out.replace_feature(self.act(self.bn2(out.features) + identity))
        return out


class MinkUNet(nn.Module):
    """MinkUNet-style sparse UNet: stem, 4 stride-2 stages (strides 2..16), 2 decoder stages (strides 8, 4).

    ``down_keeps_channels``: the stride-2 convolution of a stage keeps the incoming channels and the stage's first
    block widens them (the official MinkUNet34), instead of the convolution widening them.
    """

    def __init__(self, in_channels: int, stem: int, enc: List[int], enc_blocks: List[int], dec: List[int],
                 dec_blocks: List[int], eps: float = 1e-3, down_keeps_channels: bool = False):
        super().__init__()
        self.stem = spconv.SparseSequential(
            spconv.SubMConv3d(in_channels, stem, 3, padding=1, bias=False, indice_key="subm1"), _bn(stem, eps),
            nn.ReLU(inplace=True),
            spconv.SubMConv3d(stem, stem, 3, padding=1, bias=False, indice_key="subm1"), _bn(stem, eps),
            nn.ReLU(inplace=True))
        self.encoder = nn.ModuleList()
        cin = stem
        for i, (c, nb) in enumerate(zip(enc, enc_blocks)):
            cd = cin if down_keeps_channels else c
            layers = [spconv.SparseConv3d(cin, cd, 2, stride=2, bias=False, indice_key=f"down{i}"), _bn(cd, eps),
                      nn.ReLU(inplace=True)]
            layers += [SparseBasicBlock(cd if b == 0 else c, c, f"subm{i + 2}", eps) for b in range(nb)]
            self.encoder.append(spconv.SparseSequential(*layers))
            cin = c
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        skips = [enc[2], enc[1]]
        for j, (c, nb) in enumerate(zip(dec, dec_blocks)):
            self.up.append(spconv.SparseSequential(
                spconv.SparseInverseConv3d(cin, c, 2, bias=False, indice_key=f"down{3 - j}"), _bn(c, eps),
                nn.ReLU(inplace=True)))
            blocks = [SparseBasicBlock(c + skips[j], c, f"subm{4 - j}", eps)]
            blocks += [SparseBasicBlock(c, c, f"subm{4 - j}", eps) for _ in range(nb - 1)]
            self.decoder.append(spconv.SparseSequential(*blocks))
            cin = c

    def forward(self, x):
        x = self.stem(x)
        feats = []
        for stage in self.encoder:
            x = stage(x)
            feats.append(x)
        outs = {16: x}
        skips = [feats[2], feats[1]]
        for j, (up, dec) in enumerate(zip(self.up, self.decoder)):
            x = up(x)
            x = x.replace_feature(torch.cat([x.features, skips[j].features], dim=1))
            x = dec(x)
            outs[8 if j == 0 else 4] = x
        return outs


@contextlib.contextmanager
def _one_cpu_thread(dev: torch.device) -> Iterator[None]:
    """Run spconv's CPU kernels on one intra-op thread (the only setting where they are exact), then restore."""
    n = torch.get_num_threads()
    if dev.type != "cpu" or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _reorder(sp: spconv.SparseConvTensor, pyr: VoxelPyramid, stride: int) -> torch.Tensor:
    lvl = pyr.level(stride)
    shp = [s // stride for s in pyr.spatial_shape]
    idx = sp.indices.long()
    keys = (idx[:, 1] * shp[1] + idx[:, 2]) * shp[2] + idx[:, 3]
    pos = torch.searchsorted(lvl.keys, keys)
    out = sp.features.new_zeros((lvl.keys.shape[0], sp.features.shape[1]))
    out[pos] = sp.features
    return out


class SAM4DLidarEncoder(nn.Module):
    """Voxel features -> MinkUNet -> stride-16 tokens (``d_model``) and projected stride-8/4 features.

    Input voxel features (base 0.15 m voxels): mean offset of the points from the voxel centre (in voxel
    units, 3 channels; only with ``lidar.voxel_offsets``) and mean extra point features (``num_point_features``,
    e.g. intensity).
    Outputs: ``tokens`` (T, d) at stride 16 with ``token_xyz`` (T, 3) the mean xyz of their points,
    ``feat_s8`` (V8, d/4) and ``feat_s4`` (V4, d/8) for the decoder skips.
    """

    #: ``auto``: spconv on CUDA; on CPU spconv single-threaded when no gradient is needed (inference: same
    #: numbers as the torch path, ~1.5-3x faster), the pure-PyTorch path when one is (spconv's CPU build has no
    #: backward, and its submanifold convolution races with more than one thread, so it never runs on more than
    #: one here). ``spconv`` / ``torch`` force one engine.
    backend: str = "auto"

    def backend_for(self, dev: torch.device) -> str:
        """The sparse engine used on ``dev`` (in the current grad mode)."""
        if self.backend == "auto":
            return "spconv" if dev.type == "cuda" or not torch.is_grad_enabled() else "torch"
        if self.backend not in ("spconv", "torch"):
            raise ValueError(f"lidar backend must be auto, spconv or torch, got {self.backend!r}")
        return self.backend

    def __init__(self, cfg: SAM4DConfig):
        super().__init__()
        lc = cfg.lidar
        d = cfg.d_model
        self.num_point_features = lc.num_point_features
        self.voxel_size = lc.voxel_size
        self.max_range = lc.max_range
        self.voxel_offsets = lc.voxel_offsets
        self.backbone = MinkUNet((3 if lc.voxel_offsets else 0) + lc.num_point_features, lc.stem_channels,
                                 list(lc.encoder_channels), list(lc.encoder_blocks), list(lc.decoder_channels),
                                 list(lc.decoder_blocks), lc.bn_eps, lc.down_keeps_channels)
        self.token_proj = nn.Linear(lc.encoder_channels[3], d)
        self.token_norm = nn.LayerNorm(d) if lc.token_norm else nn.Identity()
        self.proj_s8 = nn.Linear(lc.decoder_channels[0], d // 4)
        self.proj_s4 = nn.Linear(lc.decoder_channels[1], d // 8)
        self.d = d

    def forward(self, pyr: VoxelPyramid) -> Dict[str, torch.Tensor]:
        dev = self.token_proj.weight.device
        l1 = pyr.level(1)
        n1 = l1.coords.shape[0]
        if n1 == 0:
            z = torch.zeros
            return {"tokens": z((0, self.d), device=dev), "token_xyz": z((0, 3), device=dev),
                    "feat_s8": z((0, self.d // 4), device=dev), "feat_s4": z((0, self.d // 8), device=dev)}
        with torch.autocast(device_type=dev.type, enabled=False):
            vin = pyr.feats
            if self.voxel_offsets:
                centre = (l1.coords.float() + 0.5) * pyr.voxel_size + pyr.origin
                off = (pyr.xyz - centre[l1.point2vox]) / pyr.voxel_size
                vin = torch.cat([off, pyr.feats], dim=1)
            vf = scatter_mean(vin, l1.point2vox, n1)
            if self.backend_for(dev) == "torch":
                # Same modules and weights, executed with gather + matmul: trains on CPU and is deterministic.
                outs = minkunet_forward_torch(self.backbone, vf.float(), pyr)
                f16, f8, f4 = outs[16], outs[8], outs[4]
            else:
                idx = torch.cat([torch.zeros((n1, 1), dtype=torch.int32, device=dev), l1.coords.int()], dim=1)
                x = spconv.SparseConvTensor(vf.float(), idx, pyr.spatial_shape, 1)
                with _one_cpu_thread(dev):
                    outs = self.backbone(x)
                f16, f8, f4 = (_reorder(outs[k], pyr, k) for k in (16, 8, 4))
            tokens = self.token_norm(self.token_proj(f16))
            s8 = self.proj_s8(f8)
            s4 = self.proj_s4(f4)
            l16 = pyr.level(16)
            txyz = scatter_mean(pyr.xyz, l16.point2vox, l16.coords.shape[0])
        return {"tokens": tokens, "token_xyz": txyz, "feat_s8": s8, "feat_s4": s4}


class SparseUp2x(nn.Module):
    """Sparse transposed convolution, kernel 2 / stride 2, on pyramid levels (batched over dim 0).

    Every fine voxel has exactly one parent; its output is ``W[offset] @ x[parent] + b`` where ``offset`` is the
    child's position (0..7) in the parent cell. Equivalent to ``spconv.SparseInverseConv3d(k=2)``; computed with
    one matmul per child offset on the pyramid's cached :class:`~sam4d_model.modeling.sparse_torch.ChildGroups`.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.cout = cout
        self.weight = nn.Parameter(torch.empty(cin, 8 * cout))
        nn.init.kaiming_uniform_(self.weight.T, a=5 ** 0.5)
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor, pyr: VoxelPyramid, fine_stride: int) -> torch.Tensor:
        """``x`` (B, V at ``2 * fine_stride``, cin) -> (B, V at ``fine_stride``, cout)."""
        w8 = self.weight.to(x.dtype).view(-1, 8, self.cout).transpose(0, 1)
        return grouped_up(x, w8, pyramid_groups(pyr, fine_stride)) + self.bias.to(x.dtype)


class SparseDown2x(nn.Module):
    """Sparse convolution, kernel 2 / stride 2, from a fine pyramid level to its parents (batched over dim 0)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.cout = cout
        self.weight = nn.Parameter(torch.empty(cin, 8 * cout))
        nn.init.kaiming_uniform_(self.weight.T, a=5 ** 0.5)
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor, pyr: VoxelPyramid, fine_stride: int) -> torch.Tensor:
        """``x`` (B, V at ``fine_stride``, cin) -> (B, V at ``2 * fine_stride``, cout)."""
        w8 = self.weight.to(x.dtype).view(-1, 8, self.cout).transpose(0, 1)
        out = grouped_down(x, w8, pyramid_groups(pyr, fine_stride), pyr.num_voxels(2 * fine_stride))
        return out + self.bias.to(out.dtype)


class SparseDownCell(nn.Module):
    """Sparse convolution with kernel = stride = ``factor`` (a power of 2), from a fine pyramid level to the level
    ``factor`` times coarser (batched over dim 0). Weight in the torchsparse layout ``(factor^3, in, out)``, offset
    ``(jx * factor + jy) * factor + jz`` of a voxel in its coarse cell; with a bias (the official
    ``mask_downsample_pts``).
    """

    def __init__(self, cin: int, cout: int, factor: int):
        super().__init__()
        self.factor = factor
        self.weight = nn.Parameter(torch.empty(factor ** 3, cin, cout))
        nn.init.kaiming_uniform_(self.weight.view(-1, cout).T, a=5 ** 0.5)
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor, pyr: VoxelPyramid, fine_stride: int) -> torch.Tensor:
        """``x`` (B, V at ``fine_stride``, cin) -> (B, V at ``factor * fine_stride``, cout)."""
        g = pyramid_cells(pyr, fine_stride, self.factor)
        out = grouped_down(x, self.weight.to(x.dtype), g, pyr.num_voxels(fine_stride * self.factor))
        return out + self.bias.to(out.dtype)
