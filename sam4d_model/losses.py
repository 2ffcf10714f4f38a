# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""SAM4D training losses: focal + dice on masks (both modalities), L1 (or MSE) on predicted IoU, BCE on object score.

As in SAM2, with multimask outputs only the mask with the lowest focal+dice loss is back-propagated (the IoU
head is supervised on all), mask losses count only for objects present in the target, and the object-score
BCE uses "target has any foreground".
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F

from .modeling.sam4d import StepOutput


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Mean focal loss over the last dimension: (..., P) -> (...)."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Dice loss over the last dimension: (..., P) -> (...)."""
    prob = logits.sigmoid()
    num = 2 * (prob * targets).sum(-1)
    den = prob.sum(-1) + targets.sum(-1)
    return 1 - (num + eps) / (den + eps)


def actual_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of the binarised prediction with the target over the last dimension."""
    pred = logits > 0
    tgt = targets > 0.5
    inter = (pred & tgt).sum(-1).float()
    union = (pred | tgt).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def _modality_loss(all_logits: torch.Tensor, all_iou: torch.Tensor, obj_logits: torch.Tensor,
                   target: torch.Tensor, multimask: torch.Tensor, w: Dict[str, float]) -> Dict[str, torch.Tensor]:
    # all_logits (B, K, P), all_iou (B, K), obj_logits (B,), target (B, P) in {0, 1}
    tgt = target.float().unsqueeze(1).expand_as(all_logits)
    focal = sigmoid_focal_loss(all_logits, tgt, w["focal_alpha"], w["focal_gamma"])
    dice = dice_loss(all_logits, tgt)
    err = all_iou - actual_iou(all_logits, tgt)
    iou_err = err.pow(2) if w.get("iou_loss", "l1") == "mse" else err.abs()
    combo = w["focal"] * focal + w["dice"] * dice
    multi = combo[:, 1:].argmin(-1) + 1
    idx = torch.where(multimask, multi, torch.zeros_like(multi))
    ar = torch.arange(all_logits.shape[0], device=all_logits.device)
    present = (target.flatten(1).sum(-1) > 0).float()
    k_iou = torch.where(multimask.unsqueeze(-1), iou_err[:, 1:], iou_err[:, :1]).mean(-1)
    denom = present.sum().clamp(min=1)
    out = {
        "focal": (focal[ar, idx] * present).sum() / denom,
        "dice": (dice[ar, idx] * present).sum() / denom,
        "iou": (k_iou * present).sum() / denom,
        "obj": F.binary_cross_entropy_with_logits(obj_logits, present, reduction="mean"),
    }
    return out


def sam4d_loss(out: StepOutput, image_targets: Optional[torch.Tensor] = None,
               point_targets: Optional[torch.Tensor] = None, weight_focal: float = 20.0, weight_dice: float = 1.0,
               weight_iou: float = 1.0, weight_obj: float = 1.0, weight_image: float = 1.0,
               weight_lidar: float = 1.0, focal_alpha: float = 0.25, focal_gamma: float = 2.0,
               iou_loss: str = "l1") -> Dict[str, torch.Tensor]:
    """Full loss of one step.

    ``image_targets``: (O, C, 4h, 4w) binary masks at the decoder resolution; ``point_targets``: (O, M) binary
    masks over the kept points. ``iou_loss``: ``'l1'`` (SAM2) or ``'mse'`` (SAM) between predicted and actual
    IoU; L1 regresses to the median actual IoU, which stays at 0 while most masks are still bad, so the head then
    cannot rank the multimask outputs. Returns a dict of the weighted terms and ``'total'``.
    """
    if iou_loss not in ("l1", "mse"):
        raise ValueError(f"iou_loss must be 'l1' or 'mse', got {iou_loss!r}")
    w = {"focal": weight_focal, "dice": weight_dice, "focal_alpha": focal_alpha, "focal_gamma": focal_gamma,
         "iou_loss": iou_loss}
    terms: Dict[str, torch.Tensor] = {}
    total = None
    mm = out.multimask
    if image_targets is not None and out.img_logits_all is not None:
        o, c, k, h, wd = out.img_logits_all.shape
        lo = out.img_logits_all.permute(0, 1, 2, 3, 4).reshape(o * c, k, h * wd)
        r = _modality_loss(lo, out.img_iou_all.reshape(o * c, k), out.img_obj.reshape(o * c),
                           image_targets.reshape(o * c, h * wd), mm.repeat_interleave(c), w)
        for key, val in r.items():
            terms[f"img_{key}"] = val
        t = weight_image * (weight_focal * r["focal"] + weight_dice * r["dice"] + weight_iou * r["iou"]
                            + weight_obj * r["obj"])
        total = t
    if point_targets is not None and out.pts_logits_all is not None:
        r = _modality_loss(out.pts_logits_all, out.pts_iou_all, out.pts_obj, point_targets, mm, w)
        for key, val in r.items():
            terms[f"pts_{key}"] = val
        t = weight_lidar * (weight_focal * r["focal"] + weight_dice * r["dice"] + weight_iou * r["iou"]
                            + weight_obj * r["obj"])
        total = t if total is None else total + t
    if total is None:
        raise ValueError("no target for any modality present in the outputs")
    terms["total"] = total
    return terms


def umpe_alignment_loss(umpe, xyz: torch.Tensor, uv: torch.Tensor, img_aug: torch.Tensor, intrinsics: torch.Tensor,
                        camera2lidar: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Auxiliary InfoNCE loss aligning the UMPE 3D term of LiDAR points with that of the pixels they project to.

    ``xyz`` (B, 3) LiDAR points, ``uv`` (B, 2) their model-input pixels (through the same calibration). Each
    point's encoding must be nearest (negative squared L2 / temperature) to its own pixel ray's encoding
    among the batch. Useful to pre-align the UMPE (and a unit test of its geometry).
    """
    e_pt = umpe.encode_3d_xyz(xyz)
    e_ray = umpe.encode_3d_rays(umpe.ray_points(uv, img_aug, intrinsics, camera2lidar))
    logits = -torch.cdist(e_pt, e_ray).pow(2) / temperature
    target = torch.arange(xyz.shape[0], device=xyz.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
