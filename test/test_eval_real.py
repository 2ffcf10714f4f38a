# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Evaluation that tells the truth: prompts files, present-frame mIoU, false positives on absent frames, and the
classical geometric floor (ground removal + region growing), on synthetic and on the real dev scene."""

import json
from pathlib import Path

import numpy as np
import pytest

from sam4d_model import geometric as geo
from sam4d_model.eval.metrics import MeanMeter
from sam4d_model.eval.protocols import EvalSettings, _score_one, evaluate_sequence, load_prompts_file, summarize
from sam4d_model.types import CameraFrame, Frame, FrameLabels

DEV = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "nuscenes_scene-0916"


def _scene(shift=0.0):
    """Flat ground (z = -1.8) with a 2 x 1 x 1.5 m box of points standing on it at x = 10 + shift."""
    rng = np.random.default_rng(0)
    g = np.c_[rng.uniform(-20, 20, (6000, 2)), np.full(6000, -1.8) + rng.normal(0, 0.01, 6000)]
    b = np.c_[rng.uniform(9 + shift, 11 + shift, 800), rng.uniform(-0.5, 0.5, 800), rng.uniform(-1.7, -0.3, 800)]
    pts = np.concatenate([g, b]).astype(np.float32)
    inst = np.r_[np.zeros(6000, np.int32), np.ones(800, np.int32)]
    return pts, inst


def test_ground_and_region_growing_find_the_box():
    pts, inst = _scene()
    ground = geo.ground_mask(pts)
    assert ground[:6000].mean() > 0.99 and ground[6000:].mean() < 0.1
    hag = geo.height_above_ground(pts)
    assert abs(float(np.median(hag[:6000]))) < 0.05 and hag[6000:].max() > 1.3
    seed = geo.nearest_seed(pts, ~ground, np.array([10.0, 0.0, -1.0]), 1.0)
    m = geo.region_grow(pts, ~ground, np.array([seed]), 0.6)
    assert (m == (inst == 1) & ~ground).all()
    assert geo.nearest_seed(pts, ~ground, np.array([0.0, 15.0, -1.0]), 1.0) is None  # nothing near the click


def test_absent_objects_are_false_positive_rate_not_iou():
    m = MeanMeter()
    _score_one(np.zeros(10, bool), np.zeros(10, bool), m, "lidar")  # absent, predicted empty
    _score_one(np.ones(10, bool), np.zeros(10, bool), m, "lidar")  # absent, predicted something
    _score_one(np.r_[np.ones(5, bool), np.zeros(5, bool)], np.ones(10, bool), m, "lidar")  # present, IoU 0.5
    r = summarize(m)
    assert r["lidar_mIoU"] == pytest.approx(0.5) and r["n_lidar"] == 1
    assert r["lidar_fp"] == pytest.approx(0.5) and r["n_lidar_absent"] == 2


def test_geometric_tracker_follows_the_box_with_ego_motion(tmp_path):
    """The floor's streaming: the ego moves 2 m per frame, the box is static in the world."""
    k = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    cam2lidar = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]], float)
    seq = []
    for i in range(3):
        pts, inst = _scene(shift=-2.0 * i)
        pose = np.eye(4)
        pose[0, 3] = 2.0 * i
        cam = CameraFrame("FRONT", np.zeros((240, 320, 3), np.uint8), k, cam2lidar)
        seq.append((Frame(pts, [cam], pose, index=i), FrameLabels(inst, {"FRONT": np.zeros((240, 320), np.int32)})))
    prompts = [{"object_id": 1, "frame_idx": 0, "lidar_xyz": [10.0, 0.0, -1.0], "image_uv": [160.0, 130.0]}]
    f = tmp_path / "prompts.json"
    f.write_text(json.dumps({"prompts": prompts}))
    pr = load_prompts_file(f)
    for ego, want in ((True, 0.85), (False, None)):
        s = EvalSettings(method="geometric", protocol="stream", prompt_modality="lidar", max_objects=0,
                         use_ego_motion=ego)
        r = summarize(evaluate_sequence(seq, lambda e: geo.GeometricTracker(use_ego_motion=e), s, prompts=pr))
        assert r["n_lidar"] == 3
        if want:
            assert r["lidar_mIoU"] > want


