# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""SAM4D tracker and training steps on real-looking clouds, against SAM2's own step measured in the same run.

    python benchmarks/model_speed.py --quick        # CPU, sam4d_tiny, ~4 min
    python benchmarks/model_speed.py                # more frames; + sam4d_small on a GPU

Every case runs in its own process (so its peak RSS is its own) with the torch thread setting of the parent.
Clouds are never uniform noise:

* ``rendered-20k`` / ``rendered-60k``: a rendered 64-beam scan of a synthetic drive (``sam4d-synth``,
  640x480 camera), randomly thinned to 20k / 60k points;
* ``nuscenes``: the real dev drive ``../shared/realdata/nuscenes_scene-0916`` (32 beams, ~34k points,
  1600x900 camera), when it is there.

Tracker cases time the step at **steady state**: the object is prompted on frame 0, then ``num_maskmem + 1`` frames
fill the memory (1 prompted + ``num_maskmem - 1`` past frames) before the timed frames. ``sam2`` is the ``sam2``
package's own video step (``SAM2Base.track_step``, Hiera-T config, random weights) with the same image size, the
same number of memory frames and objects; **ratio = our step / SAM2's step** is the figure to quote. ``busy``
repeats a case while another process spins on one core. Training cases time one optimiser step (forward,
backward, AdamW) of ``sam4d-train``'s clip loss on rendered drives (8k points per cloud, as CPU training uses).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

STAGES = ["image_encoder", "lidar_encoder", "umpe", "memory_attention", "decoder", "memory_encoder", "postprocess",
          "total"]
DEV_SCENE = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "nuscenes_scene-0916"


# ------------------------------------------------------------------------------------------------------ inputs
def rendered_frames(n_points: int, frames: int, seed: int = 3):
    """``frames`` rendered frames of a synthetic drive (64 beams x 2048 azimuths), thinned to ``n_points``."""
    from sam4d_model.data.synth import SynthDrive, sample_config

    drive = SynthDrive(seed, frames, sample_config(azimuths=2048))
    rng = np.random.default_rng(seed)
    out = []
    for i in range(frames):
        sf = drive.render(i)
        f, lab = sf.frame, sf.labels
        keep = np.sort(rng.choice(len(f.points), size=min(n_points, len(f.points)), replace=False))
        f.points = f.points[keep]
        lab.point_instance = lab.point_instance[keep]
        if lab.point_class is not None:
            lab.point_class = lab.point_class[keep]
        out.append((f, lab))
    return out


def dev_scene_frames(frames: int, start: int = 10):
    from sam4d_model.data.waymo4dseg import read_sequence

    seq = read_sequence(DEV_SCENE, "scene-0916")
    return [(seq.frame(i), seq.labels(i)) for i in range(start, start + frames)]


def clicks(frame, labels, objects: int):
    """LiDAR clicks (a point of each of the ``objects`` largest objects of the frame)."""
    inst = np.asarray(labels.point_instance)
    ids, counts = np.unique(inst[inst > 0], return_counts=True)
    order = ids[np.argsort(-counts)][:objects]
    pts = np.asarray(frame.points)[:, :3]
    out = []
    for oid in order:
        members = np.nonzero(inst == oid)[0]
        c = pts[members].mean(0)
        out.append(pts[members[np.argmin(np.linalg.norm(pts[members] - c, axis=1))]].tolist())
    return out


