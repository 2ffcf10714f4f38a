# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""``sam4d-convert``: the authors' released SAM4D checkpoint -> a ``.safetensors`` file of ``sam4d_small``.

Example (after downloading ``sam4d_hieraS_mink34w32.pth`` from ModelScope ``StarsMyDestination/SAM4D``)::

    sam4d-convert sam4d_hieraS_mink34w32.pth sam4d_small_official.safetensors

The ``.pth`` is read with ``torch.load(weights_only=True)``, every one of its keys is converted
(:mod:`sam4d_model.official`) and loaded strictly; the output holds the weights and their config, so later loads
(``checkpoint:=...`` in the node, ``--checkpoint`` in the tools) are fast and pickle-free. The ``.pth`` itself
can be given to them as well; it is converted in memory on every load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``sam4d-convert``; returns the exit status."""
    p = argparse.ArgumentParser(prog="sam4d-convert", description=__doc__.split("\n\n")[0])
    p.add_argument("official", help="the released checkpoint ({'model': state_dict} .pth)")
    p.add_argument("out", help="output .safetensors (its config is written beside it as OUT.yaml too)")
    p.add_argument("--config", default="sam4d_small", help="model config to convert into (default sam4d_small)")
    a = p.parse_args(argv)
    import torch

    from ..checkpoint import CheckpointError, _read, save_checkpoint
    from ..config import load_config
    from ..modeling import build_sam4d
    from ..official import convert_official_state_dict, is_official_state_dict

    src = Path(a.official)
    if not src.is_file():
        print(f"sam4d-convert: {src}: no such file", file=sys.stderr)
        return 2
    try:
        sd, _ = _read(src)
        if not is_official_state_dict(sd):
            raise CheckpointError(f"{src}: not an official SAM4D checkpoint (its keys do not match)")
        cfg = load_config(a.config)
        model = build_sam4d(cfg)
        conv, report = convert_official_state_dict(sd, model.state_dict(), cfg.umpe.fourier_coord_scale)
        model.load_state_dict(conv, strict=True)
    except CheckpointError as exc:
        print(f"sam4d-convert: {exc}", file=sys.stderr)
        return 1
    out = Path(a.out)
    if out.suffix != ".safetensors":
        print("sam4d-convert: the output must be a .safetensors file", file=sys.stderr)
        return 2
    save_checkpoint(model.eval(), out, extra_metadata={"source": src.name, "converted_from": "official SAM4D"})
    n = sum(int(v.numel()) for v in sd.values() if isinstance(v, torch.Tensor))
    print(f"converted {len(report['converted'])} official keys ({n / 1e6:.2f} M numbers; dropped: "
          f"{', '.join(report['dropped']) or 'none'}; {len(report['neutral'])} keys of ours set neutral) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
