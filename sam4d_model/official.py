# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The released SAM4D checkpoint (``sam4d_hieraS_mink34w32.pth``, ``{"model": state_dict}``) as ``sam4d_small``.

:func:`is_official_state_dict` recognises the file by its keys; :func:`convert_official_state_dict` turns its 904
keys into this project's names and layouts (reference: ``shared/reference/official_sam4d/SPEC.md`` sections 2-3):

* prefix renames (``pure_model.backbone.image.0.`` -> ``image_encoder.encoder.trunk.`` and so on);
* torchsparse kernels ``(K, in, out)`` -> spconv ``(out, k, k, k, in)``: odd kernels are indexed x fastest by
  torchsparse and x slowest by spconv (``reshape(k, k, k, in, out).permute(4, 2, 1, 0, 3)``); kernel-2 stride-2
  kernels are z fastest in both (``permute(4, 0, 1, 2, 3)``); our :class:`SparseUp2x` / :class:`SparseDown2x`
  keep ``(in, 8 * out)``; 1x1x1 kernels ``(in, out)`` become ``nn.Linear`` weights (transposed) or spconv 1x1x1
  weights (the raw memory reshaped, as spconv's 1x1x1 path multiplies by ``weight.view(in, out)``);
* weights the official model shares are duplicated (hypernetwork MLPs of both heads, the memory temporal
  encoding and the no-object embedding of both modalities);
* the official memory temporal index is the frame distance minus one (0 = previous frame, 6 = prompted frames),
  ours ``num_maskmem - 1 - distance``: the table is re-indexed here, so both step rules read the same rows;
* our random Fourier features are ``2 pi c xyz @ F`` (``c = umpe.fourier_coord_scale``), the official ones
  ``xyz @ G``: ``F = G / (2 pi c)``;
* keys only this project has get neutral values (identity projections, zero biases and embeddings), the
  deterministic frustum buffer is dropped (ours recomputes the rays).

Every official key must be placed and every model key filled, or :class:`CheckpointError` lists what was not.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Dict, List, Tuple

import torch

#: Keys every official checkpoint holds and no checkpoint of ours does.
_SIGNATURE = ("union_pe_func.union_pe_layer.mlp_embedding.0.weight", "pure_model.fusion.memory_attention.norm.weight")

Transform = Callable[[torch.Tensor], torch.Tensor]


def is_official_state_dict(sd: Dict[str, torch.Tensor]) -> bool:
    """Whether ``sd`` is the state dict of the official SAM4D model (its ``"model"`` entry)."""
    return all(k in sd for k in _SIGNATURE)


def ts_odd_to_spconv(k: torch.Tensor) -> torch.Tensor:
    """Torchsparse ``(k^3, in, out)`` (offset index x fastest) -> spconv ``(out, k, k, k, in)`` (x slowest)."""
    n = round(k.shape[0] ** (1 / 3))
    return k.reshape(n, n, n, k.shape[1], k.shape[2]).permute(4, 2, 1, 0, 3).contiguous()


def ts_k2_to_spconv(k: torch.Tensor) -> torch.Tensor:
    """Torchsparse kernel-2 ``(8, in, out)`` (``4 jx + 2 jy + jz``) -> spconv ``(out, 2, 2, 2, in)``."""
    return k.reshape(2, 2, 2, k.shape[1], k.shape[2]).permute(4, 0, 1, 2, 3).contiguous()


def ts_k2_to_grouped(k: torch.Tensor) -> torch.Tensor:
    """Torchsparse kernel-2 ``(8, in, out)`` -> our :class:`SparseDown2x` / :class:`SparseUp2x` ``(in, 8 * out)``."""
    return k.permute(1, 0, 2).reshape(k.shape[1], -1).contiguous()


def ts_1x1_to_spconv(k: torch.Tensor) -> torch.Tensor:
    """Torchsparse 1x1x1 ``(in, out)`` -> spconv 1x1x1 ``(out, 1, 1, 1, in)``: the raw memory (no transpose)."""
    return k.contiguous().reshape(k.shape[1], 1, 1, 1, k.shape[0])


def _transpose(k: torch.Tensor) -> torch.Tensor:
    return k.t().contiguous()


def _identity(k: torch.Tensor) -> torch.Tensor:
    return k


def _sparse_kernel(k: torch.Tensor) -> torch.Tensor:
    """A MinkUNet kernel by its shape: 3^3 / 2^3 / 1x1x1."""
    if k.dim() == 2:
        return ts_1x1_to_spconv(k)
    if k.shape[0] == 8:
        return ts_k2_to_spconv(k)
    return ts_odd_to_spconv(k)


_BLOCK = {"net.0": "conv1", "net.1": "bn1", "net.3": "conv2", "net.4": "bn2", "downsample.0": "down.0",
          "downsample.1": "down.1"}


def _minkunet(rest: str) -> str:
    """Official MinkUNet key (after ``sparse_3d.0.``) -> ours (after ``lidar_encoder.backbone.``)."""
    m = re.fullmatch(r"conv_input\.(\d+)\.(.+)", rest)
    if m:
        return f"stem.{m.group(1)}.{m.group(2)}"
    m = re.fullmatch(r"encoder\.(\d+)\.0\.net\.(\d)\.(.+)", rest)
    if m:
        return f"encoder.{m.group(1)}.{m.group(2)}.{m.group(3)}"
    m = re.fullmatch(r"encoder\.(\d+)\.(\d+)\.(net\.\d|downsample\.\d)\.(.+)", rest)
    if m:
        return f"encoder.{m.group(1)}.{int(m.group(2)) + 2}.{_BLOCK[m.group(3)]}.{m.group(4)}"
    m = re.fullmatch(r"decoder\.(\d+)\.0\.net\.(\d)\.(.+)", rest)
    if m:
        return f"up.{m.group(1)}.{m.group(2)}.{m.group(3)}"
    m = re.fullmatch(r"decoder\.(\d+)\.1\.(\d+)\.(net\.\d|downsample\.\d)\.(.+)", rest)
    if m:
        return f"decoder.{m.group(1)}.{m.group(2)}.{_BLOCK[m.group(3)]}.{m.group(4)}"
    raise KeyError(rest)


def _lidar_memory(rest: str) -> Tuple[str, Transform]:
    m = re.fullmatch(r"mask_downsampler\.encoder\.(\d+)\.(.+)", rest)
    if m:
        i, leaf = int(m.group(1)), m.group(2)
        if i == 12:
            return ("mask_proj.weight", _transpose) if leaf == "kernel" else (f"mask_proj.{leaf}", _identity)
        if i % 3 == 0:
            return f"downs.{i // 3}.weight", ts_k2_to_grouped
        return f"norms.{i // 3}.{leaf}", _identity
    if rest == "pix_feat_proj.kernel":
        return "pix_feat_proj.weight", _transpose
    if rest == "pix_feat_proj.bias":
        return rest, _identity
    m = re.fullmatch(r"fuser\.layers\.(\d+)\.(.+)", rest)
    if m:
        i, leaf = m.group(1), m.group(2)
        table = {"conv.kernel": ("conv.weight", ts_odd_to_spconv), "pwconv1.kernel": ("fc1.weight", _transpose),
                 "pwconv2.kernel": ("fc2.weight", _transpose)}
        name, fn = table.get(leaf, (leaf, _identity))
        return f"fuser.{i}.{name}", fn
    raise KeyError(rest)


def _lidar_prompt(rest: str) -> Tuple[str, Transform]:
    m = re.fullmatch(r"mask_downscaling\.(\d)\.net\.(\d)\.(.+)", rest)
    if m:
        stage, part, leaf = int(m.group(1)) + 1, m.group(2), m.group(3)
        if part == "0":
            return f"down{stage}.weight", ts_k2_to_grouped
        return f"norm{stage}.{leaf}", _identity
    if rest == "mask_downscaling.2.kernel":
        return "proj.weight", _transpose
    return rest, _identity


def _decoder(rest: str) -> List[Tuple[str, Transform]]:
    table = {"output_upscaling_pts.0.kernel": ("pts_up1.weight", ts_k2_to_grouped),
             "output_upscaling_pts.3.kernel": ("pts_up2.weight", ts_k2_to_grouped),
             "output_upscaling_pts.3.bias": ("pts_up2.bias", _identity)}
    if rest in table:
        name, fn = table[rest]
        return [("mask_decoder." + name, fn)]
    if rest == "conv_s0_pts.kernel":
        return [("lidar_encoder.proj_s4.weight", _transpose)]
    if rest == "conv_s1_pts.kernel":
        return [("lidar_encoder.proj_s8.weight", _transpose)]
    m = re.fullmatch(r"output_upscaling_pts\.1\.(.+)", rest)
    if m:
        return [("mask_decoder.pts_norm1." + m.group(1), _identity)]
    out = [("mask_decoder." + rest, _identity)]
    if rest.startswith("output_hypernetworks_mlps."):
        # one set of hypernetwork MLPs serves both heads in the official decoder
        out.append(("mask_decoder.pts_" + rest[len("output_"):], _identity))
    return out


def _tpos_reindex(t: torch.Tensor) -> torch.Tensor:
    """Official ``maskmem_tpos_enc`` ``(n, 1, 1, d)`` (row ``distance - 1``; last row: prompted frames) -> ours
    ``(n, 1, d)`` (row ``n - 1 - distance``; last row: prompted frames).
    """
    n = t.shape[0]
    t = t.reshape(n, 1, t.shape[-1])
    order = [n - 2 - i for i in range(n - 1)] + [n - 1]
    return t[order].contiguous()


def official_targets(key: str, fourier_coord_scale: float) -> List[Tuple[str, Transform]]:
    """Our key(s) and the transform of one official key; ``[]`` for a key deliberately dropped (the frustum)."""
    if key == "union_pe_func.union_pe_layer.frustum":
        return []
    if key == "union_pe_func.pts_pe_layer.positional_encoding_gaussian_matrix":
        scale = 1.0 / (2 * math.pi * fourier_coord_scale)
        return [("umpe.fourier_matrix", lambda g: g * scale)]
    m = re.fullmatch(r"union_pe_func\.union_pe_layer\.mlp_embedding\.(\d)\.(.+)", key)
    if m:
        return [(f"umpe.mlp.{m.group(1)}.{m.group(2)}", _identity)]
    if key == "maskmem_tpos_enc":
        return [("img_maskmem_tpos_enc", _tpos_reindex), ("pts_maskmem_tpos_enc", _tpos_reindex)]
    if key == "no_obj_embed_spatial":
        return [("img_no_obj_embed_spatial", _identity), ("pts_no_obj_embed_spatial", _identity)]
    if key in ("no_mem_embed", "no_mem_pos_enc", "mask_downsample_img.weight", "mask_downsample_img.bias",
               "mask_downsample_pts.bias"):
        return [(key, _identity)]
    if key == "mask_downsample_pts.kernel":
        return [("mask_downsample_pts.weight", _identity)]
    if key.startswith("ego_pose_encoder."):
        return [("pose_encoder." + key[len("ego_pose_encoder."):], _identity)]
    prefixes = [("pure_model.backbone.image.0.", "image_encoder.encoder.trunk."),
                ("pure_model.backbone.image.1.", "image_encoder.encoder.neck."),
                ("pure_model.fusion.memory_attention.", "memory_attention."),
                ("pure_model.fusion.memory_encoder.image.", "image_memory_encoder."),
                ("pure_model.head.sam.sam_prompt_encoder.", "image_prompt_encoder."),
                ("pure_model.head.sam.obj_ptr_proj.", "obj_ptr_proj."),
                ("pure_model.head.sam.obj_ptr_tpos_proj.", "obj_ptr_tpos_proj.")]
    for src, dst in prefixes:
        if key.startswith(src):
            return [(dst + key[len(src):], _identity)]
    if key == "pure_model.head.sam.no_obj_ptr":
        return [("no_obj_ptr", _identity)]
    src = "pure_model.backbone.point.sparse_3d.0."
    if key.startswith(src):
        rest = key[len(src):]
        ours = _minkunet(rest)
        if ours.endswith(".kernel"):
            return [("lidar_encoder.backbone." + ours[: -len(".kernel")] + ".weight", _sparse_kernel)]
        return [("lidar_encoder.backbone." + ours, _identity)]
    src = "pure_model.fusion.memory_encoder.point."
    if key.startswith(src):
        name, fn = _lidar_memory(key[len(src):])
        return [("lidar_memory_encoder." + name, fn)]
    src = "pure_model.head.sam.psam_prompt_encoder."
    if key.startswith(src):
        name, fn = _lidar_prompt(key[len(src):])
        return [("lidar_prompt_encoder." + name, fn)]
    src = "pure_model.head.sam.sam_mask_decoder."
    if key.startswith(src):
        return _decoder(key[len(src):])
    raise KeyError(key)


def _neutral(key: str, like: torch.Tensor) -> torch.Tensor:
    """Value of a key only this project has, chosen so that it changes nothing: identity projections, else 0."""
    if key.endswith(".weight") and like.dim() == 2 and like.shape[0] == like.shape[1] and (
            key.startswith(("lidar_encoder.token_proj.", "image_memory_encoder.out_proj.",
                            "lidar_memory_encoder.out_proj."))):
        return torch.eye(like.shape[0], dtype=like.dtype)
    if key == "image_memory_encoder.out_proj.weight" and like.dim() == 4:
        return torch.eye(like.shape[0], dtype=like.dtype).view(like.shape)
    return torch.zeros_like(like)


#: Our keys with no official counterpart, filled by :func:`_neutral` (every other model key must be converted).
NEUTRAL_KEYS = re.compile(
    r"(img_token_norm\..*|lidar_encoder\.token_norm\..*|lidar_encoder\.token_proj\..*|umpe\.mlp\.3\..*"
    r"|cross_modal_embed|ptr_modality_embed|image_memory_encoder\.out_proj\..*|lidar_memory_encoder\.out_proj\..*"
    r"|lidar_encoder\.proj_s[48]\.bias|lidar_prompt_encoder\.(down[12]|proj)\.bias|mask_decoder\.pts_up1\.bias"
    r"|lidar_memory_encoder\.downs\.\d\.bias|lidar_memory_encoder\.fuser\.\d\.fc[12]\.bias)")


def convert_official_state_dict(sd: Dict[str, torch.Tensor], own: Dict[str, torch.Tensor],
                                fourier_coord_scale: float = 0.1) -> Tuple[Dict[str, torch.Tensor], Dict[str, list]]:
    """Official state dict -> a state dict for a model whose own state dict is ``own`` (``sam4d_small``).

    Returns ``(state_dict, report)``; ``report`` lists ``converted`` official keys, ``dropped`` ones and the
    ``neutral`` model keys. Raises :class:`~sam4d_model.checkpoint.CheckpointError` for official keys that
    cannot be placed (unknown name, no such model key, shape mismatch) and for model keys left unfilled.
    """
    from .checkpoint import CheckpointError

    out: Dict[str, torch.Tensor] = {}
    report: Dict[str, list] = {"converted": [], "dropped": [], "neutral": []}
    errors: List[str] = []
    for key, value in sd.items():
        try:
            targets = official_targets(key, fourier_coord_scale)
        except KeyError:
            errors.append(f"{key}: no rule places this key")
            continue
        if not targets:
            report["dropped"].append(key)
            continue
        for name, fn in targets:
            if name not in own:
                errors.append(f"{key} -> {name}: the model has no such key")
                continue
            v = fn(value)
            if tuple(v.shape) != tuple(own[name].shape):
                errors.append(f"{key} -> {name}: converted shape {tuple(v.shape)} vs model {tuple(own[name].shape)}")
                continue
            if name in out:
                errors.append(f"{key} -> {name}: placed twice")
                continue
            out[name] = v.to(own[name].dtype) if v.is_floating_point() else v
        report["converted"].append(key)
    for name, like in own.items():
        if name in out:
            continue
        if NEUTRAL_KEYS.fullmatch(name):
            out[name] = _neutral(name, like)
            report["neutral"].append(name)
        else:
            errors.append(f"{name}: model key with no official counterpart and no neutral value")
    if errors:
        more = f" ... (+{len(errors) - 20} more)" if len(errors) > 20 else ""
        raise CheckpointError(f"official SAM4D checkpoint: {len(errors)} keys could not be placed:\n  "
                              + "\n  ".join(errors[:20]) + more)
    return out, report