def test_prompts_file_errors_are_clear(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"prompts": [{"frame_idx": 0}]}))
    with pytest.raises(ValueError, match="prompt 0 is malformed"):
        load_prompts_file(f)
    f.write_text("{not json")
    with pytest.raises(ValueError, match="prompts file"):
        load_prompts_file(f)


def test_random_sensor_rigs_are_deterministic_and_varied():
    from sam4d_model.data.synth import SynthDrive, random_config

    cfgs = [random_config(s) for s in range(12)]
    assert random_config(3) == cfgs[3]
    assert len({c.beams for c in cfgs}) >= 3 and len({(c.width, c.height) for c in cfgs}) >= 3
    c = random_config(1, width=96, height=64, azimuths=256)
    a, b = SynthDrive(1, 2, c).render(1), SynthDrive(1, 2, c).render(1)
    assert np.array_equal(a.frame.points, b.frame.points) and np.array_equal(a.frame.cameras[0].image,
                                                                              b.frame.cameras[0].image)


@pytest.mark.skipif(not DEV.is_dir(), reason="../shared/realdata/nuscenes_scene-0916 not present")
def test_floor_on_the_real_dev_scene():
    """The geometric floor, measured with the dev scene's own clicks (reference README: 0.605 / 0.570)."""
    from sam4d_model.data.waymo4dseg import read_sequence

    seq = read_sequence(DEV, "scene-0916")
    frames = [(seq.frame(i), seq.labels(i)) for i in range(len(seq))]
    pr = load_prompts_file(DEV / "prompts_scene-0916.json")
    out = {}
    for proto in ("frame", "stream"):
        s = EvalSettings(method="geometric", protocol=proto, prompt_modality="lidar", max_objects=0)
        def make(e):
            return geo.GeometricTracker(use_ego_motion=e, max_objects=64)

        out[proto] = summarize(evaluate_sequence(frames, make, s, prompts=pr))
    assert out["frame"]["n_lidar"] == 29 and out["stream"]["n_lidar"] == 433
    assert out["frame"]["lidar_mIoU"] > 0.58 and out["stream"]["lidar_mIoU"] > 0.55
    # the cross-modal image masks (hull lowered towards the ground): 0.354 / 0.470 on 2026-12-03, 0.263 / 0.390
    # with the plain hull of the non-ground points
    assert out["frame"]["image_mIoU"] > 0.33 and out["stream"]["image_mIoU"] > 0.44


def test_image_hull_reaches_down_to_where_the_object_stands():
    """Ground removal cuts the box's bottom 0.25 m; lowering the hull's points towards the estimated ground
    recovers the bottom of its silhouette without spilling outside it."""
    import cv2

    k = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    cam2lidar = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]], float)
    pts, inst = _scene()
    xyz = pts.astype(np.float64)
    gz = geo.ground_height(xyz)
    mask = (inst == 1) & (xyz[:, 2] >= gz + geo.GeometricParams().ground_margin)  # what the floor segments
    # the true silhouette of the solid box standing on the ground (z -1.8 .. -0.3)
    corners = np.array([[x, y, z] for x in (9, 11) for y in (-0.5, 0.5) for z in (-1.8, -0.3)], float)
    uv, _, _ = geo.project_to_image(corners, k, cam2lidar, 320, 240)
    truth = np.zeros((240, 320), np.uint8)
    cv2.fillConvexPoly(truth, np.round(cv2.convexHull(uv.astype(np.float32)).reshape(-1, 2)).astype(np.int32), 1)
    truth = truth > 0
    plain = geo.lidar_mask_to_image(xyz, mask, k, cam2lidar, 320, 240)
    lowered = geo.lidar_mask_to_image(xyz, mask, k, cam2lidar, 320, 240, ground_z=gz, ground_drop=0.375)
    iou = [float((m & truth).sum() / (m | truth).sum()) for m in (plain, lowered)]
    assert iou[1] > iou[0] + 0.05, iou
    assert (lowered & ~truth).sum() < 0.05 * lowered.sum()  # stays inside the silhouette
    assert np.nonzero(lowered)[0].max() > np.nonzero(plain)[0].max()  # reaches lower in the image


