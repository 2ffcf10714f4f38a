# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""A small time-interpolated transform buffer (pure numpy), a stand-in for tf2 in offline tools.

Frames form a tree (each child has exactly one parent). ``lookup(target, source, stamp_ns)`` returns the 4x4 matrix
``T_target_source`` that maps points expressed in ``source`` into ``target`` (tf2's ``lookup_transform`` convention).
Dynamic edges are interpolated (linear translation, slerp rotation) between the two samples around ``stamp_ns``;
asking outside a dynamic edge's time range raises :class:`ExtrapolationError` (unless within ``tolerance_ns``).
Static edges hold for all times. Stamps are integer nanoseconds.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from .geometry import invert_transform, make_transform, matrix_to_quat, slerp


class TFError(LookupError):
    """Base class of transform lookup errors."""


class ConnectivityError(TFError):
    """The two frames are not connected in the transform tree (or a frame is unknown)."""


class ExtrapolationError(TFError):
    """The requested time is outside the buffered time range of a dynamic transform."""


@dataclass
class _Edge:
    parent: str
    static: bool
    stamps: List[int] = field(default_factory=list)
    trans: List[np.ndarray] = field(default_factory=list)
    quats: List[np.ndarray] = field(default_factory=list)
    sorted: bool = True


class TFBuffer:
    """Time-interpolated transform tree.

    Args:
        cache_time_ns: drop dynamic samples older than the newest one minus this (``None`` keeps everything).
        tolerance_ns: allow lookups this far outside a dynamic edge's range (clamped to the nearest sample).

    """

    def __init__(self, cache_time_ns: Optional[int] = None, tolerance_ns: int = 0):
        self._edges: Dict[str, _Edge] = {}
        self.cache_time_ns = cache_time_ns
        self.tolerance_ns = int(tolerance_ns)

    # ------------------------------------------------------------------ insertion
    def set_transform(self, parent: str, child: str, stamp_ns: int, transform, static: bool = False) -> None:
        """Add ``T_parent_child`` at ``stamp_ns``; ``transform`` is a 4x4 matrix or ``(translation, quat_xyzw)``."""
        if not parent or not child or parent == child:
            raise ValueError(f"invalid transform {parent!r} -> {child!r}")
        if isinstance(transform, (tuple, list)) and len(transform) == 2:
            t = np.asarray(transform[0], dtype=np.float64).reshape(3)
            q = np.asarray(transform[1], dtype=np.float64).reshape(4)
            q = q / np.linalg.norm(q)
        else:
            m = np.asarray(transform, dtype=np.float64)
            if m.shape != (4, 4):
                raise ValueError(f"transform must be 4x4, got {m.shape}")
            t, q = m[:3, 3].copy(), matrix_to_quat(m)
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(q))):
            raise ValueError(f"non-finite transform {parent!r} -> {child!r}")
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent or edge.static != static:
            # tf2 semantics: a child re-parented (or switched static/dynamic) replaces the old edge
            edge = _Edge(parent=parent, static=static)
            self._edges[child] = edge
        if static:
            edge.stamps, edge.trans, edge.quats = [int(stamp_ns)], [t], [q]
            return
        stamp_ns = int(stamp_ns)
        if edge.stamps and stamp_ns <= edge.stamps[-1]:
            if stamp_ns in edge.stamps:  # duplicate stamp: replace
                i = edge.stamps.index(stamp_ns)
                edge.trans[i], edge.quats[i] = t, q
                return
            edge.sorted = False
        edge.stamps.append(stamp_ns)
        edge.trans.append(t)
        edge.quats.append(q)
        if self.cache_time_ns is not None and edge.sorted and edge.stamps[0] < stamp_ns - self.cache_time_ns:
            k = bisect.bisect_left(edge.stamps, stamp_ns - self.cache_time_ns)
            del edge.stamps[:k], edge.trans[:k], edge.quats[:k]

    def set_transform_msg(self, msg, static: bool = False) -> None:
        """Add a ``geometry_msgs/TransformStamped`` (rosbags or rclpy message object)."""
        s = msg.header.stamp
        tr = msg.transform
        self.set_transform(
            msg.header.frame_id.lstrip("/"), msg.child_frame_id.lstrip("/"),
            int(s.sec) * 1_000_000_000 + int(s.nanosec),
            ((tr.translation.x, tr.translation.y, tr.translation.z),
             (tr.rotation.x, tr.rotation.y, tr.rotation.z, tr.rotation.w)), static=static)

    # ------------------------------------------------------------------ queries
    @property
    def frames(self) -> List[str]:
        """All known frame names."""
        names = set(self._edges)
        names.update(e.parent for e in self._edges.values())
        return sorted(names)

    def parent_of(self, frame: str) -> Optional[str]:
        """Parent frame of ``frame`` (``None`` for a root or unknown frame)."""
        e = self._edges.get(frame)
        return e.parent if e else None

    def time_range(self, child: str) -> Optional[tuple[int, int]]:
        """``(first, last)`` stamp of the dynamic edge above ``child``; ``None`` for static/unknown edges."""
        e = self._edges.get(child)
        if e is None or e.static or not e.stamps:
            return None
        self._sort(e)
        return e.stamps[0], e.stamps[-1]

    def _sort(self, e: _Edge) -> None:
        if not e.sorted:
            order = np.argsort(e.stamps, kind="stable")
            e.stamps = [e.stamps[i] for i in order]
            e.trans = [e.trans[i] for i in order]
            e.quats = [e.quats[i] for i in order]
            e.sorted = True

    def _edge_at(self, child: str, stamp_ns: Optional[int]) -> np.ndarray:
        e = self._edges[child]
        if e.static:
            return make_transform(e.quats[0], e.trans[0])
        self._sort(e)
        st = e.stamps
        if stamp_ns is None:
            return make_transform(e.quats[-1], e.trans[-1])
        i = bisect.bisect_left(st, stamp_ns)
        if i < len(st) and st[i] == stamp_ns:
            return make_transform(e.quats[i], e.trans[i])
        if i == 0 or i == len(st):
            j = 0 if i == 0 else len(st) - 1
            if abs(st[j] - stamp_ns) <= self.tolerance_ns:
                return make_transform(e.quats[j], e.trans[j])
            raise ExtrapolationError(
                f"lookup of {e.parent!r} -> {child!r} at {stamp_ns * 1e-9:.6f} s would extrapolate: "
                f"data from {st[0] * 1e-9:.6f} s to {st[-1] * 1e-9:.6f} s")
        t0, t1 = st[i - 1], st[i]
        f = (stamp_ns - t0) / (t1 - t0)
        p = e.trans[i - 1] + f * (e.trans[i] - e.trans[i - 1])
        return make_transform(slerp(e.quats[i - 1], e.quats[i], f), p)

    def _chain(self, frame: str) -> List[str]:
        chain = [frame]
        seen = {frame}
        while chain[-1] in self._edges:
            p = self._edges[chain[-1]].parent
            if p in seen:
                raise ConnectivityError(f"transform loop at {p!r}")
            chain.append(p)
            seen.add(p)
        return chain

    def _latest_common(self, frames: List[str]) -> Optional[int]:
        for f in frames:
            if f in self._edges:
                self._sort(self._edges[f])
        lasts = [self._edges[f].stamps[-1] for f in frames if f in self._edges and not self._edges[f].static]
        return min(lasts) if lasts else None

    def lookup(self, target: str, source: str, stamp_ns: Optional[int] = None) -> np.ndarray:
        """4x4 ``T_target_source`` at ``stamp_ns`` (``None``: the latest time all involved edges share)."""
        target, source = target.lstrip("/"), source.lstrip("/")
        if target == source:
            if target not in self.frames:
                raise ConnectivityError(f"unknown frame {target!r}")
            return np.eye(4)
        ca, cb = self._chain(source), self._chain(target)
        common = set(ca) & set(cb)
        if not common:
            known = self.frames
            for f in (source, target):
                if f not in known:
                    raise ConnectivityError(f"unknown frame {f!r} (known: {known})")
            raise ConnectivityError(f"frames {source!r} and {target!r} are not connected")
        root = next(f for f in ca if f in common)
        up_a = ca[: ca.index(root)]  # children on the way from source up to root
        up_b = cb[: cb.index(root)]
        if stamp_ns is None:
            stamp_ns = self._latest_common(up_a + up_b)
        t_root_source = np.eye(4)
        for child in up_a:
            t_root_source = self._edge_at(child, stamp_ns) @ t_root_source
        t_root_target = np.eye(4)
        for child in up_b:
            t_root_target = self._edge_at(child, stamp_ns) @ t_root_target
        return invert_transform(t_root_target) @ t_root_source

    def can_transform(self, target: str, source: str, stamp_ns: Optional[int] = None) -> bool:
        """Whether :meth:`lookup` would succeed."""
        try:
            self.lookup(target, source, stamp_ns)
            return True
        except TFError:
            return False