# ------------------------------------------------------------------------------------------------------- cases
def case_track(cfg_name: str, cloud: str, objects: int, timed: int, device: str) -> dict:
    from sam4d_model.config import load_config
    from sam4d_model.modeling import build_sam4d
    from sam4d_model.tracker import StreamingTracker

    torch.manual_seed(0)
    cfg = load_config(cfg_name)
    model = build_sam4d(cfg)
    warm = cfg.memory.num_maskmem + 1
    n = warm + timed
    if cloud == "nuscenes":
        data = dev_scene_frames(n)
    else:
        data = rendered_frames({"rendered-20k": 20_000, "rendered-60k": 60_000}[cloud], n)
    tr = StreamingTracker(model, device=device, max_objects=objects)
    for j, xyz in enumerate(clicks(*data[0], objects)):
        tr.add_prompt(j + 1, lidar_points=[xyz])
    per = {k: [] for k in STAGES}
    tokens = 0
    for t, (f, _) in enumerate(data):
        res = tr.step(f)
        if t >= warm:
            for k in STAGES:
                per[k].append(res.timings.get(k, 0.0))
    with torch.inference_mode():
        tokens = model.encode_frame(data[-1][0]).pyr.num_voxels(16)
    return {"stages": {k: statistics.median(v) for k, v in per.items()}, "points": int(len(data[-1][0].points)),
            "tokens": int(tokens), "memory_frames": cfg.memory.num_maskmem, "image_size": cfg.image.image_size}


def case_sam2(image_size: int, num_maskmem: int, objects: int, timed: int, device: str) -> dict:
    """SAM2 (Hiera-T config, random weights): image encoder + ``track_step`` per frame at steady state."""
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device=device, mode="eval")
    model.image_size = image_size
    model.num_maskmem = num_maskmem
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
    warm = num_maskmem + 1
    with torch.inference_mode():
        for t in range(warm + timed):
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
            out_dict["cond_frame_outputs" if t == 0 else "non_cond_frame_outputs"][t] = cur
            out_dict["non_cond_frame_outputs"] = {k: v for k, v in out_dict["non_cond_frame_outputs"].items()
                                                  if k > t - num_maskmem}
            if device == "cuda":
                torch.cuda.synchronize()
            if t >= warm:
                times.append(time.perf_counter() - t0)
    return {"stages": {"total": statistics.median(times)}, "image_size": image_size, "memory_frames": num_maskmem}


def case_train(cfg_name: str, clip_len: int, objects: int, steps: int) -> dict:
    from sam4d_model.data.waymo4dseg import InMemorySequence
    from sam4d_model.training.trainer import ClipLoss, TrainConfig, build_model_for_training, sample_clip

    tc = TrainConfig(model=cfg_name, clip_len=clip_len, max_objects=objects, max_points=8000, prob_correct=0.5,
                     min_pixels=300, min_points=40, device="cpu")
    model = build_model_for_training(tc)
    model.train()
    seq = InMemorySequence(rendered_frames(10 ** 9, clip_len + 2, seed=5))
    loss_mod = ClipLoss(model, tc)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    rng = np.random.default_rng(0)
    plans = [sample_clip([seq], tc, rng) for _ in range(steps + 1)]
    # the same objects every step: the clip's object count is the cost driver
    times = []
    for i, plan in enumerate(plans):
        t0 = time.perf_counter()
        terms = loss_mod(plan, np.random.default_rng(i))
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()
        if i > 0:  # the first step allocates the optimiser state
            times.append(time.perf_counter() - t0)
    return {"stages": {"total": statistics.median(times)}, "objects": [len(p.obj_ids) for p in plans]}


def run_case(spec: dict) -> dict:
    kind = spec["kind"]
    if kind == "track":
        out = case_track(spec["config"], spec["cloud"], spec["objects"], spec["timed"], spec["device"])
    elif kind == "sam2":
        out = case_sam2(spec["image_size"], spec["memory_frames"], spec["objects"], spec["timed"], spec["device"])
    elif kind == "train":
        out = case_train(spec["config"], spec["clip_len"], spec["objects"], spec["timed"])
    else:
        raise ValueError(kind)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out