@pytest.mark.parametrize("modality", ["image", "lidar"])
def test_components_prior_seeds_from_image_and_lidar_clicks(modality):
    """lidar_refine='components': the clicked object's component is in the mask whichever modality was clicked
    (an image click is carried to the point it lands on), even when the model's own mask misses it."""
    import torch

    from sam4d_model.config import load_config
    from sam4d_model.modeling import build_sam4d
    from sam4d_model.tracker import StreamingTracker

    torch.manual_seed(0)
    pts, inst = _scene()
    k = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    cam2lidar = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]], float)
    frame = Frame(pts, [CameraFrame("FRONT", np.zeros((240, 320, 3), np.uint8), k, cam2lidar)], np.eye(4), index=0)
    # a random model's mask holds ground around the box, which keep_model_ground would keep: off, to test the seeds
    tr = StreamingTracker(build_sam4d(load_config("sam4d_tiny")), lidar_refine="components",
                          geometric_params=geo.GeometricParams(keep_model_ground=False))
    if modality == "image":
        tr.add_prompt(1, image_points=[[160.0, 150.0]])  # the box centre (10, 0, -1) seen by the camera
    else:
        tr.add_prompt(1, lidar_points=[[10.0, 0.0, -1.0]])
    pending = tr._pending[1]
    ground = geo.ground_mask(pts)
    seeds = tr._click_seeds(pending, frame, pts, ~ground)
    assert len(seeds) == 1 and inst[seeds[0]] == 1  # the click lands on the box, not on the ground behind it
    mask = tr.step(frame).point_masks[0]
    box = (inst == 1) & ~ground
    assert mask[box].all() and not mask[inst == 0].any()
    # from those seeds the box is recovered even where the model's mask is empty
    assert (geo.refine_lidar_mask(pts, np.zeros(len(pts), bool), seeds=np.array(seeds), ground=ground) == box).all()


def test_ground_estimate_ignores_unusable_rows():
    """Rows beyond max_range or not finite (a corrupt cloud) count as ground and leave the others' estimate alone."""
    pts, inst = _scene()
    bad = np.array([[1e30, 0.0, 0.0], [np.nan, 1.0, 1.0], [5e5, -3e5, 2.0]], np.float32)
    g = geo.ground_mask(np.concatenate([pts, bad]))
    assert g[-3:].all() and (g[:-3] == geo.ground_mask(pts)).all()


def test_components_prior_follows_the_box_with_ego_motion():
    """On frames after the click, the components prior seeds from the last mask's centroid moved by ego motion."""
    import torch

    from sam4d_model.config import load_config
    from sam4d_model.modeling import build_sam4d
    from sam4d_model.tracker import StreamingTracker

    torch.manual_seed(0)
    # a random model's mask holds ground around the box, which keep_model_ground would keep: off, to test the seeds
    tr = StreamingTracker(build_sam4d(load_config("sam4d_tiny")), lidar_refine="components",
                          geometric_params=geo.GeometricParams(keep_model_ground=False))
    tr.add_prompt(1, lidar_points=[[10.0, 0.0, -1.0]])
    for i in range(3):  # the ego drives 3 m per frame towards a box static in the world
        pts, inst = _scene(shift=-3.0 * i)
        pose = np.eye(4)
        pose[0, 3] = 3.0 * i
        mask = tr.step(Frame(pts, [], pose, index=i)).point_masks[0]
        box = (inst == 1) & ~geo.ground_mask(pts)
        assert mask[box].all() and not mask[inst == 0].any(), i
        want = np.array([10.0 - 3.0 * i, 0.0, -1.0])  # the stored seed is the box centre, in the world frame
        assert np.linalg.norm(tr._seed_world[1] - (want + [3.0 * i, 0, 0])) < 0.2
    pts, inst = _scene()
    gone = tr.step(Frame(pts[inst == 0], [], np.eye(4), index=3))
    assert not gone.point_masks[0].any()  # nothing where the box was: absent, whatever the model's own mask holds
    assert gone.object_scores[0] == 0.0 and not gone.point_scores[0].any()


