# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""IoU-head benchmark: does the predicted IoU pick the best of the multimask outputs?

On held-out synthetic drives, every ``--stride``-th frame, the largest ``--max-objects`` objects each get one click
(image or LiDAR, ``--prompt``) at their centre (frame-level, no memory). For the image and the LiDAR decoder the
script prints, over all objects: the mean actual IoU of each mask output (0 = single-mask token, 1-3 = multimask),
the mean predicted IoU and stability score of each, the IoU of the mask chosen by the head (and, for comparison, by
stability and by IoU x stability), the oracle (best of 1-3) and how often the head's choice is the oracle.

    python benchmarks/iou_head.py [--checkpoint PATH] [--prompt image|lidar] [--seeds 900001,900002] [--frames 16]
"""

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from sam4d_model.data.synth import generate_drive, sample_config
from sam4d_model.eval.metrics import mask_iou
from sam4d_model.eval.protocols import EvalSettings, _select_objects
from sam4d_model.tools.common import load_model
from sam4d_model.tracker import StreamingTracker
from sam4d_model.training import prompt_sim as ps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="weights (default: the embedded model)")
    p.add_argument("--seeds", default="900001,900002")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--max-objects", type=int, default=3)
    p.add_argument("--size", default="640x480", help="WxH of the synthetic camera")
    p.add_argument("--click", default="center", choices=["center", "uniform"], help="where the click falls")
    p.add_argument("--prompt", default="image", choices=["image", "lidar"], help="modality of the click")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0") or 0))
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model, _ = load_model(args.checkpoint, "cpu", None)
    captured = {}
    orig_forward = model.forward

    def forward(*a, **k):
        out = orig_forward(*a, **k)
        captured["out"] = out
        return out

    model.forward = forward
    orig_encode = model.encode_frame

    def encode_frame(*a, **k):
        feats = orig_encode(*a, **k)
        captured["valid"] = feats.pyr.valid.cpu().numpy() if feats.has_lidar else None
        return feats

    model.encode_frame = encode_frame
    s = EvalSettings(protocol="frame", max_objects=args.max_objects)
    width, height = (int(v) for v in args.size.lower().split("x"))
    rng = np.random.default_rng(0)
    rows = {"image": [], "lidar": []}  # per object: (actual IoU[4], predicted IoU[4], stability score[4])
    t0 = time.perf_counter()
    for seed in [int(x) for x in args.seeds.split(",")]:
        for i, (frame, labels) in enumerate(generate_drive(seed, args.frames, config=sample_config(width=width,
                                                                                               height=height))):
            if i % args.stride:
                continue
            cam = frame.cameras[0]
            oids = _select_objects(labels, cam.name, s)
            if not oids:
                continue
            tr = StreamingTracker(model, device="cpu", max_objects=16)
            for oid in oids:
                if args.prompt == "lidar":
                    c = ps.lidar_click(labels.point_instance == oid, frame.points, rng, method=args.click)
                    tr.add_prompt(oid, lidar_points=c[None].astype(np.float32), lidar_labels=np.ones(1, np.int64))
                    continue
                gt_img = labels.image_instance[cam.name] == oid
                tr.add_prompt(oid, image_points=ps.image_click(gt_img, rng, method=args.click)[None].astype(np.float32),
                              image_labels=np.ones(1, np.int64))
            tr.step(frame)
            out = captured["out"]
            for j, oid in enumerate(oids):
                gt_img = labels.image_instance[cam.name] == oid
                hi = F.interpolate(out.img_logits_all[j, 0][None], size=(cam.height, cam.width), mode="bilinear",
                                   align_corners=False)[0]
                act = [mask_iou((hi[k] > 0).numpy(), gt_img) for k in range(hi.shape[0])]
                pred = out.img_iou_all[j, 0].tolist()
                stab = model.mask_decoder.stability(out.img_logits_all[j, 0][None])[0].tolist()
                rows["image"].append((act, pred, stab))
                if out.pts_logits_all is not None:
                    gt_pts = labels.point_instance == oid
                    ignore = labels.point_instance < 0
                    act_p = []
                    for k in range(out.pts_logits_all.shape[1]):
                        m = np.zeros(len(frame.points), bool)
                        m[captured["valid"]] = (out.pts_logits_all[j, k] > 0).numpy()
                        act_p.append(mask_iou(m, gt_pts, ignore))
                    rows["lidar"].append((act_p, out.pts_iou_all[j].tolist(),
                                          model.mask_decoder.stability(out.pts_logits_all[j][None])[0].tolist()))
    dt = time.perf_counter() - t0
    print(f"checkpoint: {args.checkpoint or 'embedded'}; drives {args.seeds}; {dt:.0f} s")
    for mod, rs in rows.items():
        if not rs:
            continue
        act = np.array([r[0] for r in rs])
        pred = np.array([r[1] for r in rs])
        sel = 1 + pred[:, 1:].argmax(1)
        oracle = 1 + act[:, 1:].argmax(1)
        ar = np.arange(len(rs))
        corr = np.corrcoef(act[:, 1:].ravel(), pred[:, 1:].ravel())[0, 1] if len(rs) > 1 else float("nan")
        print(f"{mod:6s} n={len(rs):3d}  actual IoU per output 0/1/2/3: "
              + " / ".join(f"{v:.3f}" for v in act.mean(0))
              + "   predicted: " + " / ".join(f"{v:.3f}" for v in pred.mean(0)))
        stab = np.array([r[2] for r in rs])
        by_stab = 1 + stab[:, 1:].argmax(1)
        by_both = 1 + (stab[:, 1:] * pred[:, 1:]).argmax(1)
        print(f"{'':6s} stability per output: " + " / ".join(f"{v:.3f}" for v in stab.mean(0))
              + f"   selected by stability {act[ar, by_stab].mean():.3f}, by IoU x stability "
              f"{act[ar, by_both].mean():.3f}")
        print(f"{'':6s} selected {act[ar, sel].mean():.3f}   oracle {act[ar, oracle].mean():.3f}   "
              f"selection = oracle {np.mean(sel == oracle):.0%}   corr(pred, actual) {corr:.2f}")


if __name__ == "__main__":
    main()
