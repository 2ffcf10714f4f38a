# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""``sam4d-eval``: the paper's protocols on synthetic drives or a Waymo-4DSeg dataset; table, JSON, overlays."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Dict, List

import numpy as np


def _sequences(args):
    """(name, list of (Frame, FrameLabels)) for each evaluated sequence."""
    if args.layout:
        from ..data.waymo4dseg import list_sequences, read_sequence

        names = args.seqs.split(",") if args.seqs else list_sequences(args.layout)
        for name in names:
            seq = read_sequence(args.layout, name)
            n = len(seq) if args.frames <= 0 else min(len(seq), args.frames)
            yield name, [(seq.frame(i), seq.labels(i)) for i in range(n)]
    else:
        from ..data.synth import SynthDrive, random_config

        step = max(1, args.synth_frame_step)
        for seed in [int(s) for s in args.synth_seeds.split(",")]:
            drive = SynthDrive(seed, args.frames * step, random_config(seed) if args.synth_random else None)
            frames = [drive.render(i * step) for i in range(args.frames)]
            yield f"synth_{seed}", [(sf.frame, sf.labels) for sf in frames]


FLOOR_ROWS = [dict(method="geometric", protocol="frame", prompt="1click", prompt_modality="lidar"),
              dict(method="geometric", protocol="stream", prompt="1click", prompt_modality="lidar"),
              dict(method="geometric", protocol="frame", prompt="1click", prompt_modality="image")]


def _suite(name: str, clip_len: int, max_objects: int, floor: bool = True):
    """The settings of a suite, each table ending with the classical floor (``geometric`` rows) unless
    ``floor`` is false.
    """
    from ..eval.protocols import PAPER_SUITE, EvalSettings

    if name == "paper":
        suite = list(PAPER_SUITE)
    elif name == "quick":
        suite = [EvalSettings(protocol="stream", prompt="1click"),
                 EvalSettings(protocol="frame", prompt="1click"),
                 EvalSettings(protocol="stream", prompt="1click", prompt_modality="both", use_ego_motion=False),
                 EvalSettings(protocol="stream", prompt="1click", prompt_modality="both"),
                 EvalSettings(protocol="baseline", prompt="1click")]
    elif name == "real":  # one click per object, as a prompts file gives it
        suite = [EvalSettings(protocol="frame", prompt="1click", prompt_modality="lidar"),
                 EvalSettings(protocol="stream", prompt="1click", prompt_modality="lidar"),
                 EvalSettings(protocol="stream", prompt="1click", prompt_modality="lidar", use_ego_motion=False),
                 EvalSettings(protocol="frame", prompt="1click", prompt_modality="image"),
                 EvalSettings(protocol="stream", prompt="1click", prompt_modality="image")]
    elif name == "floor":
        suite = []
    elif name == "lidar":  # the floor's rows (LiDAR click: frame, stream; image click: frame) for the model
        suite = [EvalSettings(**dict(r, method="model")) for r in FLOOR_ROWS]
    else:
        raise SystemExit(f"unknown suite {name!r} (paper, quick, real, lidar, floor)")
    if floor or name == "floor":
        suite += [EvalSettings(**r) for r in FLOOR_ROWS]
    return [replace(s, clip_len=clip_len, max_objects=max_objects) for s in suite]