@pytest.mark.parametrize("motion", ["static", "constant_velocity", "static_then_velocity"])
def test_components_prior_seed_motion(motion):
    """A box (2 m long) driving away, 1.5 m then 2.5 m per 0.1 s frame: the static seed (the last centroid, 1 m seed
    radius) loses it at the first 2.5 m step, the constant-velocity seed (``GeometricParams.seed_motion``) keeps it,
    and so does the static seed with the velocity as its fallback."""
    import torch

    from sam4d_model.config import load_config
    from sam4d_model.geometric import GeometricParams
    from sam4d_model.modeling import build_sam4d
    from sam4d_model.tracker import StreamingTracker

    torch.manual_seed(0)
    tr = StreamingTracker(build_sam4d(load_config("sam4d_tiny")), lidar_refine="components",
                          geometric_params=GeometricParams(seed_motion=motion, keep_model_ground=False))
    tr.add_prompt(1, lidar_points=[[10.0, 0.0, -1.0]])
    found = []
    for i, shift in enumerate([0.0, 1.5, 3.0, 5.5, 8.0]):
        pts, inst = _scene(shift=shift)
        mask = tr.step(Frame(pts, [], np.eye(4), timestamp=0.1 * i, index=i)).point_masks[0]
        box = (inst == 1) & ~geo.ground_mask(pts)
        found.append(bool(mask[box].mean() > 0.9 and not mask[inst == 0].any()))
    # the 1.5 m steps are found either way; the 2.5 m ones only with the velocity estimated from the centroids
    assert found == ([True, True, True, False, False] if motion == "static" else [True] * 5), found


def test_velocity_seed_survives_the_frames_a_cpu_node_skips():
    """A box (2 m long) driving at 8 m/s seen at 0 s and 0.2 s, then not until 1.4 s (a CPU node skipped 11 frames,
    as in the demo on a slower machine): the first velocity estimate is taken whole and extrapolated over the gap."""
    import torch

    from sam4d_model.config import load_config
    from sam4d_model.geometric import GeometricParams
    from sam4d_model.modeling import build_sam4d
    from sam4d_model.tracker import StreamingTracker

    torch.manual_seed(0)
    tr = StreamingTracker(build_sam4d(load_config("sam4d_tiny")), lidar_refine="components",
                          geometric_params=GeometricParams(keep_model_ground=False))
    tr.add_prompt(1, lidar_points=[[10.0, 0.0, -1.0]])
    for i, t in enumerate([0.0, 0.2, 1.4]):
        pts, inst = _scene(shift=8.0 * t)
        mask = tr.step(Frame(pts, [], np.eye(4), timestamp=t, index=i)).point_masks[0]
        assert mask[(inst == 1) & ~geo.ground_mask(pts)].mean() > 0.9 and not mask[inst == 0].any(), t


@pytest.mark.parametrize("motion", ["constant_velocity", "static_then_velocity"])
def test_static_seed_first_keeps_a_parked_object_whose_velocity_is_wrong(motion):
    """A parked box with a wrong velocity estimate (the centroid of a partly seen real object jitters) and a
    neighbour 3 m ahead: the constant-velocity seed jumps to the neighbour; ``static_then_velocity`` finds the box
    at its static seed and never asks the velocity."""
    import torch

    from sam4d_model.config import load_config
    from sam4d_model.geometric import GeometricParams
    from sam4d_model.modeling import build_sam4d
    from sam4d_model.tracker import StreamingTracker

    torch.manual_seed(0)
    pts, inst = _scene()
    other = pts[inst == 1] + np.array([3.2, 0.0, 0.0], np.float32)  # x 12.2 .. 14.2: 1.2 m gap, its own component
    pts, inst = np.concatenate([pts, other]), np.r_[inst, np.full(len(other), 2, np.int32)]
    tr = StreamingTracker(build_sam4d(load_config("sam4d_tiny")), lidar_refine="components",
                          geometric_params=GeometricParams(seed_motion=motion, keep_model_ground=False,
                                                           merge_coverage=1.01))  # no model-covered merges
    tr.add_prompt(1, lidar_points=[[10.0, 0.0, -1.0]])
    tr.step(Frame(pts, [], np.eye(4), timestamp=0.0, index=0))
    tr._seed_motion[1] = (0.0, np.array([32.0, 0.0, 0.0]))  # 3.2 m in the next 0.1 s: onto the neighbour
    mask = tr.step(Frame(pts, [], np.eye(4), timestamp=0.1, index=1)).point_masks[0]
    on = 2 if motion == "constant_velocity" else 1
    assert mask[(inst == on) & ~geo.ground_mask(pts)].all() and not mask[inst == 3 - on].any()


