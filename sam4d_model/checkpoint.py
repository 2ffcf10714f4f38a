# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Checkpoints: safetensors weights with the model config stored in the file metadata (and beside it).

* ``save_checkpoint(model, path)`` writes ``path`` (``.safetensors``; the config as JSON in the metadata key
  ``sam4d_config``) and ``path + '.yaml'`` with the same config. A ``.pt``/``.pth`` path writes
  ``{'config': dict, 'model': state_dict}`` with ``torch.save`` instead.
* ``load_checkpoint(path, device)`` -> ``(model, cfg)``; mismatching keys or shapes raise
  :class:`CheckpointError` listing them. The authors' released ``.pth`` (``{"model": state_dict}``) is
  recognised by its keys and converted in memory into ``sam4d_small`` (:mod:`sam4d_model.official`).
* ``load_sam2_weights(model, path)`` initialises the image branch (Hiera, FPN neck, and every other SAM2
  module whose name and shape match: mask decoder, image prompt encoder, memory attention, memory encoder)
  from an official SAM2 checkpoint (``{'model': state_dict}`` as released by Meta).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save_file

from .config import SAM4DConfig, config_from_dict, load_config
from .modeling import SAM4D, build_sam4d

PathLike = Union[str, Path]


class CheckpointError(RuntimeError):
    """Raised when a checkpoint does not match the model (missing/unexpected keys, shape mismatches)."""


def save_checkpoint(model: SAM4D, path: PathLike, extra_metadata: Optional[Dict[str, str]] = None) -> Path:
    """Save weights and config; returns the weights path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg.to_dict()
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if path.suffix in (".pt", ".pth"):
        torch.save({"config": cfg, "model": sd}, path)
    else:
        meta = {"sam4d_config": json.dumps(cfg), "format": "sam4d"}
        meta.update(extra_metadata or {})
        save_file(sd, str(path), metadata=meta)
    with open(str(path) + ".yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    return path


def _read(path: Path) -> Tuple[Dict[str, torch.Tensor], Optional[dict]]:
    if path.suffix in (".pt", ".pth"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a pickle that needs more than tensors and containers, or a damaged file
            raise CheckpointError(f"{path}: cannot be read as a weights-only checkpoint: {exc}") from exc
        if not isinstance(obj, dict) or "model" not in obj:
            raise CheckpointError(f"{path}: expected a dict with 'model' (and 'config')")
        return obj["model"], obj.get("config")
    sd: Dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        for k in f.keys():
            sd[k] = f.get_tensor(k)
    cfg = json.loads(meta["sam4d_config"]) if "sam4d_config" in meta else None
    return sd, cfg


def check_state_dict(model: torch.nn.Module, sd: Dict[str, torch.Tensor]) -> None:
    """Raise :class:`CheckpointError` if ``sd`` does not match ``model`` exactly (keys and shapes)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    mismatched = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in sorted(set(own) & set(sd)) if tuple(own[k].shape) != tuple(sd[k].shape)]
    if missing or unexpected or mismatched:
        def fmt(name: str, items: List[str]) -> str:
            if not items:
                return ""
            more = f" ... (+{len(items) - 10} more)" if len(items) > 10 else ""
            return f"\n  {name} ({len(items)}): " + ", ".join(items[:10]) + more
        raise CheckpointError("checkpoint does not match the model:" + fmt("missing keys", missing)
                              + fmt("unexpected keys", unexpected) + fmt("shape mismatches", mismatched))


#: Options added after checkpoints had been written, with the behaviour those checkpoints were trained with:
#: a stored config without the key means that value (new configs store every key).
_LEGACY_DEFAULTS = {("umpe", "mlp_layernorm"): False, ("lidar", "token_norm"): False,
                    ("decoder", "point_interp"): "nearest", ("image", "token_norm"): False}


def _with_legacy_defaults(cfg: dict) -> dict:
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in cfg.items()}
    for (section, key), value in _LEGACY_DEFAULTS.items():
        cfg.setdefault(section, {}).setdefault(key, value)
    return cfg


