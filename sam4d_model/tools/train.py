# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""``sam4d-train``: train SAM4D on synthetic drives or a Waymo-4DSeg dataset (single process, or DDP via torchrun).

Examples::

    sam4d-train --out runs/tiny --steps 3000                      # synthetic drives, generated once into a cache
    sam4d-train --layout /data/waymo4dseg --model sam4d_small --device cuda --steps 100000
    torchrun --nproc_per_node 8 -m sam4d_model.tools.train --layout /data/waymo4dseg --model sam4d_small

Runs resume from ``OUT/last.pt``. Final weights: ``OUT/<model>.safetensors`` (+ ``.yaml`` config).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import List


def parse_seeds(text: str) -> List[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``."""
    out: List[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def synth_sequences(seeds: List[int], frames: int, cache: str, width: int, height: int, progress: bool = True,
                    randomize: bool = False):
    """Render (once, resumably) synthetic drives into a Waymo-4DSeg cache and open them (``randomize``: each
    drive with its own :func:`~sam4d_model.data.synth.random_config` sensor rig; ``width``/``height`` unused).
    """
    from ..data.synth import SynthDrive, random_config, sample_config, write_layout
    from ..data.waymo4dseg import read_sequence

    seqs = []
    for seed in seeds:
        name = f"synth_{seed:06d}"
        meta = Path(cache) / "meta_infos" / f"{name}.pkl"
        if not meta.is_file():
            cfg = random_config(seed) if randomize else sample_config(width=width, height=height)
            drive = SynthDrive(seed, frames, cfg)
            write_layout(drive, cache, name, progress=progress)
        seqs.append(read_sequence(cache, name))
    return seqs


def main(argv=None) -> int:
    """Entry point of ``sam4d-train``."""
    from ..training.trainer import TrainConfig, train

    p = argparse.ArgumentParser(prog="sam4d-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/sam4d_tiny", help="run directory (resumes from OUT/last.pt)")
    p.add_argument("--layout", default=None, help="Waymo-4DSeg root; default: synthetic drives")
    p.add_argument("--seqs", default=None, help="comma-separated sequences of --layout (default: all)")
    p.add_argument("--synth-seeds", default="0-15", help="training drive seeds (test drives use 900000+)")
    p.add_argument("--synth-frames", type=int, default=40)
    p.add_argument("--synth-cache", default=".cache/synth_train")
    p.add_argument("--synth-size", default="512x384", help="WxH of the synthetic camera")
    p.add_argument("--synth-random", action="store_true", help="randomised sensor rigs per drive (sim-to-real: "
                   "beams, FOV, noise, dropout, intensity, camera size/FOV/exposure/blur/JPEG; sam4d-synth --random)")
    d = TrainConfig()
    for f in fields(TrainConfig):
        if f.name in ("out_dir", "loss_weights"):
            continue
        default = getattr(d, f.name)
        typ = type(default) if default is not None else str
        if typ is bool:
            p.add_argument("--" + f.name.replace("_", "-"), type=lambda s: s.lower() in ("1", "true", "yes"),
                           default=default)
        else:
            p.add_argument("--" + f.name.replace("_", "-"), type=typ, default=default)
    p.add_argument("--loss-weight", action="append", default=[], metavar="NAME=VALUE",
                   help="override a loss weight, e.g. weight_iou=5 (repeatable; names: "
                   + ", ".join(d.loss_weights) + ")")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--export", default=None, metavar="PATH",
                   help="only write the weights of OUT/last.pt to PATH (.safetensors) and exit")
    args = p.parse_args(argv)
    weights = dict(d.loss_weights)
    for item in args.loss_weight:
        name, sep, value = item.partition("=")
        if not sep or name not in weights:
            p.error(f"--loss-weight {item!r}: expected NAME=VALUE with NAME one of {sorted(weights)}")
        try:
            weights[name] = float(value)
        except ValueError:
            p.error(f"--loss-weight {item!r}: {value!r} is not a number")
    cfg = TrainConfig(out_dir=args.out, loss_weights=weights,
                      **{f.name: getattr(args, f.name) for f in fields(TrainConfig)
                         if f.name not in ("out_dir", "loss_weights")})
    if args.export:
        from ..training.trainer import export_weights

        print(f"weights: {export_weights(cfg, args.export)}")
        return 0
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch
        import torch.distributed as dist

        backend = "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
        dist.init_process_group(backend)
    rank = int(os.environ.get("RANK", "0"))
    if args.layout:
        from ..data.waymo4dseg import list_sequences, read_sequence

        names = args.seqs.split(",") if args.seqs else list_sequences(args.layout)
        seqs = [read_sequence(args.layout, n) for n in names]
    else:
        w, h = (int(x) for x in args.synth_size.lower().split("x"))
        if rank == 0:
            seqs = synth_sequences(parse_seeds(args.synth_seeds), args.synth_frames, args.synth_cache, w, h,
                                   progress=not args.no_progress, randomize=args.synth_random)
        if world > 1:
            import torch.distributed as dist

            dist.barrier()
        if rank != 0:
            seqs = synth_sequences(parse_seeds(args.synth_seeds), args.synth_frames, args.synth_cache, w, h, False,
                                   randomize=args.synth_random)
    final = train(cfg, seqs, progress=not args.no_progress)
    if rank == 0:
        print(f"weights: {final}")
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