@pytest.mark.parametrize("merge_shape", [False, True])
def test_components_prior_joins_the_parts_its_last_mask_covered(merge_shape):
    """A box seen whole, then split in two by a 0.7 m gap (a far object's scan rings hit surfaces set back from each
    other) that the model does not bridge: with ``merge_shape`` the part away from the seed joins because the last
    mask covered it; a neighbour as close to the seed's part, outside the last mask, never does."""
    import torch

    from sam4d_model.config import load_config
    from sam4d_model.geometric import GeometricParams
    from sam4d_model.modeling import build_sam4d
    from sam4d_model.tracker import StreamingTracker

    torch.manual_seed(0)
    gp = GeometricParams(merge_shape=merge_shape, keep_model_ground=False, merge_coverage=1.01)
    tr = StreamingTracker(build_sam4d(load_config("sam4d_tiny")), lidar_refine="components", geometric_params=gp)
    tr.add_prompt(1, lidar_points=[[9.5, 0.0, -1.0]])
    pts, inst = _scene()
    assert tr.step(Frame(pts, [], np.eye(4), timestamp=0.0, index=0)).point_masks[0][inst == 1].mean() > 0.9
    box = pts[:, 0] > 8
    split = ~(box & (pts[:, 0] > 10.2) & (pts[:, 0] < 10.9))  # x 9 .. 10.2 (the seed's) and 10.9 .. 11
    neighbour = _grid((9.0, 9.6), (-1.9, -1.3), (-1.7, -0.3), 0.15).astype(np.float32)  # 0.8 m beside the part
    pts1 = np.concatenate([pts[split], neighbour])
    inst1 = np.r_[inst[split], np.full(len(neighbour), 2, np.int32)]
    mask = tr.step(Frame(pts1, [], np.eye(4), timestamp=0.1, index=1)).point_masks[0]
    near, far = (inst1 == 1) & (pts1[:, 0] < 10.5), (inst1 == 1) & (pts1[:, 0] > 10.5)
    assert mask[near & ~geo.ground_mask(pts1)].all() and not mask[inst1 == 2].any()
    assert mask[far].mean() > 0.9 if merge_shape else not mask[far].any()


@pytest.mark.parametrize("merge_shape", [False, True])
def test_components_prior_does_not_follow_an_object_into_a_wall(merge_shape):
    """A box seen alone, then touching a 20 m wall (one component at 0.6 m linkage): with ``merge_shape`` the mask
    grew by more than ``shape_growth``, so only the points where the box was are kept; without it the wall joins."""
    import torch

    from sam4d_model.config import load_config
    from sam4d_model.geometric import GeometricParams
    from sam4d_model.modeling import build_sam4d
    from sam4d_model.tracker import StreamingTracker

    torch.manual_seed(0)
    gp = GeometricParams(merge_shape=merge_shape, keep_model_ground=False, merge_coverage=1.01)
    tr = StreamingTracker(build_sam4d(load_config("sam4d_tiny")), lidar_refine="components", geometric_params=gp)
    tr.add_prompt(1, lidar_points=[[10.0, 0.0, -1.0]])
    pts, inst = _scene()
    tr.step(Frame(pts, [], np.eye(4), timestamp=0.0, index=0))
    wall = _grid((0.0, 20.0), (0.8, 1.0), (-1.7, 0.5)).astype(np.float32)  # 0.3 m beside the box's side
    pts1, inst1 = np.concatenate([pts, wall]), np.r_[inst, np.full(len(wall), 2, np.int32)]
    mask = tr.step(Frame(pts1, [], np.eye(4), timestamp=0.1, index=1)).point_masks[0]
    assert mask[(inst1 == 1) & ~geo.ground_mask(pts1)].mean() > 0.9
    wall_share = mask[inst1 == 2].mean()
    # kept with the cap: the wall's strip beside the box, within shape_radius of it (2 m of 20 m)
    assert wall_share < 0.12 if merge_shape else wall_share > 0.5, wall_share


