# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Track health: per-object events (added, lost, reappeared, removed) and a confidence, from frame results.

ROS-free (used by the pipeline, so the live node and the bag tools see the same events). An object is *present* on a
frame when its published mask holds at least one point or pixel (the model suppresses the masks of objects whose
object score says absent, and the node's geometric prior empties those it cannot find, so this is what a user
sees); it is *lost* after ``lost_after`` consecutive absent frames and *reappears* after ``found_after``
consecutive present frames. Its confidence is an exponential moving average (weight ``alpha`` on the newest frame)
of the object score on present frames and 0 on absent ones, so a flickering object has a low confidence even when
its score is high.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional

ADDED, REMOVED, LOST, REAPPEARED = "object_added", "object_removed", "object_lost", "object_reappeared"
#: event kinds in the order of the ``sam4d_ros/ObjectEvent`` constants
KINDS = (ADDED, REMOVED, LOST, REAPPEARED)


@dataclass
class ObjectEvent:
    """One change of an object's track."""

    obj_id: int
    kind: str  # one of KINDS
    stamp_ns: int
    score: float = 0.0
    reason: str = ""


@dataclass
class _Track:
    lost: bool = False
    absent_run: int = 0
    present_run: int = 0
    confidence: float = 0.0


class TrackHealth:
    """Turns per-frame object summaries into events and confidences (call from one thread)."""

    def __init__(self, lost_after: int = 3, found_after: int = 2, alpha: float = 0.3):
        if lost_after < 1 or found_after < 1:
            raise ValueError("lost_after and found_after must be >= 1")
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        self.lost_after = int(lost_after)
        self.found_after = int(found_after)
        self.alpha = float(alpha)
        self._tracks: Dict[int, _Track] = {}

    def confidence(self, obj_id: int) -> float:
        """The object's confidence (0 for an unknown object)."""
        t = self._tracks.get(int(obj_id))
        return 0.0 if t is None else t.confidence

    def is_lost(self, obj_id: int) -> bool:
        """Whether the object is currently lost."""
        t = self._tracks.get(int(obj_id))
        return bool(t is not None and t.lost)

    def update(self, stamp_ns: int, objects: Iterable) -> List[ObjectEvent]:
        """Events of one processed frame; ``objects`` have ``obj_id``, ``score``, ``num_points``, ``num_pixels``.

        Objects seen for the first time give ``object_added``; tracked objects missing from ``objects`` are not
        touched (use :meth:`removed`).
        """
        events: List[ObjectEvent] = []
        for o in objects:
            oid = int(o.obj_id)
            score = float(o.score)
            present = int(o.num_points) > 0 or int(o.num_pixels) > 0
            t = self._tracks.get(oid)
            if t is None:
                t = self._tracks[oid] = _Track()
                events.append(ObjectEvent(oid, ADDED, stamp_ns, score))
            t.confidence = self.alpha * (score if present else 0.0) + (1.0 - self.alpha) * t.confidence
            if present:
                t.present_run += 1
                t.absent_run = 0
                if t.lost and t.present_run >= self.found_after:
                    t.lost = False
                    events.append(ObjectEvent(oid, REAPPEARED, stamp_ns, score,
                                              f"present on {t.present_run} frames"))
            else:
                t.absent_run += 1
                t.present_run = 0
                if not t.lost and t.absent_run >= self.lost_after:
                    t.lost = True
                    events.append(ObjectEvent(oid, LOST, stamp_ns, score,
                                              f"empty mask on {t.absent_run} frames (object score {score:.2f})"))
        return events

    def removed(self, obj_id: int, stamp_ns: int, reason: str) -> Optional[ObjectEvent]:
        """``object_removed`` for a tracked object (``None`` if it was never seen in a frame)."""
        if self._tracks.pop(int(obj_id), None) is None:
            return None
        return ObjectEvent(int(obj_id), REMOVED, stamp_ns, 0.0, reason)

    def removed_all(self, stamp_ns: int, reason: str) -> List[ObjectEvent]:
        """``object_removed`` for every tracked object (a reset)."""
        return [e for e in (self.removed(o, stamp_ns, reason) for o in list(self._tracks)) if e is not None]
