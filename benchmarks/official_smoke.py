# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The released SAM4D architecture end to end: a random official-format checkpoint through the node's tracker.

    python benchmarks/official_smoke.py                     # CUDA when present (bf16), else CPU (fp32)
    python benchmarks/official_smoke.py --frames 4 --device cpu --image-size 384

What it does: builds the released model's state dict from ``../shared/reference/official_sam4d/official_keys.tsv``
(904 keys, random values of the right shapes), saves it as ``{"model": ...}`` .pth, loads it through
``load_checkpoint`` (recognition + conversion into ``sam4d_small``, strict), then runs the
:class:`~sam4d_model.tracker.StreamingTracker` on the bundled sample drive (one LiDAR click and one image click on
frame 0, tracking after that) and prints load time, per-stage step times (median over the frames after the memory
is full), peak memory and the number of points labelled. Random weights: the masks mean nothing, the numbers are
the cost of the official architecture (Hiera-S at 768 px, MinkUNet34-W32, 7x7x7 LiDAR memory fuser).
"""

from __future__ import annotations

import argparse
import ast
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
KEYS_TSV = ROOT.parent / "shared" / "reference" / "official_sam4d" / "official_keys.tsv"
STAGES = ["image_encoder", "lidar_encoder", "umpe", "memory_attention", "decoder", "memory_encoder", "postprocess",
          "total"]


def random_official_checkpoint(path: Path, seed: int = 0) -> int:
    """Write a random ``{"model": state_dict}`` with the released model's keys, shapes and dtypes; returns #keys."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for line in KEYS_TSV.read_text().splitlines()[1:]:
        key, shape, dtype, _ = line.split("\t")
        shape = ast.literal_eval(shape)
        if dtype == "int64":
            sd[key] = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        else:
            fan = max(shape[-2] if len(shape) >= 2 else 1, 1)
            sd[key] = torch.randn(shape, generator=g) / fan ** 0.5
    torch.save({"model": sd}, path)
    return len(sd)


def main(argv=None) -> int:
    """Run the smoke benchmark; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", help="auto | cuda | cpu")
    ap.add_argument("--frames", type=int, default=12, help="frames of the sample drive to track")
    ap.add_argument("--image-size", type=int, default=768, help="model input size (official: 768)")
    ap.add_argument("--precision", default=None, help="bf16 | fp16 | fp32 (default: bf16 on CUDA, fp32 on CPU)")
    a = ap.parse_args(argv)
    if not KEYS_TSV.is_file():
        print(f"official_smoke: {KEYS_TSV} not found", file=sys.stderr)
        return 2
    from sam4d_model.checkpoint import load_checkpoint
    from sam4d_model.config import load_config
    from sam4d_model.data.sample import SAMPLE_SEQ, ensure_sample_drive
    from sam4d_model.data.waymo4dseg import read_sequence
    from sam4d_model.tracker import StreamingTracker

    dev = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if a.device == "auto" else a.device))
    cfg = load_config("sam4d_small")
    cfg.image.image_size = a.image_size
    with tempfile.TemporaryDirectory() as tmp:
        pth = Path(tmp) / "sam4d_hieraS_mink34w32.pth"
        n_keys = random_official_checkpoint(pth)
        t0 = time.perf_counter()
        model, cfg = load_checkpoint(pth, device=dev, config=cfg)
        t_load = time.perf_counter() - t0
    seq = read_sequence(ensure_sample_drive(), SAMPLE_SEQ)
    frames = [seq.frame(i) for i in range(min(a.frames, len(seq)))]
    lab = seq.labels(0)
    ids = [i for i in np.unique(lab.point_instance) if i > 0]
    obj = max(ids, key=lambda i: int((lab.point_instance == i).sum()))
    click = frames[0].points[lab.point_instance == obj][:, :3].mean(0)
    cam = frames[0].cameras[0]
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    tr = StreamingTracker(model, device=dev, max_objects=2, precision=a.precision)
    tr.add_prompt(1, lidar_points=click[None], lidar_labels=np.array([1]))
    tr.add_prompt(2, camera=0, image_points=np.array([[cam.width / 2, cam.height * 0.6]]), image_labels=np.array([1]))
    times = {k: [] for k in STAGES}
    labelled = []
    warm = cfg.memory.num_maskmem + 1
    for i, f in enumerate(frames):
        res = tr.step(f)
        labelled.append(int(res.point_masks.sum()))
        if i >= min(warm, len(frames) - 1):
            for k in STAGES:
                times[k].append(res.timings.get(k, 0.0))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"device {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'}), precision "
          f"{a.precision or ('bf16' if dev.type == 'cuda' else 'fp32')}, image {a.image_size} px, "
          f"{len(frames)} frames of the sample drive ({frames[0].points.shape[0]} points, "
          f"{cam.width}x{cam.height} camera), 2 objects")
    print(f"checkpoint: {n_keys} official keys converted and loaded strictly in {t_load:.1f} s; "
          f"{n_params:.1f} M parameters")
    print(f"{'stage':<18}{'median s':>10}   (frames {min(warm, len(frames) - 1)}..{len(frames) - 1})")
    for k in STAGES:
        if times[k]:
            print(f"{k:<18}{statistics.median(times[k]):>10.3f}")
    print(f"peak host RSS {rss:.0f} MiB" + (f", peak CUDA memory {torch.cuda.max_memory_allocated(dev) / 2**20:.0f} MiB"
                                           if dev.type == "cuda" else ""))
    print(f"stored memories {tr.num_stored_memories} ({tr.memory_bytes / 2**20:.1f} MiB); points labelled per frame "
          f"{labelled}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