def _grid(x, y, z, step=0.2):
    g = np.stack(np.meshgrid(np.arange(*x, step), np.arange(*y, step), np.arange(*z, step), indexing="ij"), -1)
    return g.reshape(-1, 3)


def test_refine_by_coverage_joins_what_the_model_covers():
    """merge_rule='coverage': a component near the clicked one joins when the model covers most of it (an object
    split in two by a gap between scan rings), a neighbour it barely touches does not, however much else the mask
    holds; keep_model_ground gives back the object's bottom that ground removal cut, not ground elsewhere."""
    parts = {"ground": _grid((0, 34), (-6, 8), (0, 0.01)), "bottom": _grid((10, 12), (0, 2), (0.1, 0.2)),
             "low": _grid((10, 12), (0, 2), (0.4, 0.81)), "high": _grid((10, 12), (0, 2), (1.5, 1.71)),
             "neighbour": _grid((13.2, 15), (0, 2), (0.4, 1.21)), "wall": _grid((30, 30.1), (-5, 5), (0.4, 3))}
    pts = np.concatenate(list(parts.values()))
    part = np.concatenate([np.full(len(v), k) for k, v in parts.items()])
    ground = geo.ground_mask(pts)
    assert ground[part == "bottom"].all() and not ground[np.isin(part, ["low", "high", "neighbour"])].any()
    model = np.isin(part, ["bottom", "low", "high", "wall"])
    model[np.flatnonzero(part == "neighbour")[:3]] = True
    model[np.flatnonzero((part == "ground") & (pts[:, 0] > 16))[::50]] = True  # ground far from the object
    seed = np.array([np.flatnonzero(part == "low")[0]])
    out, core = geo.refine_lidar_mask(pts, model, geo.GeometricParams(), seed, ground=ground, with_core=True)
    assert (out == np.isin(part, ["bottom", "low", "high"])).all()  # the defaults
    assert (core == (part == "low")).all()  # the seed's own component: what the floor segments
    share = geo.refine_lidar_mask(pts, model, geo.GeometricParams(merge_rule="share", keep_model_ground=False), seed,
                                  ground=ground)
    assert (share == (part == "low")).all()  # the wall's share of the mask hides the object's upper ring
    with pytest.raises(ValueError, match="merge_rule"):
        geo.GeometricParams(merge_rule="nope")


def test_reprompt_seed_clicks_the_carried_seed_for_the_model():
    """GeometricParams.reprompt_seed: on a frame without a prompt the model gets a LiDAR click on the carried seed
    (its output is what an explicit click there gives), and that frame's memory is stored as tracked, not prompted."""
    import torch

    from sam4d_model.config import load_config
    from sam4d_model.geometric import GeometricParams
    from sam4d_model.modeling import build_sam4d
    from sam4d_model.tracker import StreamingTracker

    torch.manual_seed(0)
    model = build_sam4d(load_config("sam4d_tiny"))
    trackers = [StreamingTracker(model, lidar_refine="components", geometric_params=GeometricParams(reprompt_seed=r))
                for r in (True, False, False)]
    f0, f1 = (Frame(_scene(shift=s)[0], [], np.eye(4), index=i) for i, s in enumerate((0.0, 0.4)))
    for tr in trackers:
        tr.add_prompt(1, lidar_points=[[10.0, 0.0, -1.0]])
        tr.step(f0)
    reprompt, plain, explicit = trackers
    seed, _ = reprompt._carried_seed(1, f1, reprompt._prior_inputs(f1))
    assert seed is not None
    explicit.add_prompt(1, lidar_points=f1.points[seed:seed + 1, :3])
    r_re, r_plain, r_exp = (tr.step(f1) for tr in trackers)
    np.testing.assert_array_equal(r_re.point_scores, r_exp.point_scores)
    assert np.abs(r_re.point_scores - r_plain.point_scores).max() > 1e-4
    assert [e.is_prompted for e in reprompt._memories[1]] == [True, False]
    assert [e.is_prompted for e in explicit._memories[1]] == [True, True]


