# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Stage 4: cross-modal masklet fusion on the voxel map.

1. **Votes**: every visible observation of an element counts (``n_obs``); observations inside a mask vote for that
   masklet. The vote fraction of masklet ``m`` on element ``e`` is ``votes(e, m) / n_obs(e)``.
2. **Ground rule set**: masklets whose support is mostly ground elements and flat (road, sidewalk, lane markings),
   or whose category names a ground class, are dropped; other masklets do not vote on ground elements (this removes
   the ground that dilated masks leak onto below objects).
3. **Noise removal**: per masklet, elements are clustered DBSCAN-style (link distance ``cluster_eps``; static
   elements together, dynamic elements per frame); clusters with little vote mass are noise. Each kept static
   cluster becomes a *unit* (so a masklet that switched identity splits into its objects); a masklet's kept dynamic
   clusters form one unit.
4. **Merging**: units whose cores (elements where they hold ``>= core_frac`` of the votes) overlap are merged into
   one global object (across cameras, time and identity switches).
5. **Labelling**: each element goes to the object with the strongest vote if its fraction is ``>= label_frac``,
   is *ignore* (``-1``) when ``>= ignore_frac``, otherwise background; never-observed elements get
   ``uncovered_label``. Objects get a score (mean vote fraction) and a volume; weak objects are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .config import EngineConfig
from .reconstruction import VoxelMap


@dataclass
class Observations:
    """What stage 3 produced for a whole drive."""

    n_obs: np.ndarray  # (E,) int32 visible observations per element (all cameras and frames)
    pos_e: np.ndarray  # (K,) element of each in-mask observation
    pos_m: np.ndarray  # (K,) masklet index
    pos_t: np.ndarray  # (K,) frame
    masklets: List[Tuple[str, int]]  # masklet index -> (camera, local id)
    categories: Dict[int, str] = field(default_factory=dict)  # masklet index -> category
    vis_e: Optional[np.ndarray] = None  # (V,) every visible observation: element ...
    vis_key: Optional[np.ndarray] = None  # (V,) ... and camera_index * num_frames + frame
    cameras: List[str] = field(default_factory=list)
    num_frames: int = 0
    present: Optional[np.ndarray] = None  # (P, 2) (masklet index, frame) for every mask that exists


@dataclass
class FusionResult:
    """Per-element labels and the object table."""

    element_label: np.ndarray  # (E,) int32: >0 object id, 0 background, -1 ignore / uncovered
    element_frac: np.ndarray  # (E,) float32 vote fraction of the assigned label
    objects: Dict[int, dict]
    masklet_object: Dict[int, int]  # masklet index -> dominant object id (0 = none)
    stats: Dict[str, float] = field(default_factory=dict)


def components(xyz: np.ndarray, eps: float) -> np.ndarray:
    """DBSCAN-style connected components (min_samples = 1) with link distance ~``eps`` on a cell grid."""
    if len(xyz) == 0:
        return np.zeros(0, np.int64)
    cells = np.floor(xyz / eps).astype(np.int64)
    uc, inv = np.unique(cells, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    if len(uc) == 1:
        return np.zeros(len(xyz), np.int64)
    pairs = cKDTree(uc.astype(np.float64)).query_pairs(1.75, output_type="ndarray")
    g = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(len(uc), len(uc)))
    _, lab = connected_components(g, directed=False)
    return lab[inv].astype(np.int64)