def spawn(spec: dict, threads: int, busy: bool = False) -> dict:
    """Run one case in a fresh process (``busy``: while another process spins on one core)."""
    spinner = None
    if busy:
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        cmd = [sys.executable, __file__, "--case", json.dumps(spec), "--threads", str(threads)]
        p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1][:120]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CPU tiny model only, 3 timed frames / steps")
    ap.add_argument("--timed", type=int, default=None, help="timed frames (tracker) / steps (training) per case")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--no-train", action="store_true", help="skip the training-step cases")
    ap.add_argument("--no-busy", action="store_true", help="skip the case with one core held by another process")
    ap.add_argument("--json", default=None, help="also write all results to this file")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    threads = torch.get_num_threads()
    timed = args.timed or (3 if args.quick else 8)
    from sam4d_model.config import load_config

    tiny = load_config("sam4d_tiny")
    cases = [("sam2 Hiera-T", {"kind": "sam2", "image_size": tiny.image.image_size,
                               "memory_frames": tiny.memory.num_maskmem, "objects": 1}, False)]
    for cloud in ["rendered-20k", "rendered-60k"] + (["nuscenes"] if DEV_SCENE.is_dir() else []):
        cases.append((f"tiny {cloud}", {"kind": "track", "config": "sam4d_tiny", "cloud": cloud, "objects": 1},
                      False))
    cases.append(("tiny rendered-60k", {"kind": "track", "config": "sam4d_tiny", "cloud": "rendered-60k",
                                        "objects": 4}, False))
    if not args.no_busy:
        cases.append(("tiny rendered-60k busy", {"kind": "track", "config": "sam4d_tiny", "cloud": "rendered-60k",
                                                 "objects": 1}, True))
    if torch.cuda.is_available() and not args.quick:
        small = load_config("sam4d_small")
        cases.append(("sam2 Hiera-T", {"kind": "sam2", "image_size": small.image.image_size, "device": "cuda",
                                       "memory_frames": small.memory.num_maskmem, "objects": 1}, False))
        cases.append(("small rendered-60k", {"kind": "track", "config": "sam4d_small", "cloud": "rendered-60k",
                                             "objects": 1, "device": "cuda"}, False))
    if not args.no_train:
        cases.append(("train 1 frame", {"kind": "train", "config": "sam4d_tiny", "clip_len": 1, "objects": 6},
                      False))
        cases.append(("train 3 frames", {"kind": "train", "config": "sam4d_tiny", "clip_len": 3, "objects": 3},
                      False))
    print(f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} cores, cuda {torch.cuda.is_available()}, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    hdr = (f"{'case':24s} {'obj':>3s} {'pts':>6s} {'tok':>5s} " + " ".join(f"{k[:9]:>9s}" for k in STAGES)
           + f" {'Hz':>5s} {'ratio':>6s} {'RSS MB':>7s}")
    print(hdr)
    results, sam2_step = [], {}
    for name, spec, busy in cases:
        spec = {"device": "cpu", "timed": timed, **spec}
        r = spawn(spec, threads, busy)
        results.append({"case": name, "spec": spec, "busy": busy, **r})
        if "error" in r:
            print(f"{name:24s} failed: {r['error']}")
            continue
        st = r["stages"]
        if spec["kind"] == "sam2":
            sam2_step[(spec["device"], spec["image_size"])] = st["total"]
        ratio = ""
        if spec["kind"] == "track":
            ref = sam2_step.get((spec["device"], r["image_size"]))
            ratio = f"{st['total'] / ref:6.2f}" if ref else ""
        cells = " ".join(f"{st[k]:9.3f}" if k in st else f"{'':9s}" for k in STAGES)
        objs = spec.get("objects", "")
        print(f"{name:24s} {objs:>3} {r.get('points', ''):>6} {r.get('tokens', ''):>5} {cells} "
              f"{1.0 / st['total']:5.2f} {ratio:>6s} {r['peak_rss_mb']:7.0f}", flush=True)
    by = {(x["case"], x["spec"].get("objects")): x for x in results if "error" not in x}
    one, four = by.get(("tiny rendered-60k", 1)), by.get(("tiny rendered-60k", 4))
    busy = by.get(("tiny rendered-60k busy", 1))
    if one and four:
        print(f"4 objects / 1 object (rendered-60k): {four['stages']['total'] / one['stages']['total']:.2f}x")
    if one and busy:
        print(f"one core held / idle (rendered-60k): {busy['stages']['total'] / one['stages']['total']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
