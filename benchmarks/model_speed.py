# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Per-stage SAM4D timings and FPS, plus the ``sam2`` package's own video tracking step as a baseline.

    python benchmarks/model_speed.py --quick          # CPU, sam4d_tiny, < 2 min
    python benchmarks/model_speed.py                  # + sam4d_small at 768 px / 150k points on a GPU

Stages: image encoder, LiDAR encoder, UMPE, memory attention, decoder, memory encoder (seconds per frame,
median over the timed frames after warm-up). The baseline runs SAM2's memory-attention + decoder tracking
step (``SAM2Base.track_step``) with the same image size and number of objects, giving the ratio
SAM4D / SAM2 per frame.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from sam4d_model.config import load_config
from sam4d_model.modeling import build_sam4d, count_parameters
from sam4d_model.tracker import StreamingTracker
from sam4d_model.types import CameraFrame, Frame

STAGES = ["image_encoder", "lidar_encoder", "umpe", "memory_attention", "decoder", "memory_encoder", "total"]


def synthetic_frame(n_points: int, hw, seed: int, index: int) -> Frame:
    rng = np.random.default_rng(seed)
    ang = rng.uniform(-np.pi, np.pi, n_points)
    r = rng.uniform(2, 60, n_points)
    z = np.where(rng.random(n_points) < 0.6, rng.uniform(-1.75, -1.65, n_points), rng.uniform(-1.6, 2.0, n_points))
    pts = np.stack([r * np.cos(ang), r * np.sin(ang), z, rng.uniform(0, 1, n_points)], 1).astype(np.float32)
    h, w = hw
    k = np.array([[0.6 * w, 0, w / 2], [0, 0.6 * w, h / 2], [0, 0, 1]])
    c2l = np.array([[0, 0, 1, 0.3], [-1, 0, 0, 0], [0, -1, 0, -0.2], [0, 0, 0, 1]], float)
    pose = np.eye(4)
    pose[0, 3] = 0.5 * index
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return Frame(points=pts, cameras=[CameraFrame("cam", img, k, c2l)], lidar2world=pose, index=index)


def bench_sam4d(cfg_name: str, device: str, n_points: int, objects: int, frames: int, warmup: int,
                precision=None):
    cfg = load_config(cfg_name)
    model = build_sam4d(cfg)
    tr = StreamingTracker(model, device=device, max_objects=max(objects, 1), precision=precision)
    s = cfg.image.image_size
    hw = (s, s)
    data = [synthetic_frame(n_points, hw, seed=i, index=i) for i in range(3)]
    for o in range(objects):
        tr.add_prompt(o + 1, image_points=[[20 + 30 * o, s // 2]], lidar_points=[[8.0 + 2 * o, 0.0, -1.0]])
    per = {k: [] for k in STAGES}
    for t in range(warmup + frames):
        f = data[t % len(data)]
        f.index = t
        res = tr.step(f)
        if t >= warmup:
            for k in STAGES:
                per[k].append(res.timings.get(k, 0.0))
    med = {k: statistics.median(v) for k, v in per.items()}
    return med, count_parameters(model)


def bench_sam2(image_size: int, device: str, objects: int, frames: int, warmup: int):
    """SAM2 (Hiera-T config, random weights) image encoder + tracking step per frame, same image size."""
    from sam2.build_sam import build_sam2

    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device=device, mode="eval")
    model.image_size = image_size
    model.sam_prompt_encoder.input_image_size = (image_size, image_size)
    g = image_size // 16
    model.sam_prompt_encoder.image_embedding_size = (g, g)
    model.sam_image_embedding_size = g
    for m in model.modules():  # rope caches sized for 1024 px
        if hasattr(m, "freqs_cis") and hasattr(m, "compute_cis"):
            m.freqs_cis = m.compute_cis(end_x=g, end_y=g).to(device)
    img = torch.randn(1, 3, image_size, image_size, device=device)
    out_dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    times = []
    with torch.inference_mode():
        for t in range(warmup + frames):
            t0 = time.perf_counter()
            bb = model.forward_image(img)
            _, vis_feats, vis_pos, sizes = model._prepare_backbone_features(bb)
            vis_feats = [x.expand(-1, objects, -1) for x in vis_feats]
            vis_pos = [x.expand(-1, objects, -1) for x in vis_pos]
            pts = None
            if t == 0:
                pts = {"point_coords": torch.full((objects, 1, 2), image_size / 2.0, device=device),
                       "point_labels": torch.ones(objects, 1, dtype=torch.int32, device=device)}
            cur = model.track_step(frame_idx=t, is_init_cond_frame=(t == 0), current_vision_feats=vis_feats,
                                   current_vision_pos_embeds=vis_pos, feat_sizes=sizes, point_inputs=pts,
                                   mask_inputs=None, output_dict=out_dict, num_frames=10 ** 6,
                                   run_mem_encoder=True)
            key = "cond_frame_outputs" if t == 0 else "non_cond_frame_outputs"
            out_dict[key][t] = cur
            out_dict["non_cond_frame_outputs"] = {k: v for k, v in out_dict["non_cond_frame_outputs"].items()
                                                  if k > t - 7}
            if device == "cuda":
                torch.cuda.synchronize()
            if t >= warmup:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CPU tiny model only, few frames (< 2 min)")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--objects", type=int, nargs="*", default=None)
    ap.add_argument("--no-sam2", action="store_true", help="skip the SAM2 baseline")
    args = ap.parse_args()
    torch.manual_seed(0)
    runs = []
    frames = args.frames or (3 if args.quick else 20)
    warmup = 1 if args.quick else 5
    objs = args.objects or ([1] if args.quick else [1, 4, 8])
    runs += [("sam4d_tiny", "cpu", 20_000, o) for o in objs]
    if torch.cuda.is_available() and not args.quick:
        runs += [("sam4d_small", "cuda", 150_000, o) for o in objs]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}")
    hdr = f"{'config':12s} {'dev':4s} {'pts':>7s} {'obj':>3s} " + " ".join(f"{k[:12]:>12s}" for k in STAGES)
    print(hdr + f" {'fps':>6s} {'sam2 s':>8s} {'ratio':>6s}")
    for cfg_name, dev, npts, o in runs:
        med, nparam = bench_sam4d(cfg_name, dev, npts, o, frames, warmup)
        base = ""
        if not args.no_sam2:
            try:
                s2 = bench_sam2(load_config(cfg_name).image.image_size, dev, o, frames, warmup)
                base = f" {s2:8.3f} {med['total'] / s2:6.2f}"
            except Exception as exc:  # baseline is informative only
                base = f"  sam2 baseline failed: {exc!r}"[:80]
        print(f"{cfg_name:12s} {dev:4s} {npts:7d} {o:3d} " + " ".join(f"{med[k]:12.4f}" for k in STAGES)
              + f" {1.0 / max(med['total'], 1e-9):6.2f}" + base + f"  ({nparam / 1e6:.1f} M params)")


if __name__ == "__main__":
    main()