def _aggregate(keys: np.ndarray, weights: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    u, inv = np.unique(keys, return_inverse=True)
    c = np.bincount(inv.reshape(-1), weights=weights, minlength=len(u))
    return u, c


def _is_ground_category(cat: Optional[str], cfg: EngineConfig) -> bool:
    if not cat:
        return False
    c = cat.lower()
    return any(g in c for g in cfg.ground_categories)


def _link_components(xyz: np.ndarray, frame: np.ndarray, cfg: EngineConfig) -> np.ndarray:
    """Spatio-temporal components of one masklet's elements (``frame`` -1 = static).

    Static elements link within ``cluster_eps``; dynamic ones within ``cluster_eps`` in their frame, to static ones
    within ``cluster_eps``, and to dynamic ones of the previous ``max_link_gap`` frames within ``cluster_eps`` plus
    ``switch_link_per_gap`` per frame of time difference (object motion).
    """
    n = len(xyz)
    if n == 0:
        return np.zeros(0, np.int64)
    pts = xyz.astype(np.float64).copy()
    pts[:, 0] += (frame + 1) * 1.0e5  # static elements together, dynamic ones per frame
    cells = np.floor(pts / cfg.cluster_eps).astype(np.int64)
    uc, inv = np.unique(cells, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    rows: List[np.ndarray] = []
    cols: List[np.ndarray] = []
    if len(uc) > 1:
        pairs = cKDTree(uc.astype(np.float64)).query_pairs(1.75, output_type="ndarray")
        rows.append(pairs[:, 0])
        cols.append(pairs[:, 1])
    dyn = np.flatnonzero(frame >= 0)
    if len(dyn):
        st = np.flatnonzero(frame < 0)
        if len(st):
            d, j = cKDTree(xyz[st]).query(xyz[dyn], k=1, distance_upper_bound=cfg.cluster_eps)
            ok = np.isfinite(d)
            rows.append(inv[dyn[ok]])
            cols.append(inv[st[j[ok]]])
        fr = frame[dyn]
        frames = np.unique(fr)
        trees = {}
        for t in frames:
            trees[t] = (dyn[fr == t], cKDTree(xyz[dyn[fr == t]]))
            for dt in range(1, cfg.max_link_gap + 2):
                if t - dt not in trees:
                    continue
                ia, ta = trees[t - dt]
                ib, tb = trees[t]
                r = cfg.cluster_eps + cfg.switch_link_per_gap * dt
                d, j = ta.query(xyz[ib], k=1, distance_upper_bound=r)
                ok = np.isfinite(d)
                rows.append(inv[ib[ok]])
                cols.append(inv[ia[j[ok]]])
            trees.pop(t - cfg.max_link_gap - 1, None)
    if rows:
        r_, c_ = np.concatenate(rows), np.concatenate(cols)
        g = coo_matrix((np.ones(len(r_), np.int8), (r_, c_)), shape=(len(uc), len(uc)))
        _, lab = connected_components(g, directed=False)
    else:
        lab = np.arange(len(uc))
    return lab[inv].astype(np.int64)


def _touch(a: np.ndarray, b: np.ndarray, dist: float) -> bool:
    if len(a) == 0 or len(b) == 0:
        return False
    d, _ = cKDTree(a).query(b, k=1, distance_upper_bound=dist)
    return bool(np.isfinite(d).sum() >= min(3, len(b)))


class _VisIndex:
    """Visible observations of a set of elements, to count them under a (owner x camera-frame) presence table."""

    def __init__(self, obs: Observations, elems: np.ndarray, n_el: int, n_ct: int):
        need = np.zeros(n_el, bool)
        need[elems] = True
        if obs.vis_e is None:  # no visibility records: every observation counts
            self.e = None
            self.n_obs = obs.n_obs
            return
        sel = need[obs.vis_e]
        e = obs.vis_e[sel].astype(np.int64)
        order = np.argsort(e * n_ct + obs.vis_key[sel], kind="stable")
        self.e, self.key = e[order], obs.vis_key[sel][order].astype(np.int64)
        self.ptr = np.searchsorted(self.e, np.arange(n_el + 1))

    def count(self, elems: np.ndarray, table: np.ndarray, owner: np.ndarray) -> np.ndarray:
        """For each (element, owner) pair: visible observations at camera-frames where ``table[owner]`` is set."""
        if self.e is None:
            return self.n_obs[elems].astype(np.int64)
        lo, hi = self.ptr[elems], self.ptr[elems + 1]
        n = hi - lo
        rep = np.repeat(np.arange(len(elems)), n)
        idx = np.repeat(lo - np.cumsum(np.r_[0, n[:-1]]), n) + np.arange(int(n.sum()))
        hit = table[owner[rep], self.key[idx]]
        return np.bincount(rep, weights=hit, minlength=len(elems)).astype(np.int64)


def fuse(vmap: VoxelMap, obs: Observations, cfg: EngineConfig, debug: Optional[dict] = None) -> FusionResult:
    """Run stage 4 (see the module docstring); ``debug`` (a dict) receives intermediate arrays for diagnostics."""
    n_el = vmap.num_elements
    n_m = max(1, len(obs.masklets))
    n_obs = obs.n_obs.astype(np.int64)
    fr_el = vmap.element_frame
    stats: Dict[str, float] = {}
    pe, pm, pt = obs.pos_e.astype(np.int64), obs.pos_m.astype(np.int64), obs.pos_t.astype(np.int64)
    # ---- 1. ground rule set on masklets; other masklets do not vote on ground elements
    gr = vmap.element_ground[pe]
    m_mass = np.bincount(pm, minlength=n_m).astype(np.float64)
    m_ground = np.bincount(pm, weights=gr, minlength=n_m) / np.maximum(m_mass, 1e-9)
    ground_masklet = np.zeros(n_m, bool)
    for m in range(len(obs.masklets)):
        if _is_ground_category(obs.categories.get(m), cfg):
            ground_masklet[m] = True
        elif m_ground[m] >= cfg.ground_rule_fraction:
            z = vmap.element_xyz[pe[pm == m], 2]
            if len(z) == 0 or np.percentile(z, 95) - np.percentile(z, 5) <= cfg.ground_rule_max_height:
                ground_masklet[m] = True
    keep = ~ground_masklet[pm]
    if not cfg.ground_votes:
        keep &= ~gr
    pe, pm, pt = pe[keep], pm[keep], pt[keep]
    stats["ground_masklets"] = float(ground_masklet[:len(obs.masklets)].sum())
    # ---- 2. votes per (element, masklet); spatio-temporal components per masklet -> units; noise removal
    key, cnt = _aggregate(pm * n_el + pe)
    vm, ve = key // n_el, key % n_el
    bounds = np.searchsorted(vm, np.arange(n_m + 1))
    pidx = np.searchsorted(key, pm * n_el + pe)  # aggregated entry of each observation
    porder = np.argsort(pidx, kind="stable")
    pidx_s, pt_s = pidx[porder], pt[porder]
    vu = np.full(len(ve), -1, np.int64)
    unit_masklet: List[int] = []
    for m in range(len(obs.masklets)):
        a, b = bounds[m], bounds[m + 1]
        if a == b:
            continue
        e = ve[a:b]
        comp = _link_components(vmap.element_xyz[e], fr_el[e], cfg)
        cu, cmass = _aggregate(comp, cnt[a:b])
        ci = np.searchsorted(cu, comp)
        pa, pb = np.searchsorted(pidx_s, a), np.searchsorted(pidx_s, b)
        cf = np.unique(ci[pidx_s[pa:pb] - a] * (obs.num_frames + 1) + pt_s[pa:pb]) // (obs.num_frames + 1)
        cframes = np.bincount(cf, minlength=len(cu))
        # noise: little vote mass *and* short-lived compared with the masklet's main part (a short identity switch
        # onto a big object has mass but few frames; a leak has few votes)
        kc = (cmass >= cfg.cluster_keep * cmass.max()) | (cframes >= cfg.cluster_keep_frames * cframes.max())
        cid = np.full(len(cu), -1, np.int64)
        cid[kc] = len(unit_masklet) + np.arange(int(kc.sum()))
        unit_masklet.extend([m] * int(kc.sum()))
        vu[a:b] = cid[ci]
    ok = vu >= 0
    stats["noise_votes_removed"] = float(cnt[~ok].sum())
    # time span of each unit (from its observations)
    n_u = len(unit_masklet)
    stats["units"] = float(n_u)
    pu = vu[np.searchsorted(key, pm * n_el + pe)]
    t0 = np.full(n_u, np.iinfo(np.int64).max, np.int64)
    t1 = np.full(n_u, -1, np.int64)
    sel = pu >= 0
    np.minimum.at(t0, pu[sel], pt[sel])
    np.maximum.at(t1, pu[sel], pt[sel])
    ve, vu, cnt = ve[ok], vu[ok], cnt[ok]
    # ---- 3. cores: elements a unit labels in >= core_frac of the frames in which it could (its camera, its frames
    #         with a mask, inside its time span) and with >= core_dominance of the strongest unit's votes there
    cam_of = {c: i for i, c in enumerate(obs.cameras)}
    n_ct = max(1, len(obs.cameras)) * max(1, obs.num_frames)
    u_cam = np.array([cam_of.get(obs.masklets[m][0], 0) for m in unit_masklet], np.int64)
    pres = obs.present if obs.present is not None else np.stack([pm, pt], 1)
    u_pres = np.zeros((n_u, n_ct), bool)
    m_units: Dict[int, List[int]] = {}
    for u, m in enumerate(unit_masklet):
        m_units.setdefault(m, []).append(u)
    for m, t in np.unique(pres, axis=0).tolist() if len(pres) else []:
        for u in m_units.get(int(m), []):
            if t0[u] <= t <= t1[u]:
                u_pres[u, u_cam[u] * obs.num_frames + t] = True
    vis = _VisIndex(obs, ve, n_el, n_ct)
    frac_u = cnt / np.maximum(vis.count(ve, u_pres, vu), 1)
    best = np.zeros(n_el)
    np.maximum.at(best, ve, cnt)
    core = (frac_u >= cfg.core_frac) & (cnt >= cfg.core_dominance * best[ve])
    # ---- 4. merge units: shared cores, and dynamic units that hand over in time while touching
    rows: List[np.ndarray] = []
    cols: List[np.ndarray] = []
    if n_u:
        inc = csr_matrix((np.ones(int(core.sum())), (vu[core], ve[core])), shape=(n_u, n_el))
        size = np.asarray(inc.sum(1)).reshape(-1)
        ov = (inc @ inc.T).tocoo()
        sel = (ov.row < ov.col) & (ov.data >= cfg.merge_min) & (ov.data >= cfg.merge_overlap * np.maximum(
            np.minimum(size[ov.row], size[ov.col]), 1))
        rows.append(ov.row[sel])
        cols.append(ov.col[sel])
        dyn_mass = np.bincount(vu, weights=cnt * (fr_el[ve] >= 0), minlength=n_u)
        tot_mass = np.bincount(vu, weights=cnt, minlength=n_u)
        dyn_u = np.flatnonzero((dyn_mass > 0.5 * np.maximum(tot_mass, 1e-9)) & (tot_mass >= cfg.merge_min))
        if len(dyn_u) > 1:
            order = np.argsort(vu, kind="stable")
            ub = np.searchsorted(vu[order], np.arange(n_u + 1))

            def end_set(u, t):
                e = ve[order[ub[u]:ub[u + 1]]]
                return vmap.element_xyz[e[fr_el[e] == t]]

            link = []
            for i in dyn_u:
                for j in dyn_u:
                    gap = t0[j] - t1[i] - 1
                    reach = cfg.cluster_eps + cfg.switch_link_per_gap * (gap + 1)
                    if unit_masklet[i] != unit_masklet[j] and 0 <= gap <= cfg.max_link_gap and _touch(
                            end_set(i, t1[i]), end_set(j, t0[j]), reach):
                        link.append((i, j))
            if link:
                lk = np.array(link)
                rows.append(lk[:, 0])
                cols.append(lk[:, 1])
        r_, c_ = np.concatenate(rows), np.concatenate(cols)
        g = coo_matrix((np.ones(len(r_)), (r_, c_)), shape=(n_u, n_u))
        _, unit_group = connected_components(g, directed=False)
    else:
        unit_group = np.zeros(0, np.int64)

    # ---- 6. label elements: strongest object vote
    n_g = int(unit_group.max()) + 1 if n_u else 0
    grp = unit_group[vu] if n_u else np.zeros(0, np.int64)
    gkey, gcnt = _aggregate(ve * max(n_g, 1) + grp, cnt)
    ge, gg = gkey // max(n_g, 1), gkey % max(n_g, 1)
    order = np.lexsort((gg, -gcnt, ge))  # per element: strongest first, ties to the lower group
    ge, gg, gcnt = ge[order], gg[order], gcnt[order]
    first = np.r_[True, ge[1:] != ge[:-1]] if len(ge) else np.zeros(0, bool)
    be, bg, bc = ge[first], gg[first], gcnt[first]
    g_pres = np.zeros((max(n_g, 1), n_ct), bool)
    if n_u:
        np.logical_or.at(g_pres, unit_group, u_pres)
    bfrac = bc / np.maximum(vis.count(be, g_pres, bg), 1)
    label = np.zeros(n_el, np.int64)
    efrac = np.zeros(n_el, np.float32)
    lab_sel = bfrac >= cfg.label_frac
    label[be[lab_sel]] = bg[lab_sel] + 1
    ign = (bfrac >= cfg.ignore_frac) & ~lab_sel
    label[be[ign]] = -1
    efrac[be] = bfrac
    # ---- objects: score, size, drop weak ones; renumber deterministically
    objects: Dict[int, dict] = {}
    pos = label > 0
    npts = vmap.element_npts.astype(np.int64)
    g_pts = np.bincount(label[pos] - 1, weights=npts[pos], minlength=n_g)
    g_score = np.bincount(label[pos] - 1, weights=efrac[pos] * npts[pos], minlength=n_g) / np.maximum(g_pts, 1)
    g_static = np.bincount(label[pos] - 1, weights=(fr_el[pos] < 0), minlength=n_g)
    g_dyn = np.bincount(label[pos] - 1, weights=(fr_el[pos] >= 0), minlength=n_g)
    good = (g_pts >= cfg.min_object_points) & (g_score >= cfg.min_object_score)
    masklets_of: Dict[int, List[int]] = {}
    for u, gi in enumerate(unit_group):
        masklets_of.setdefault(int(gi), []).append(unit_masklet[u])
    good_ids = [gi for gi in range(n_g) if good[gi]]
    good_ids.sort(key=lambda gi: min(obs.masklets[m] for m in masklets_of[gi]))
    remap = np.zeros(n_g + 1, np.int64)  # index gi + 1 -> new id (0 = dropped)
    for new, gi in enumerate(good_ids, 1):
        remap[gi + 1] = new
        ms = sorted(set(masklets_of[gi]))
        n_dyn_frames = max(1, len(np.unique(fr_el[(label == gi + 1) & (fr_el >= 0)])))
        cats = [obs.categories[m] for m in ms if m in obs.categories]
        objects[new] = {
            "object_id": new, "score": round(float(g_score[gi]), 4), "num_points": int(g_pts[gi]),
            "dynamic": bool(g_dyn[gi] > g_static[gi]),
            "volume_m3": round(float((g_static[gi] + g_dyn[gi] / n_dyn_frames) * vmap.voxel_size ** 3), 4),
            "semantic": max(sorted(set(cats)), key=cats.count) if cats else "unknown",
            "masklets": [[obs.masklets[m][0], int(obs.masklets[m][1])] for m in ms],
        }
    dropped = (label > 0) & (remap[np.maximum(label, 0)] == 0)
    label = np.where(label > 0, remap[np.maximum(label, 0)], label)
    label[dropped] = 0
    stats["ignored_elements"] = float((label == -1).sum())
    label[n_obs == 0] = cfg.uncovered_label
    # dominant object of each masklet (for image masks without LiDAR support)
    masklet_object: Dict[int, int] = {}
    if len(ve):
        vm = np.array(unit_masklet, np.int64)[vu]
        lv = label[ve]
        sel = lv > 0
        k1 = len(objects) + 1
        mk, mc = _aggregate(vm[sel] * k1 + lv[sel], cnt[sel])
        for k, c in sorted(zip(mk.tolist(), mc.tolist()), key=lambda x: (-x[1], x[0])):
            masklet_object.setdefault(int(k // k1), int(k % k1))
    stats["objects"] = float(len(objects))
    if debug is not None:
        debug.update(ve=ve, vu=vu, cnt=cnt, core=core, unit_group=unit_group, unit_masklet=unit_masklet, t0=t0, t1=t1,
                     label=label, efrac=efrac)
    return FusionResult(label.astype(np.int32), efrac, objects, masklet_object, stats)


def mask_to_object(obs: Observations, element_label: np.ndarray, num_frames: int) -> Dict[Tuple[int, int], int]:
    """``(masklet index, frame) -> object id``: majority label of the elements a mask saw in that frame."""
    lab = element_label[obs.pos_e]
    sel = lab > 0
    if not sel.any():
        return {}
    n_lab = int(lab.max()) + 1
    key = (obs.pos_m[sel].astype(np.int64) * num_frames + obs.pos_t[sel]) * n_lab + lab[sel]
    k, c = _aggregate(key)
    order = np.lexsort((-c, k // n_lab))
    out: Dict[Tuple[int, int], int] = {}
    for kk in k[order].tolist():
        mt = kk // n_lab
        out.setdefault((int(mt // num_frames), int(mt % num_frames)), int(kk % n_lab))
    return out