def _embedded_and_floor_on_the_dev_scene(protocol: str, frames, pr) -> tuple:
    """(embedded model with the node's default components prior, geometric floor) summaries over ``frames`` of the
    dev scene, one LiDAR click per object of its prompts ``pr``, in the same run."""
    from sam4d_model.tools.common import load_model
    from sam4d_model.tracker import StreamingTracker

    model, _ = load_model(None, "cpu")
    got = summarize(evaluate_sequence(frames, lambda e: StreamingTracker(model, max_objects=64, use_ego_motion=e,
                                                                         lidar_refine="components"),
                                      EvalSettings(protocol=protocol, prompt_modality="lidar", max_objects=0),
                                      prompts=pr))
    floor = summarize(evaluate_sequence(frames, lambda e: geo.GeometricTracker(use_ego_motion=e, max_objects=64),
                                        EvalSettings(method="geometric", protocol=protocol, prompt_modality="lidar",
                                                     max_objects=0), prompts=pr))
    return got, floor


@pytest.mark.skipif(not DEV.is_dir(), reason="../shared/realdata/nuscenes_scene-0916 not present")
def test_embedded_model_with_the_prior_beats_the_floor_per_frame_on_the_dev_scene():
    """#13: the embedded model with the node's default components prior, one LiDAR click per object, frame-level,
    against the floor in the same run (2026-12-07: 0.657 vs 0.619; the old share rule gave exactly the floor)."""
    from sam4d_model.data.waymo4dseg import read_sequence

    seq = read_sequence(DEV, "scene-0916")
    pr = load_prompts_file(DEV / "prompts_scene-0916.json")
    frames = {p.frame_idx: (seq.frame(p.frame_idx), seq.labels(p.frame_idx)) for p in pr}
    frames = [frames.get(i, (None, None)) for i in range(max(frames) + 1)]  # only the prompted frames are read
    got, floor = _embedded_and_floor_on_the_dev_scene("frame", frames, pr)
    assert got["n_lidar"] == floor["n_lidar"] == 29
    assert got["lidar_mIoU"] > floor["lidar_mIoU"] + 0.02, (got["lidar_mIoU"], floor["lidar_mIoU"])


@pytest.mark.skipif(not DEV.is_dir(), reason="../shared/realdata/nuscenes_scene-0916 not present")
def test_embedded_model_with_the_prior_beats_the_floor_in_streaming_on_the_dev_scene():
    """#13: streaming from one LiDAR click per object (present frames, 433 object-frames), the embedded model with
    the node's default prior against the floor in the same run (2026-12-07b, seed from the seed's own component:
    0.601 vs 0.593; seeding from the whole mask gave 0.568). About 3 minutes on 2 CPU cores."""
    from sam4d_model.data.waymo4dseg import read_sequence

    seq = read_sequence(DEV, "scene-0916")
    frames = [(seq.frame(i), seq.labels(i)) for i in range(len(seq))]
    got, floor = _embedded_and_floor_on_the_dev_scene("stream", frames,
                                                      load_prompts_file(DEV / "prompts_scene-0916.json"))
    assert got["n_lidar"] == floor["n_lidar"] == 433
    assert got["lidar_mIoU"] > floor["lidar_mIoU"], (got["lidar_mIoU"], floor["lidar_mIoU"])
