# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""How far the synthetic drives are from real ones: cloud and image statistics side by side.

    python benchmarks/synth_vs_real.py                 # ~2 min on 2 CPU cores
    python benchmarks/synth_vs_real.py --frames 4 --random-drives 6 --out out/synth_vs_real.json

Sources: the real nuScenes dev drive and the real KITTI drive in ``../shared/realdata/`` (read only, never trained
on), the bundled sample rig (``sample_config``) and randomised rigs (``random_config``, what ``--synth-random``
trains on). For each source, per frame then pooled:

* **cloud**: points per frame, share of points by range, height above the estimated ground (the model's
  ``height_above_ground`` input, :mod:`sam4d_model.geometric`) as a histogram, intensity quantiles (raw, in the
  sensor's own scale) and the share of points with intensity exactly 0;
* **objects** (labelled sources): LiDAR points per car and per pedestrian by range bin (median), i.e. how sparse a
  clicked object really is;
* **image**: mean and std of each RGB channel, mean HSV saturation, mean gradient magnitude (texture / sharpness),
  and the share of near-saturated pixels.

A synthetic source far from both real ones on a row is a sim-to-real gap to close in ``sam4d_model/data/synth.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
RANGE_BINS = (0, 10, 20, 30, 50, 80)
HEIGHT_BINS = (-1.0, 0.2, 0.5, 1.0, 2.0, 4.0)


def _family(name: str) -> str:
    n = name.lower()
    if n in ("car", "vehicle.car"):
        return "car"
    if n == "pedestrian" or n.startswith("human.pedestrian"):
        return "pedestrian"
    return ""


def sources(frames: int, random_drives: int):
    """``name -> list of (Frame, FrameLabels or None)``."""
    from sam4d_model.data.synth import SynthDrive, random_config, sample_config

    out = {}
    nus = SHARED / "nuscenes_scene-0916"
    if nus.is_dir():
        from sam4d_model.data.waymo4dseg import read_sequence

        seq = read_sequence(nus, "scene-0916")
        idx = np.linspace(0, len(seq) - 1, frames).astype(int)
        out["real nuScenes"] = [(seq.frame(int(i)), seq.labels(int(i))) for i in idx]
    kit = SHARED / "kitti_raw_2011_09_26_drive_0009"
    if kit.is_dir():
        from sam4d_model.data.kitti import KittiRawDrive

        drv = KittiRawDrive(kit)
        idx = np.linspace(0, len(drv) - 1, frames).astype(int)
        out["real KITTI"] = [(drv.frame(int(i)), None) for i in idx]
    d = SynthDrive(910001, frames, sample_config())
    out["synth sample rig"] = [(sf.frame, sf.labels) for sf in (d.render(i) for i in range(frames))]
    rnd = []
    for k in range(random_drives):
        d = SynthDrive(920001 + k, 1, random_config(920001 + k))
        sf = d.render(0)
        rnd.append((sf.frame, sf.labels))
    out["synth random rigs"] = rnd
    return out


def cloud_stats(frames) -> dict:
    from sam4d_model.geometric import finite_xyz, height_above_ground

    n, rng_share, h_hist, inten, zero = [], [], [], [], []
    obj = {"car": {}, "pedestrian": {}}
    for f, lab in frames:
        pts = np.asarray(f.points, np.float32)
        xyz, finite = finite_xyz(pts)
        xyz = xyz[finite]
        n.append(len(xyz))
        r = np.linalg.norm(xyz[:, :2], axis=1)
        rng_share.append(np.histogram(r, bins=RANGE_BINS + (1e9,))[0] / max(len(r), 1))
        h = height_above_ground(pts[finite])
        h_hist.append(np.histogram(h, bins=HEIGHT_BINS + (1e9,))[0] / max(len(h), 1))
        if pts.shape[1] > 3:
            iv = pts[finite, 3]
            inten.append(iv)
            zero.append(float(np.mean(iv == 0)))
        if lab is None or lab.point_instance is None:
            continue
        inst = np.asarray(lab.point_instance)[finite]
        for oid, cls in (lab.object_classes or {}).items():
            fam = _family(cls)
            if not fam:
                continue
            m = inst == oid
            c = int(m.sum())
            if c == 0:
                continue
            b = int(np.digitize(np.linalg.norm(xyz[m, :2].mean(0)), RANGE_BINS)) - 1
            obj[fam].setdefault(min(b, len(RANGE_BINS) - 1), []).append(c)
    iv = np.concatenate(inten) if inten else np.zeros(0)
    return {
        "points_per_frame": float(np.median(n)),
        "range_share": np.mean(rng_share, 0).tolist(),
        "height_share": np.mean(h_hist, 0).tolist(),
        "intensity_q": np.quantile(iv, [0.05, 0.5, 0.95]).tolist() if len(iv) else None,
        "intensity_zero": float(np.mean(zero)) if zero else None,
        "objects": {fam: {str(b): [int(np.median(v)), len(v)] for b, v in sorted(d.items())} for fam, d in obj.items()},
    }


def image_stats(frames) -> dict:
    means, stds, sat, grad, clip = [], [], [], [], []
    for f, _ in frames:
        for c in f.cameras:
            im = np.asarray(c.image)
            means.append(im.reshape(-1, 3).mean(0))
            stds.append(im.reshape(-1, 3).std(0))
            hsv = cv2.cvtColor(im, cv2.COLOR_RGB2HSV)
            sat.append(hsv[..., 1].mean())
            g = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float32)
            gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
            grad.append(float(np.sqrt(gx ** 2 + gy ** 2).mean()))
            clip.append(float(np.mean((im >= 250).all(-1) | (im <= 5).all(-1))))
    return {"rgb_mean": np.mean(means, 0).tolist(), "rgb_std": np.mean(stds, 0).tolist(),
            "saturation": float(np.mean(sat)), "gradient": float(np.mean(grad)), "clipped": float(np.mean(clip))}


