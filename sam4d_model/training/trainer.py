# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""SAM4D training: simulated interactive prompts over camera+LiDAR clips, single process or DDP (torchrun).

One iteration = one clip of ``clip_len`` frames with up to ``max_objects`` objects:

* conditioning frame 0 (and, with ``prob_second_cond_frame``, one more frame) gets a prompt per object: a click
  (in the image, in LiDAR, or both: cross-modal prompting is trained by giving one modality only), a noisy box,
  or the ground-truth mask;
* on ``num_correction_frames`` prompted frames, ``num_correction_iters`` corrective clicks per object are sampled
  from the error region of the current prediction and the frame is decoded again (as in SAM2's training);
* every frame is decoded with the memory of the previous ones and supervised in both modalities
  (focal + dice masks, L1 IoU, BCE object score: :func:`sam4d_model.losses.sam4d_loss`).

Augmentation: a random yaw rotation of the LiDAR frame (the camera extrinsics and poses are changed with it, so
geometry stays consistent). The clip loss is computed inside :class:`ClipLoss` (an ``nn.Module``) so that
``DistributedDataParallel`` can wrap it. Checkpoints (``last.pt``: weights, optimiser, scheduler, step, RNG
states) are written atomically and the run resumes from them; metrics go to ``metrics.csv``.
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..losses import sam4d_loss
from ..modeling.sam4d import SAM4D, FrameFeatures, ObjectPrompt
from ..types import CameraFrame, Frame, FrameLabels
from . import prompt_sim as ps


@dataclass
class TrainConfig:
    """Training settings (all serialisable; stored in the run directory)."""

    model: str = "sam4d_tiny"
    init: Optional[str] = None  # checkpoint to start from (SAM4D .safetensors/.pt)
    out_dir: str = "runs/sam4d_tiny"
    steps: int = 2000
    lr: float = 5e-4
    weight_decay: float = 0.05
    pct_warmup: float = 0.05
    grad_clip: float = 0.1
    clip_len: int = 4
    #: clip frames ``k`` frames apart, ``k`` drawn in ``1..max_frame_stride`` per clip: a 10 Hz drive then also
    #: trains the 2-5 Hz gaps of labelled keyframes (nuScenes: 2 Hz) and of a CPU node that skips frames
    max_frame_stride: int = 1
    max_objects: int = 3
    min_points: int = 30
    max_points: int = 0  # random subset of each training cloud (0: all points); cuts CPU training cost
    min_pixels: int = 150
    prob_mask_prompt: float = 0.15
    prob_box_prompt: float = 0.25
    prob_image_only: float = 0.4
    prob_lidar_only: float = 0.3
    prob_second_cond_frame: float = 0.2
    num_correction_frames: int = 1
    num_correction_iters: int = 1
    prob_correct: float = 0.5
    lidar_yaw_aug: float = math.pi
    image_encoder: str = "train"  # train | freeze | lora
    trainable: str = ""  # comma-separated parameter-name prefixes: train only these (e.g. a head), freeze the rest
    lora_rank: int = 4
    loss_weights: Dict[str, float] = field(default_factory=lambda: {
        "weight_focal": 20.0, "weight_dice": 1.0, "weight_iou": 1.0, "weight_obj": 1.0,
        "weight_image": 1.0, "weight_lidar": 1.0})
    iou_loss: str = "l1"  # l1 (SAM2) | mse (SAM): loss between the IoU head and the masks' actual IoU
    seed: int = 0
    device: str = "auto"
    amp: str = "bf16"  # on CUDA: bf16 | fp16 | none
    log_every: int = 10
    save_every: int = 100
    #: every this many steps also keep the weights as ``<out_dir>/step_<n>.safetensors`` (0: never), so that
    #: checkpoints along the run can be compared on validation after it.
    snapshot_every: int = 0
    num_threads: int = 0  # torch CPU threads (0: default)


# ------------------------------------------------------------------------------------------------ clip sampling

@dataclass
class ClipPlan:
    """What one training clip looks like: frames, objects, prompts, corrections, augmentation."""

    frames: List[Frame]
    labels: List[FrameLabels]
    obj_ids: List[int]
    cond_frames: List[int]
    prompt_kind: Dict[int, str]  # obj -> 'click' | 'box' | 'mask'
    prompt_modality: Dict[int, str]  # obj -> 'image' | 'lidar' | 'both'
    correction_frames: List[int]


def yaw_augment(frame: Frame, yaw: float) -> Frame:
    """Rotate the LiDAR frame about z by ``yaw`` (points, camera extrinsics and pose change consistently)."""
    c, s = math.cos(yaw), math.sin(yaw)
    aug = np.eye(4)
    aug[:2, :2] = [[c, -s], [s, c]]
    pts = frame.points.astype(np.float32, copy=True)
    pts[:, :3] = pts[:, :3] @ aug[:3, :3].T.astype(np.float32)
    cams = [CameraFrame(cf.name, cf.image, cf.intrinsics, aug @ cf.camera2lidar) for cf in frame.cameras]
    return Frame(pts, cams, frame.lidar2world @ np.linalg.inv(aug), frame.timestamp, frame.index)


def _subsample(frame: Frame, lab: FrameLabels, n: int, rng: np.random.Generator) -> Tuple[Frame, FrameLabels]:
    if frame.points.shape[0] <= n:
        return frame, lab
    keep = np.sort(rng.choice(frame.points.shape[0], size=n, replace=False))
    f = Frame(frame.points[keep], frame.cameras, frame.lidar2world, frame.timestamp, frame.index)
    lab = FrameLabels(lab.point_instance[keep], lab.image_instance,
                      None if lab.point_class is None else lab.point_class[keep], lab.image_class, lab.object_classes)
    return f, lab


def _visible_objects(lab: FrameLabels, cam: Optional[str], cfg: TrainConfig) -> Tuple[List[int], Dict[int, bool]]:
    ids, counts = np.unique(lab.point_instance[lab.point_instance > 0], return_counts=True)
    img = lab.image_instance.get(cam) if cam else None
    out, in_img = [], {}
    pix = dict(zip(*np.unique(img[img > 0], return_counts=True))) if img is not None else {}
    for oid, n in zip(ids.tolist(), counts.tolist()):
        if n >= cfg.min_points:
            out.append(oid)
            in_img[oid] = pix.get(oid, 0) >= cfg.min_pixels
    return out, in_img


def sample_clip(seqs: Sequence, cfg: TrainConfig, rng: np.random.Generator, max_tries: int = 20) -> ClipPlan:
    """Draw a clip and its prompt plan from ``seqs`` (objects with ``.frame(i)``/``.labels(i)``/``len``)."""
    for _ in range(max_tries):
        seq = seqs[int(rng.integers(len(seqs)))]
        stride = int(rng.integers(1, cfg.max_frame_stride + 1)) if cfg.clip_len > 1 and cfg.max_frame_stride > 1 else 1
        stride = max(1, min(stride, (len(seq) - 1) // max(1, cfg.clip_len - 1)))
        span = (cfg.clip_len - 1) * stride + 1
        if len(seq) < span:
            continue
        st = int(rng.integers(len(seq) - span + 1))
        idx = range(st, st + span, stride)
        frames = [seq.frame(i) for i in idx]
        labels = [seq.labels(i) for i in idx]
        cam = frames[0].cameras[0].name if frames[0].cameras else None
        cands, in_img = _visible_objects(labels[0], cam, cfg)
        if not cands:
            continue
        # Prefer objects seen by the camera (the hard, cross-modal case) but keep LiDAR-only ones too.
        weights = np.array([3.0 if in_img[o] else 1.0 for o in cands])
        k = min(cfg.max_objects, len(cands))
        obj_ids = [int(x) for x in rng.choice(cands, size=k, replace=False, p=weights / weights.sum())]
        if cfg.max_points > 0:
            frames, labels = zip(*[_subsample(f, lab, cfg.max_points, rng) for f, lab in zip(frames, labels)])
            frames, labels = list(frames), list(labels)
        if cfg.lidar_yaw_aug > 0:
            yaw = float(rng.uniform(-cfg.lidar_yaw_aug, cfg.lidar_yaw_aug))
            frames = [yaw_augment(f, yaw) for f in frames]
        cond = [0]
        if cfg.clip_len > 1 and rng.random() < cfg.prob_second_cond_frame:
            cond.append(int(rng.integers(1, cfg.clip_len)))
        kinds, mods = {}, {}
        for o in obj_ids:
            r = rng.random()
            kinds[o] = "mask" if r < cfg.prob_mask_prompt else (
                "box" if r < cfg.prob_mask_prompt + cfg.prob_box_prompt else "click")
            if not in_img[o]:
                mods[o] = "lidar"
            else:
                r = rng.random()
                mods[o] = "image" if r < cfg.prob_image_only else (
                    "lidar" if r < cfg.prob_image_only + cfg.prob_lidar_only else "both")
        corr = []
        if rng.random() < cfg.prob_correct:
            corr = sorted(rng.choice(cond, size=min(cfg.num_correction_frames, len(cond)), replace=False).tolist())
        return ClipPlan(frames, labels, obj_ids, sorted(set(cond)), kinds, mods, corr)
    raise RuntimeError("could not sample a clip with objects (are the sequences labelled?)")


# ------------------------------------------------------------------------------------------------ prompts

def object_prompt(model: SAM4D, feats: FrameFeatures, frame: Frame, cam_idx: int = 0,
                  image_points=None, image_labels=None, image_box=None, image_mask=None,
                  lidar_points=None, lidar_labels=None, lidar_box=None, lidar_mask=None) -> ObjectPrompt:
    """Build an :class:`ObjectPrompt` (model coordinates) from original-image pixels and LiDAR-frame points."""
    from ..tracker import StreamingTracker, _PendingPrompt

    p = _PendingPrompt(camera=cam_idx)
    if image_points is not None and len(image_points):
        p.image_points.append(np.asarray(image_points, np.float64).reshape(-1, 2))
        p.image_labels.append(np.asarray(image_labels, np.int64).reshape(-1))
    if image_box is not None:
        p.image_box = np.asarray(image_box, np.float64).reshape(4)
    if image_mask is not None:
        p.image_mask = np.asarray(image_mask, bool)
    if lidar_points is not None and len(lidar_points):
        p.lidar_points.append(np.asarray(lidar_points, np.float64).reshape(-1, 3))
        p.lidar_labels.append(np.asarray(lidar_labels, np.int64).reshape(-1))
    if lidar_box is not None:
        p.lidar_box = np.asarray(lidar_box, np.float64).reshape(2, 3)
    if lidar_mask is not None:
        p.lidar_mask = np.asarray(lidar_mask, bool).reshape(-1)
    helper = StreamingTracker.__new__(StreamingTracker)
    helper.model = model
    return helper._to_object_prompt(p, frame, feats)


class _PromptState:
    """Accumulated prompts of one object on one frame (so corrections add to the first prompt)."""

    def __init__(self):
        self.img_pts: List[np.ndarray] = []
        self.img_lab: List[int] = []
        self.pts_pts: List[np.ndarray] = []
        self.pts_lab: List[int] = []
        self.img_box = self.pts_box = self.img_mask = self.pts_mask = None

    def build(self, model, feats, frame) -> ObjectPrompt:
        return object_prompt(
            model, feats, frame,
            image_points=np.array(self.img_pts) if self.img_pts else None,
            image_labels=np.array(self.img_lab) if self.img_lab else None,
            image_box=self.img_box, image_mask=self.img_mask,
            lidar_points=np.array(self.pts_pts) if self.pts_pts else None,
            lidar_labels=np.array(self.pts_lab) if self.pts_lab else None,
            lidar_box=self.pts_box, lidar_mask=self.pts_mask)


def first_prompt(kind: str, modality: str, frame: Frame, gt_img: Optional[np.ndarray], gt_pts: np.ndarray,
                 rng: np.random.Generator) -> _PromptState:
    """Simulated first prompt of one object on one frame."""
    st = _PromptState()
    use_img = modality in ("image", "both") and gt_img is not None and gt_img.any()
    use_pts = modality in ("lidar", "both") and gt_pts.any()
    if not use_img and not use_pts:
        use_pts = bool(gt_pts.any())
        use_img = not use_pts and gt_img is not None and bool(gt_img.any())
    if kind == "mask":
        st.img_mask = gt_img if use_img else None
        st.pts_mask = gt_pts if use_pts else None
    elif kind == "box":
        st.img_box = ps.image_box(gt_img, rng, noise=0.1) if use_img else None
        st.pts_box = ps.lidar_box(gt_pts, frame.points, rng, noise=0.1) if use_pts else None
    else:
        if use_img:
            st.img_pts.append(ps.image_click(gt_img, rng))
            st.img_lab.append(1)
        if use_pts:
            st.pts_pts.append(ps.lidar_click(gt_pts, frame.points, rng))
            st.pts_lab.append(1)
    return st


# ------------------------------------------------------------------------------------------------ the loss module

def image_targets(gt: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Ground-truth mask (H, W) resized to the decoder's (h, w) grid as soft targets (area fractions)."""
    return cv2.resize(gt.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA)


class ClipLoss(nn.Module):
    """``forward(plan)`` -> dict of loss terms of one clip (``'total'`` included); wraps the model for DDP."""

    def __init__(self, model: SAM4D, cfg: TrainConfig):
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(self, plan: ClipPlan, rng: np.random.Generator) -> Dict[str, torch.Tensor]:
        model, cfg = self.model, self.cfg
        dev = model.device
        memories: List[List] = [[] for _ in plan.obj_ids]
        states: Dict[Tuple[int, int], _PromptState] = {}
        total = None
        logs: Dict[str, float] = {}
        n_terms = 0
        # a LiDAR-only model (use_cameras false) is prompted and supervised in the LiDAR only
        modality = plan.prompt_modality if model.cfg.use_cameras else {o: "lidar" for o in plan.obj_ids}
        for t, (frame, lab) in enumerate(zip(plan.frames, plan.labels)):
            feats = model.encode_frame(frame, frame_idx=t)
            cam = frame.cameras[0].name if frame.cameras else None
            # a LiDAR-only model gets no image targets, so it is never prompted or corrected in the image
            gt_imgs = [(lab.image_instance[cam] == o) if model.cfg.use_cameras and cam in lab.image_instance else None
                       for o in plan.obj_ids]
            gt_pts = [lab.point_instance == o for o in plan.obj_ids]
            img_t = pts_t = None
            if feats.has_image:
                h, w = feats.img_hw
                img_t = torch.from_numpy(np.stack([image_targets(g, (4 * h, 4 * w)) if g is not None
                                                   else np.zeros((4 * h, 4 * w), np.float32) for g in gt_imgs]))
                img_t = img_t[:, None].to(dev)  # (O, 1 camera, 4h, 4w)
            if feats.has_lidar:
                valid = feats.pyr.valid.cpu().numpy()
                pts_t = torch.from_numpy(np.stack([g[valid] for g in gt_pts]).astype(np.float32)).to(dev)
            prompts = [None] * len(plan.obj_ids)
            if t in plan.cond_frames:
                for j, o in enumerate(plan.obj_ids):
                    st = first_prompt(plan.prompt_kind[o], modality[o], frame, gt_imgs[j], gt_pts[j], rng)
                    states[(t, j)] = st
                    prompts[j] = st.build(model, feats, frame)
            rounds = 1 + (cfg.num_correction_iters if t in plan.correction_frames else 0)
            out = None
            for r in range(rounds):
                if r > 0 and out is not None:  # corrective clicks from the last prediction, added to the prompts
                    for j, o in enumerate(plan.obj_ids):
                        st = states[(t, j)]
                        mod = modality[o]
                        if mod in ("image", "both") and out.img_logits is not None and gt_imgs[j] is not None:
                            pred = _image_pred(out.img_logits[j, 0], frame.cameras[0])
                            c = ps.image_correction(pred, gt_imgs[j], rng)
                            if c is not None:
                                st.img_pts.append(c[0])
                                st.img_lab.append(c[1])
                        if mod in ("lidar", "both") and out.pts_logits is not None:
                            pred = np.zeros(len(frame.points), bool)
                            pred[feats.pyr.valid.cpu().numpy()] = (out.pts_logits[j] > 0).cpu().numpy()
                            c = ps.lidar_correction(pred, gt_pts[j], frame.points, rng)
                            if c is not None:
                                st.pts_pts.append(c[0])
                                st.pts_lab.append(c[1])
                        prompts[j] = st.build(model, feats, frame)
                # Memory of the final round only, and none for the clip's last frame (nothing attends to it).
                store = r == rounds - 1 and t < len(plan.frames) - 1
                out = model(feats, memories, prompts, store_memory=store)
                terms = sam4d_loss(out, img_t, pts_t, iou_loss=cfg.iou_loss, **cfg.loss_weights)
                total = terms["total"] if total is None else total + terms["total"]
                n_terms += 1
                for k, v in terms.items():
                    logs[k] = logs.get(k, 0.0) + float(v.detach())
            for j, ent in enumerate(out.new_memory):
                memories[j].append(ent)
        res = {k: torch.tensor(v / n_terms) for k, v in logs.items()}
        res["total"] = total / n_terms
        return res


def _image_pred(logits_4h: torch.Tensor, cam: CameraFrame) -> np.ndarray:
    """Decoder-resolution logits -> boolean mask at the original image size."""
    m = (logits_4h.detach().float().cpu().numpy() > 0).astype(np.uint8)
    return cv2.resize(m, (cam.width, cam.height), interpolation=cv2.INTER_NEAREST).astype(bool)


# ------------------------------------------------------------------------------------------------ the loop

def _dist_info() -> Tuple[int, int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _rng_state(rng: np.random.Generator) -> Dict:
    st = rng.bit_generator.state
    return {"bit_generator": st["bit_generator"], "state": int(st["state"]["state"]),
            "inc": int(st["state"]["inc"]), "has_uint32": int(st["has_uint32"]), "uinteger": int(st["uinteger"])}


def _set_rng_state(rng: np.random.Generator, d: Dict) -> None:
    rng.bit_generator.state = {"bit_generator": d["bit_generator"], "state": {"state": int(d["state"]),
                               "inc": int(d["inc"])}, "has_uint32": int(d["has_uint32"]),
                               "uinteger": int(d["uinteger"])}


def build_model_for_training(cfg: TrainConfig) -> SAM4D:
    """Model from config (or ``init`` checkpoint), with the image-encoder mode applied."""
    from ..checkpoint import load_checkpoint
    from ..config import load_config
    from ..modeling import build_sam4d
    from .lora import add_lora

    torch.manual_seed(cfg.seed)
    if cfg.init:
        model, _ = load_checkpoint(cfg.init, "cpu")
    else:
        model = build_sam4d(load_config(cfg.model))
    if cfg.image_encoder == "freeze":
        for p in model.image_encoder.parameters():
            p.requires_grad_(False)
    elif cfg.image_encoder == "lora":
        add_lora(model.image_encoder, rank=cfg.lora_rank)
    elif cfg.image_encoder != "train":
        raise ValueError(f"image_encoder must be train, freeze or lora, got {cfg.image_encoder!r}")
    prefixes = tuple(p.strip() for p in cfg.trainable.split(",") if p.strip())
    if prefixes:
        names = [n for n, _ in model.named_parameters()]
        unknown = [p for p in prefixes if not any(n.startswith(p) for n in names)]
        if unknown:
            raise ValueError(f"trainable: no parameter starts with {unknown}")
        for n, p in model.named_parameters():
            p.requires_grad_(n.startswith(prefixes))
    return model


def export_weights(cfg: TrainConfig, out_path: Optional[str] = None) -> Path:
    """Write ``<out_dir>/<model>.safetensors`` (or ``out_path``) from the run's ``last.pt`` (LoRA merged)."""
    from ..checkpoint import save_checkpoint
    from .lora import merge_lora

    ckpt = Path(cfg.out_dir) / "last.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"no {ckpt} to export")
    st = torch.load(ckpt, map_location="cpu", weights_only=True)
    model = build_model_for_training(cfg)
    model.load_state_dict(st["model"])
    merge_lora(model)
    path = Path(out_path) if out_path else Path(cfg.out_dir) / f"{cfg.model}.safetensors"
    return save_checkpoint(model.eval(), path, extra_metadata={"train_steps": str(int(st["step"]))})


def train(cfg: TrainConfig, seqs: Sequence, progress: bool = True) -> Path:
    """Train (or resume) in ``cfg.out_dir``; returns the path of the final weights (rank 0)."""
    from ..checkpoint import save_checkpoint
    from ..tools.common import pick_device
    from .lora import merge_lora

    rank, world, local_rank = _dist_info()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    dev = pick_device(cfg.device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    out = Path(cfg.out_dir)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        import yaml

        (out / "train_config.yaml").write_text(yaml.safe_dump(asdict(cfg), sort_keys=False))
    model = build_model_for_training(cfg).to(dev).train()
    if dev.type == "cuda" and cfg.amp in ("bf16", "fp16"):
        model.autocast_dtype = torch.bfloat16 if cfg.amp == "bf16" else torch.float16
    loss_mod: nn.Module = ClipLoss(model, cfg)
    if world > 1:
        loss_mod = nn.parallel.DistributedDataParallel(
            loss_mod, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    rng = np.random.default_rng([cfg.seed, rank])
    step = 0
    ckpt = out / "last.pt"
    st = None
    if ckpt.is_file():
        st = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        step = int(st["step"])
        _set_rng_state(rng, st["rng"][min(rank, len(st["rng"]) - 1)])
        torch.set_rng_state(st["torch_rng"])
    # The one-cycle schedule is a function of (step, steps): resuming with a larger --steps stretches it.
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(cfg.steps, step + 1, 1),
                                                pct_start=cfg.pct_warmup, anneal_strategy="cos",
                                                div_factor=25.0, final_div_factor=100.0,
                                                last_epoch=step - 1 if st is not None and step > 0 else -1)
    if st is not None and rank == 0:
        print(f"resumed from {ckpt} at step {step}", flush=True)
    log_path = out / "metrics.csv"
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="it", dynamic_ncols=True)
    t_last = time.time()
    while step < cfg.steps:
        plan = sample_clip(seqs, cfg, rng)
        terms = loss_mod(plan, rng)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip) if cfg.grad_clip > 0 else torch.tensor(0.)
        opt.step()
        sched.step()
        step += 1
        if rank == 0:
            row = {"step": step, "lr": sched.get_last_lr()[0], "grad_norm": float(gnorm),
                   "sec_per_it": time.time() - t_last, **{k: float(v.detach()) for k, v in terms.items()}}
            t_last = time.time()
            if step % cfg.log_every == 0 or step == 1:
                new = not log_path.exists()
                with open(log_path, "a", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=list(row))
                    if new:
                        w.writeheader()
                    w.writerow(row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{row['total']:.3f}", lr=f"{row['lr']:.1e}")
        if step % cfg.save_every == 0 or step == cfg.steps:
            rngs = [_rng_state(rng)]
            if world > 1:
                gathered = [None] * world
                dist.all_gather_object(gathered, rngs[0])
                rngs = gathered
            if rank == 0:
                _atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                                    "step": step, "rng": rngs,
                                    "torch_rng": torch.get_rng_state()}, ckpt)
        if rank == 0 and cfg.snapshot_every > 0 and step % cfg.snapshot_every == 0:
            snap = build_model_for_training(cfg)
            snap.load_state_dict(model.state_dict())
            merge_lora(snap)
            save_checkpoint(snap.eval(), out / f"step_{step:06d}.safetensors",
                            extra_metadata={"train_steps": str(step)})
    if bar is not None:
        bar.close()
    if world > 1:
        # Replicas must hold identical weights after DDP's gradient averaging; record it (rank 0 writes).
        local = float(sum(p.detach().double().sum() for p in model.parameters()))
        sums = [None] * world
        dist.all_gather_object(sums, local)
        if rank == 0:
            import json

            (out / "ddp_check.json").write_text(json.dumps({"world_size": world, "param_sums": sums}))
    final = out / f"{cfg.model}.safetensors"
    if rank == 0:
        export = model
        if cfg.image_encoder == "lora":
            import copy

            export = copy.deepcopy(model).cpu()
            merge_lora(export)
        save_checkpoint(export.cpu() if export is model else export, final,
                        extra_metadata={"train_steps": str(step), "train_config": str(asdict(replace(cfg)))})
        model.to(dev)
    return final