def format_table(rows: List[Dict]) -> str:
    """A plain-text table: headline mIoUs over present frames, false-positive rates over absent frames."""
    head = (f"{'setting':50s} {'img mIoU':>9s} {'img FP':>7s} {'J&F':>6s} {'LiDAR mIoU':>11s} {'LiDAR FP':>9s} "
            f"{'n img':>6s} {'n LiDAR':>8s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        def f(x):
            return "   -" if x is None or not np.isfinite(x) else f"{x:.3f}"
        lines.append(f"{r['setting']:50s} {f(r['image_mIoU']):>9s} {f(r['image_fp']):>7s} {f(r['J&F']):>6s} "
                     f"{f(r['lidar_mIoU']):>11s} {f(r['lidar_fp']):>9s} {r['n_image']:6d} {r['n_lidar']:8d}")
    lines.append("mIoU: frames where the object is present in that modality; FP: share of frames where it is absent "
                 "with a non-empty prediction; J&F: DAVIS, all frames.")
    return "\n".join(lines)


def parse_prior(items: List[str]):
    """``GeometricParams`` with ``NAME=VALUE`` overrides (values typed like the field's default)."""
    from dataclasses import fields

    from ..geometric import GeometricParams

    kinds = {f.name: type(f.default) for f in fields(GeometricParams)}
    kw = {}
    for it in items:
        name, _, value = it.partition("=")
        if name not in kinds or not value:
            raise SystemExit(f"--prior {it!r}: expected NAME=VALUE with NAME one of {sorted(kinds)}")
        kw[name] = value.lower() in ("1", "true", "yes") if kinds[name] is bool else kinds[name](value)
    try:
        return GeometricParams(**kw)
    except ValueError as e:
        raise SystemExit(f"--prior: {e}") from e


def run(args) -> Dict:
    """Evaluate; returns the result dict also written as JSON."""
    from tqdm import tqdm

    from ..eval.metrics import MeanMeter
    from ..eval.overlay import bev, overlay, save_png
    from ..eval.protocols import evaluate_sequence, load_prompts_file, summarize
    from ..geometric import GeometricParams, GeometricTracker
    from ..tracker import StreamingTracker
    from .common import load_model

    suite = _suite(args.suite, args.clip_len, args.max_objects, floor=not args.no_floor)
    floor_params = GeometricParams()
    prior_params = parse_prior(args.prior)
    model, cfg = (None, None)
    if any(s.method == "model" for s in suite):
        model, cfg = load_model(args.checkpoint, args.device, args.config)

    def make_tracker_for(s):
        if s.method == "geometric":
            return lambda ego: GeometricTracker(floor_params, use_ego_motion=ego, max_objects=64)
        return lambda ego: StreamingTracker(model, device=model.device, max_objects=64, use_ego_motion=ego,
                                            lidar_refine=args.lidar_refine, image_from_lidar=args.image_from_lidar,
                                            geometric_params=prior_params)

    prompts = None
    if args.prompts:
        if not args.layout:
            raise SystemExit("--prompts needs --layout (the clicks name frames of a real sequence)")
        prompts = load_prompts_file(args.prompts)
    seqs = list(_sequences(args))
    if prompts is not None and len(seqs) != 1:
        raise SystemExit(f"--prompts holds the clicks of one sequence; --layout has {len(seqs)} (use --seqs)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    t0 = time.time()
    for s in tqdm(suite, desc="protocols", unit="setting", dynamic_ncols=True):
        meter = MeanMeter()
        for name, seq in seqs:
            shots = []

            def on_frame(i, frame, labels, res, _shots=shots, _name=name):
                if len(_shots) < args.overlays and i % max(1, s.clip_len // 2) == 0 and res.obj_ids:
                    _shots.append((i, frame, labels, res))

            evaluate_sequence(seq, make_tracker_for(s), s, meter, seed=args.seed, on_frame=on_frame,
                              prompts=prompts)
            for i, frame, labels, res in shots:
                tag = s.name.replace("/", "_").replace("->", "-")
                ids = np.zeros(len(frame.points), np.int32)
                for j, oid in enumerate(res.obj_ids):
                    if res.point_masks.size:
                        ids[res.point_masks[j]] = oid
                if frame.cameras:
                    c = frame.cameras[0]
                    idmap = np.zeros(c.image.shape[:2], np.int32)
                    for j, oid in enumerate(res.obj_ids):
                        if res.image_masks:
                            idmap[res.image_masks[0][j]] = oid
                    save_png(out / "overlays" / f"{name}_{tag}_f{i:03d}_image.png",
                             overlay(c.image, idmap, frame.points, ids, c.intrinsics, c.camera2lidar))
                gt = np.where(np.isin(labels.point_instance, res.obj_ids), labels.point_instance, 0)
                save_png(out / "overlays" / f"{name}_{tag}_f{i:03d}_bev.png", bev(frame.points, ids, gt_ids=gt))
        row = {"setting": s.name, **summarize(meter), "config": asdict(s)}
        rows.append(row)
        tqdm.write(f"{s.name}: image mIoU {row['image_mIoU']:.3f}  LiDAR mIoU {row['lidar_mIoU']:.3f} "
                   f"(present frames)")
    result = {"checkpoint": args.checkpoint or "embedded", "model": cfg.name if cfg else None,
              "sequences": [n for n, _ in seqs], "prompts": args.prompts, "frames_per_sequence": args.frames,
              "lidar_refine": args.lidar_refine, "image_from_lidar": args.image_from_lidar,
              "prior": asdict(prior_params),
              "floor": {"method": "geometric", **asdict(floor_params), "describe": floor_params.describe()},
              "results": rows, "seconds": time.time() - t0}
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, default=float))
    os.replace(tmp, out / "results.json")
    print(format_table(rows))
    print(f"geometric floor: {floor_params.describe()}")
    print(f"wrote {out / 'results.json'} and overlays in {out / 'overlays'}")
    return result


# Clicks on frame 0 of KITTI raw 2011_09_26_drive_0009 (image_02, 1242x375): (name, x, y) pixels.
KITTI_CLICKS = [("car_right", 1000, 270), ("car_parked", 775, 222), ("car_left", 425, 217),
                ("building_wall", 120, 200), ("pole", 830, 100), ("tree_trunk", 378, 185)]


def run_kitti(args) -> Dict:
    """Qualitative run on an unlabelled KITTI drive: image clicks on frame 0, tracked; overlays per object."""
    from ..data.kitti import KittiRawDrive
    from ..eval.overlay import bev, overlay, save_png
    from ..tracker import StreamingTracker
    from .common import load_model

    model, cfg = load_model(args.checkpoint, args.device, args.config)
    drive = KittiRawDrive(args.kitti)
    n = len(drive) if args.frames <= 0 else min(len(drive), args.frames)
    out = Path(args.out)
    tr = StreamingTracker(model, device=model.device)
    for k, (name, x, y) in enumerate(KITTI_CLICKS, start=1):
        tr.add_prompt(k, image_points=np.array([[x, y]], np.float32), image_labels=np.array([1]))
    summary = {"drive": str(args.kitti), "clicks": KITTI_CLICKS, "frames": []}
    for i in range(n):
        frame = drive.frame(i)
        res = tr.step(frame)
        c = frame.cameras[0]
        idmap = np.zeros(c.image.shape[:2], np.int32)
        ids = np.zeros(len(frame.points), np.int32)
        row = {"frame": i}
        for j, oid in enumerate(res.obj_ids):
            idmap[res.image_masks[0][j]] = oid
            ids[res.point_masks[j]] = oid
            row[KITTI_CLICKS[oid - 1][0]] = {"pixels": int(res.image_masks[0][j].sum()),
                                             "points": int(res.point_masks[j].sum()),
                                             "score": float(res.object_scores[j])}
        summary["frames"].append(row)
        if i in (0, n // 2, n - 1):
            img = overlay(c.image, idmap, frame.points, ids, c.intrinsics, c.camera2lidar)
            if i == 0:
                import cv2

                for name, x, y in KITTI_CLICKS:
                    cv2.drawMarker(img, (x, y), (255, 255, 255), cv2.MARKER_CROSS, 14, 2)
                    cv2.putText(img, name, (x + 6, y - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
            save_png(out / f"kitti_f{i:03d}_image.png", img)
            save_png(out / f"kitti_f{i:03d}_bev.png", bev(frame.points, ids))
    (out / "kitti_summary.json").write_text(json.dumps(summary, indent=2))
    for name in [c[0] for c in KITTI_CLICKS]:
        pts = [r[name]["points"] for r in summary["frames"] if name in r]
        print(f"{name:14s} points/frame: first {pts[0] if pts else 0:6d}  last {pts[-1] if pts else 0:6d}")
    print(f"wrote overlays and kitti_summary.json in {out}")
    return summary


def main(argv=None) -> int:
    """Entry point of ``sam4d-eval``."""
    p = argparse.ArgumentParser(prog="sam4d-eval", description=__doc__)
    p.add_argument("--checkpoint", default=None, help="weights (.safetensors/.pt); default: the embedded model; "
                   "'random' for an untrained model")
    p.add_argument("--config", default="sam4d_tiny", help="config for --checkpoint random")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--layout", default=None, help="Waymo-4DSeg root (meta_infos/, pcds/, ...); default: synthetic")
    p.add_argument("--seqs", default=None, help="comma-separated sequence names in --layout (default: all)")
    p.add_argument("--synth-seeds", default="900001,900002", help="seeds of held-out synthetic test drives")
    p.add_argument("--synth-random", action="store_true", help="synthetic drives with randomised sensor rigs "
                   "(data.synth.random_config, as sam4d-train --synth-random)")
    p.add_argument("--synth-frame-step", type=int, default=1, help="evaluate every N-th frame of the 10 Hz "
                   "synthetic drives: 5 gives 2 Hz, the rate of labelled keyframes (nuScenes) and about what a CPU "
                   "node that skips frames processes")
    p.add_argument("--frames", type=int, default=24, help="frames per sequence (<= 0: all)")
    p.add_argument("--clip-len", type=int, default=8)
    p.add_argument("--max-objects", type=int, default=3, help="objects per clip (with --prompts: the first N "
                   "prompts of the file; <= 0: all)")
    p.add_argument("--suite", default="paper", help="paper | quick | real (1 click per object: for --prompts) | "
                   "lidar (the floor's rows for the model) | floor (only the geometric rows)")
    p.add_argument("--prompts", default=None, help="prompts file (prompts_<seq>.json: object_id, frame_idx, "
                   "lidar_xyz, image_uv) instead of simulated clicks; with --layout and one sequence")
    p.add_argument("--no-floor", action="store_true", help="leave out the classical geometric floor rows")
    p.add_argument("--lidar-refine", default="none", help="tracker option: none | components (connectivity-aware "
                   "refinement of the model's LiDAR masks, sam4d_model.geometric.refine_lidar_mask)")
    p.add_argument("--image-from-lidar", action="store_true", help="tracker option: image masks from the hull "
                   "of the LiDAR mask's projected points (cross-modal path) instead of the image decoder")
    p.add_argument("--prior", action="append", default=[], metavar="NAME=VALUE", help="a GeometricParams field "
                   "of the model's priors (e.g. merge_rule=coverage); the floor rows keep the defaults")
    p.add_argument("--overlays", type=int, default=2, help="overlay PNGs per setting and sequence")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kitti", default=None, help="a KITTI raw drive (qualitative: clicks on frame 0, overlays)")
    p.add_argument("--out", default="out/eval")
    args = p.parse_args(argv)
    if args.kitti:
        run_kitti(args)
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
