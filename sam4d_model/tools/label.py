# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""``sam4d-label``: the SAM4D data engine: label drives (Waymo-4DSeg layout) with camera-LiDAR aligned masklets.

Examples::

    sam4d-label data/ --masks my_masks/ --out labelled/            # masks from any 2D tool (COCO RLE files)
    sam4d-label data/ --sam2-checkpoint sam2.1_hiera_tiny.pt --prompts prompts.json
    sam4d-label data/ --source gt --corrupt boundary=3,miss=0.1,switch=0.05 --out /tmp/o --evaluate --baseline
    sam4d-label data/ --masks my_masks/ --ray auto                 # one job per sequence on a Ray cluster

Each sequence is one job; finished sequences are skipped (resume), labels appear atomically per sequence.
"""

from __future__ import annotations

import os

# numpy/BLAS threads: the engine is vectorised over large arrays and jobs run side by side; oversubscribed BLAS
# threads make small matrix products ~20x slower on busy machines. Must be set before numpy is imported.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import List, Optional  # noqa: E402


def parse_set(items: List[str]) -> dict:
    """``["key=value", ...]`` -> dict, values parsed as JSON when they are JSON (numbers, true/false, lists)."""
    out = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {it!r}")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(prog="sam4d-label", description=__doc__.split("\n\n")[0],
                                epilog="Output: <out>/sam4d_labels/<seq>/<ts>.json, <out>/sam4d_reports/<seq>.json, "
                                       "<out>/meta_infos/<seq>.pkl.", formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("seq_dir", help="Waymo-4DSeg layout root (meta_infos/, pcds/, undistort_images/)")
    p.add_argument("--seq", action="append", help="sequence name(s) to label (default: all complete sequences)")
    p.add_argument("--out", help="output layout root (default: SEQ_DIR itself)")
    src = p.add_argument_group("masklet source (stage 1)")
    src.add_argument("--source", choices=["auto", "files", "sam2", "sam4d", "gt"], default="auto",
                     help="auto: files with --masks, sam2 with --sam2-checkpoint, sam4d with --sam4d-checkpoint")
    src.add_argument("--masks", help="mask files folder (COCO RLE per frame, see engine.sources)")
    src.add_argument("--prompts", help="prompts JSON for sam2/sam4d: {camera: {frame: [{obj_id, box|points}]}}")
    src.add_argument("--sam2-checkpoint", help="SAM2 weights")
    src.add_argument("--sam2-config", default="configs/sam2.1/sam2.1_hiera_t.yaml", help="SAM2 model config")
    src.add_argument("--sam4d-checkpoint", help="SAM4D weights ('default' = embedded)")
    src.add_argument("--sam4d-config", default="sam4d_tiny", help="SAM4D config name or YAML")
    src.add_argument("--device", default="cpu", help="torch device for sam2/sam4d")
    src.add_argument("--corrupt", default="", help="gt source only: e.g. boundary=3,miss=0.1,switch=0.05,false=0.2")
    eng = p.add_argument_group("engine")
    eng.add_argument("--config", help="JSON file with engine settings (EngineConfig fields)")
    eng.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one engine setting")
    eng.add_argument("--evaluate", action="store_true", help="compare with the layout's ground-truth labels")
    eng.add_argument("--baseline", action="store_true", help="also score the single-frame baseline (--evaluate)")
    eng.add_argument("--min-points", type=int, default=50, help="evaluation: minimum object size in points")
    run = p.add_argument_group("running")
    run.add_argument("--overwrite", action="store_true", help="redo finished sequences / replace existing labels")
    run.add_argument("--ray", metavar="ADDRESS", help="run sequences on Ray: 'local', 'auto', 'ray://host:10001'")
    run.add_argument("--ray-workers", type=int, help="CPUs of a local Ray instance (--ray local)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def make_source(args):
    """The masklet source selected on the command line."""
    from ..engine import CorruptionConfig, FileMaskSource, GroundTruthSource, Sam2VideoSource, Sam4dSource

    kind = args.source
    if kind == "auto":
        kind = "files" if args.masks else "sam2" if args.sam2_checkpoint else "sam4d" if args.sam4d_checkpoint else None
        if kind is None:
            raise SystemExit("choose a masklet source: --masks DIR, --sam2-checkpoint + --prompts, "
                             "--sam4d-checkpoint + --prompts, or --source gt (synthetic/labelled drives)")
    if kind == "files":
        if not args.masks:
            raise SystemExit("--source files needs --masks DIR")
        return FileMaskSource(args.masks)
    if kind == "gt":
        return GroundTruthSource(CorruptionConfig.parse(args.corrupt))
    if not args.prompts:
        raise SystemExit(f"--source {kind} needs --prompts FILE")
    if kind == "sam2":
        return Sam2VideoSource(args.sam2_config, args.sam2_checkpoint, args.prompts, device=args.device)
    from ..predictor import SAM4DPredictor
    from .common import load_model

    model, _ = load_model(args.sam4d_checkpoint, args.device, args.sam4d_config)
    return Sam4dSource(SAM4DPredictor(model, device=args.device), args.prompts)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``sam4d-label``."""
    args = build_parser().parse_args(argv)
    from ..data.io_utils import DataError
    from ..data.waymo4dseg import list_sequences
    from ..engine import EngineConfig
    from ..engine.jobs import Job, run_jobs

    root = Path(args.seq_dir)
    seqs = args.seq or list_sequences(root)
    if not seqs:
        print(f"sam4d-label: no sequences under {root} (expected meta_infos/<seq>.pkl)", file=sys.stderr)
        return 2
    settings = json.loads(Path(args.config).read_text()) if args.config else {}
    settings.update(parse_set(args.set))
    try:
        cfg = EngineConfig.from_dict(settings)
    except (TypeError, ValueError) as e:
        print(f"sam4d-label: bad engine settings: {e}", file=sys.stderr)
        return 2
    source = make_source(args)
    out = str(args.out or root)
    jobs = [Job(str(root), s, out, source, cfg, evaluate=args.evaluate, baseline=args.baseline,
                overwrite=args.overwrite, min_points=args.min_points) for s in seqs]

    def show(s: dict) -> None:
        parts = [f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items() if k != "seq"]
        print(f"{s['seq']}: " + " ".join(parts), flush=True)

    try:
        run_jobs(jobs, ray_address=args.ray, num_workers=args.ray_workers, progress=not args.no_progress,
                 on_result=show)
    except (DataError, FileExistsError) as e:
        print(f"sam4d-label: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sam4d-label: interrupted (finished sequences are kept; rerun to resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