def load_checkpoint(path: PathLike, device: Union[str, torch.device] = "cpu",
                    config: Optional[Union[str, SAM4DConfig, dict]] = None) -> Tuple[SAM4D, SAM4DConfig]:
    """Load a checkpoint written by :func:`save_checkpoint`; returns ``(model in eval mode, cfg)``.

    The config comes from ``config`` if given, else from the file metadata, else from ``path + '.yaml'``; an
    official SAM4D checkpoint is converted into ``config`` (default ``sam4d_small``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    sd, cfg_dict = _read(path)
    from .official import convert_official_state_dict, is_official_state_dict

    if is_official_state_dict(sd):
        cfg = load_config(config if config is not None else "sam4d_small")
        model = build_sam4d(cfg)
        sd, _ = convert_official_state_dict(sd, model.state_dict(), cfg.umpe.fourier_coord_scale)
        check_state_dict(model, sd)
        model.load_state_dict(sd, strict=True)
        return model.to(device).eval(), cfg
    side = Path(str(path) + ".yaml")
    if config is None and cfg_dict is None and side.is_file():
        with open(side, encoding="utf-8") as f:
            cfg_dict = yaml.safe_load(f)
    if config is not None:
        cfg = load_config(config)
    elif cfg_dict is not None:
        cfg = config_from_dict(_with_legacy_defaults(cfg_dict))
    else:
        raise CheckpointError(f"{path}: no config in the file and no {path}.yaml beside it; pass config=")
    model = build_sam4d(cfg)
    check_state_dict(model, sd)
    model.load_state_dict(sd, strict=True)
    return model.to(device).eval(), cfg


_SAM2_PREFIX_MAP = [
    ("image_encoder.trunk.", "image_encoder.encoder.trunk."),
    ("image_encoder.neck.", "image_encoder.encoder.neck."),
    ("sam_mask_decoder.", "mask_decoder."),
    ("sam_prompt_encoder.point_embeddings.", "image_prompt_encoder.point_embeddings."),
    ("sam_prompt_encoder.not_a_point_embed.", "image_prompt_encoder.not_a_point_embed."),
    ("sam_prompt_encoder.no_mask_embed.", "image_prompt_encoder.no_mask_embed."),
    ("sam_prompt_encoder.mask_downscaling.", "image_prompt_encoder.mask_downscaling."),
    ("memory_attention.", "memory_attention."),
    ("memory_encoder.", "image_memory_encoder."),
    ("obj_ptr_proj.", "obj_ptr_proj."),
    ("no_obj_ptr", "no_obj_ptr"),
    ("no_mem_embed", "no_mem_embed"),
    ("no_mem_pos_enc", "no_mem_pos_enc"),
]


def load_sam2_weights(model: SAM4D, path: PathLike, require_image_encoder: bool = True) -> Dict[str, List[str]]:
    """Initialise matching parts of ``model`` from an official SAM2 checkpoint (``{'model': state_dict}``).

    Returns ``{'loaded': [...], 'shape_mismatch': [...], 'unused': [...]}`` (SAM4D names for the first two,
    SAM2 names for the last). With ``require_image_encoder`` every Hiera/FPN parameter must be loaded,
    otherwise :class:`CheckpointError` is raised (e.g. a Hiera-B+ checkpoint for a Hiera-S config).
    """
    obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    sd = obj["model"] if isinstance(obj, dict) and "model" in obj else obj
    own = model.state_dict()
    new: Dict[str, torch.Tensor] = {}
    report: Dict[str, List[str]] = {"loaded": [], "shape_mismatch": [], "unused": []}
    for k, v in sd.items():
        tgt = None
        for src, dst in _SAM2_PREFIX_MAP:
            if k.startswith(src):
                tgt = dst + k[len(src):]
                break
        if tgt is None or tgt not in own:
            report["unused"].append(k)
            continue
        if tuple(own[tgt].shape) != tuple(v.shape):
            report["shape_mismatch"].append(f"{tgt}: sam2 {tuple(v.shape)} vs model {tuple(own[tgt].shape)}")
            continue
        new[tgt] = v
        report["loaded"].append(tgt)
    if require_image_encoder:
        need = [k for k in own if k.startswith("image_encoder.encoder.")]
        lacking = [k for k in need if k not in new]
        if lacking:
            raise CheckpointError(f"SAM2 checkpoint does not match the image encoder: {len(lacking)} of "
                                  f"{len(need)} parameters not loadable, e.g. {lacking[:5]}; shape mismatches: "
                                  f"{report['shape_mismatch'][:5]}")
    model.load_state_dict(new, strict=False)
    return report
