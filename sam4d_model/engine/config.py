# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Settings of the data engine (4D reconstruction, association, fusion), with defaults tuned on synthetic drives."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Tuple

#: Masklet categories treated as ground by the default rule set (case-insensitive substring match).
GROUND_CATEGORIES = ("road", "sidewalk", "lane", "ground", "terrain", "parking", "crosswalk", "curb", "driveway")


@dataclass
class EngineConfig:
    """All knobs of stages 2-5. Lengths in metres, image sizes in pixels."""

    # ---- 4D reconstruction
    voxel_size: float = 0.1
    min_range: float = 1.0  # drop points closer to the LiDAR (ego body)
    max_range: float = 120.0
    tile_size: float = 16.0  # spatial index cells (xy)
    # static / dynamic separation ("seen-through" test on per-frame range images)
    detect_dynamic: bool = True
    range_az_res_deg: float = 0.35
    range_el_res_deg: float = 0.45
    dyn_max_range: float = 60.0
    dyn_margin: float = 0.5  # through if the frame saw this much (plus dyn_margin_rel * range) beyond the voxel
    dyn_margin_rel: float = 0.02
    dyn_min_through: int = 2
    dyn_ratio: float = 0.5  # and through >= ratio * frames in which the voxel was occupied
    dyn_confirm_ratio: float = 0.5  # and through >= ratio * frames that saw a surface at the voxel's range
    dyn_frame_step: int = 1
    dyn_grow_dist: float = 0.35  # grow dynamic voxels into touching (this close) non-ground voxels (0 = off) ...
    dyn_grow_max_occ: int = 6  # ... occupied in at most this many frames and in <= 1/4 of the frames that saw a
    #                            surface at their range ...
    dyn_grow_frames: int = 2  # ... touching dynamic voxels of their frame or up to this many frames before / after
    # ground (for the ground rule set and ground leak suppression)
    ground_cell: float = 1.0
    ground_window: int = 5  # cells (odd): min filter of the per-cell low height
    ground_height: float = 0.05
    # ... and flat: an element low enough is still not ground when its points spread vertically (std of z) more than
    # ground_flat_ratio x their horizontal spread and more than ground_flat_min_std (the base of a cone, feet)
    ground_flat_ratio: float = 0.5  # <= 0: height rule only
    ground_flat_min_std: float = 0.02
    # ---- association (z-buffer)
    max_depth: float = 80.0
    min_depth: float = 0.5
    splat_scale: float = 0.6  # splat radius = splat_scale * f * voxel / depth (pixels)
    splat_min_px: int = 1
    splat_max_px: int = 8
    zbuf_tol: float = 0.3
    zbuf_tol_rel: float = 0.02
    # ---- fusion
    cluster_eps: float = 1.0  # DBSCAN-style link distance (grid cells) inside one unit
    cluster_keep: float = 0.1  # components with less vote mass than this fraction of the largest ...
    cluster_keep_frames: float = 0.3  # ... and seen in fewer frames than this fraction of the longest are noise
    switch_link_per_gap: float = 1.5  # motion allowance (m per frame) when linking moving parts over time
    max_link_gap: int = 5  # dynamic parts/units separated by up to this many frames may be linked
    core_frac: float = 0.5  # element is in a unit's core when the unit labels it in >= this fraction of the frames
    #                         (of the unit's camera and time span) in which it was visible ...
    core_dominance: float = 0.25  # ... and has >= this fraction of the strongest unit's votes on it
    merge_overlap: float = 0.3  # merge units whose cores share >= this fraction of the smaller core
    merge_min: int = 3  # ... and at least this many elements
    label_frac: float = 0.4  # assign an element to an object at >= this vote fraction ...
    ignore_frac: float = 0.2  # ... ignore (-1) between ignore_frac and label_frac
    min_object_points: int = 5
    min_object_score: float = 0.3
    ground_votes: bool = False  # let non-ground masklets label ground elements
    # ground rule set: drop objects that are flat ground-like surfaces
    ground_rule_fraction: float = 0.8
    ground_rule_max_height: float = 0.4
    ground_categories: Tuple[str, ...] = field(default_factory=lambda: GROUND_CATEGORIES)
    uncovered_label: int = -1  # label of points never seen by any camera
    seed: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ground_categories"] = list(self.ground_categories)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EngineConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown engine settings {sorted(unknown)}")
        d = dict(d)
        if "ground_categories" in d:
            d["ground_categories"] = tuple(d["ground_categories"])
        return cls(**d)