def _fmt(v, nd=2):
    return "-" if v is None else f"{v:.{nd}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=4, help="frames per drive")
    ap.add_argument("--random-drives", type=int, default=6, help="randomised-rig drives (one frame each)")
    ap.add_argument("--out", default=None, help="write the statistics as JSON")
    args = ap.parse_args()
    stats = {}
    for name, frames in sources(args.frames, args.random_drives).items():
        stats[name] = {"cloud": cloud_stats(frames), "image": image_stats(frames), "frames": len(frames)}
    names = list(stats)
    w = 20
    print(f"{'statistic':34s}" + "".join(f"{n:>{w}s}" for n in names))

    def row(label, fn):
        print(f"{label:34s}" + "".join(f"{fn(stats[n]):>{w}s}" for n in names))

    row("points per frame (median)", lambda s: f"{s['cloud']['points_per_frame']:.0f}")
    lo = (RANGE_BINS + ("inf",))
    for i in range(len(RANGE_BINS)):
        row(f"share of points at {lo[i]}-{lo[i + 1]} m", lambda s, i=i: _fmt(s["cloud"]["range_share"][i]))
    hb = HEIGHT_BINS + ("inf",)
    for i in range(len(HEIGHT_BINS)):
        row(f"share at {hb[i]}..{hb[i + 1]} m above ground", lambda s, i=i: _fmt(s["cloud"]["height_share"][i]))
    row("intensity p5 / p50 / p95", lambda s: "-" if s["cloud"]["intensity_q"] is None else
        "/".join(f"{q:.2g}" for q in s["cloud"]["intensity_q"]))
    row("share of intensity == 0", lambda s: _fmt(s["cloud"]["intensity_zero"]))
    for fam in ("car", "pedestrian"):
        for i in range(len(RANGE_BINS) - 1):
            row(f"points per {fam} at {RANGE_BINS[i]}-{RANGE_BINS[i + 1]} m (n)",
                lambda s, i=i, fam=fam: "-" if str(i) not in s["cloud"]["objects"][fam] else
                "{} ({})".format(*s["cloud"]["objects"][fam][str(i)]))
    row("image RGB mean", lambda s: "/".join(f"{v:.0f}" for v in s["image"]["rgb_mean"]))
    row("image RGB std", lambda s: "/".join(f"{v:.0f}" for v in s["image"]["rgb_std"]))
    row("image saturation (HSV S mean)", lambda s: f"{s['image']['saturation']:.0f}")
    row("image gradient magnitude", lambda s: f"{s['image']['gradient']:.1f}")
    row("share of clipped pixels", lambda s: _fmt(s["image"]["clipped"], 3))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
