# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""LiDAR-driven camera/LiDAR pairing with bounded queues (pure Python, no ROS).

Each cloud is paired with the image of each camera nearest in time within ``tolerance_ns``. A cloud waits for a
possibly closer later image only until an image at or after its stamp arrives, or ``max_wait_ns`` of wall time
has passed; then it is paired or dropped as *unpaired* (counted). Paired frames go into a ready queue of depth
``queue_size`` (1-2): when inference is slower than the sensors the oldest waiting frame is dropped (counted as
*skipped*), so the worker always gets the newest data and latency does not grow.

Also counted: duplicate clouds (same stamp as the previous one) and out-of-order clouds (older than the newest
cloud already accepted, by less than the time-jump threshold that the node handles separately).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple


@dataclass
class SyncedFrame:
    """A cloud and, per camera (in configured order), the image paired with it."""

    cloud_stamp_ns: int
    cloud: Any
    images: List[Tuple[int, Any]]  # (stamp_ns, msg) per camera
    received_wall: float = 0.0


@dataclass
class SyncCounters:
    """Counters of everything that was not processed, and why."""

    clouds: int = 0
    images: int = 0
    paired: int = 0
    unpaired: int = 0
    skipped: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    extra: Dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> Dict[str, int]:
        d = {k: v for k, v in self.__dict__.items() if k != "extra"}
        d.update(self.extra)
        return d


class LidarDrivenSync:
    """Pair each cloud with the nearest image of every camera; newest-wins ready queue.

    Thread-safe: ``add_image``/``add_cloud`` from subscription callbacks, ``get`` from the worker thread.
    """

    def __init__(self, num_cameras: int = 1, tolerance_ns: int = 50_000_000, max_wait_ns: int = 100_000_000,
                 queue_size: int = 1, image_buffer: int = 10, pending_clouds: int = 2,
                 clock: Callable[[], float] = time.monotonic, jump_ns: int = 1_000_000_000):
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        self.num_cameras = int(num_cameras)
        self.tolerance_ns = int(tolerance_ns)
        self.max_wait_ns = int(max_wait_ns)
        self.queue_size = int(queue_size)
        self.jump_ns = max(int(jump_ns), self.tolerance_ns)
        self._clock = clock
        self._images: List[Deque[Tuple[int, Any]]] = [deque(maxlen=image_buffer) for _ in range(self.num_cameras)]
        self._pending: Deque[Tuple[int, Any, float]] = deque()
        self._pending_max = max(1, pending_clouds)
        self._ready: Deque[SyncedFrame] = deque()
        self._last_cloud_ns: Optional[int] = None
        self._cond = threading.Condition()
        self.counters = SyncCounters()

    # ------------------------------------------------------------------ input
    def add_image(self, cam: int, stamp_ns: int, msg: Any) -> None:
        """Buffer an image of camera ``cam`` (kept sorted by stamp; duplicates replace the earlier one)."""
        with self._cond:
            self.counters.images += 1
            buf = self._images[cam]
            if buf and stamp_ns <= buf[-1][0]:
                items = [it for it in buf if it[0] != stamp_ns] + [(stamp_ns, msg)]
                items.sort(key=lambda it: it[0])
                buf.clear()
                buf.extend(items[-buf.maxlen:])
            else:
                buf.append((stamp_ns, msg))
            self._resolve()

    def add_cloud(self, stamp_ns: int, msg: Any) -> str:
        """Offer a cloud; returns ``"ok"``, ``"duplicate"`` or ``"out_of_order"`` (the latter two are dropped)."""
        with self._cond:
            self.counters.clouds += 1
            if self._last_cloud_ns is not None:
                if stamp_ns == self._last_cloud_ns:
                    self.counters.duplicates += 1
                    return "duplicate"
                if stamp_ns < self._last_cloud_ns:
                    self.counters.out_of_order += 1
                    return "out_of_order"
            self._last_cloud_ns = stamp_ns
            self._pending.append((stamp_ns, msg, self._clock()))
            while len(self._pending) > self._pending_max:
                self._pending.popleft()
                self.counters.skipped += 1
            self._resolve()
            return "ok"

    def poll(self) -> None:
        """Resolve clouds whose waiting time ran out (call from a timer or before ``get``)."""
        with self._cond:
            self._resolve()

    # ------------------------------------------------------------------ pairing
    def _nearest(self, cam: int, stamp_ns: int) -> Optional[Tuple[int, Any]]:
        best, best_dt = None, None
        for it in self._images[cam]:
            dt = abs(it[0] - stamp_ns)
            if dt <= self.tolerance_ns and (best_dt is None or dt < best_dt):
                best, best_dt = it, dt
        return best

    def _final(self, cam: int, stamp_ns: int, waited_ns: float) -> bool:
        """Whether no later image can still come closer to this cloud than what is buffered."""
        buf = self._images[cam]
        return bool(buf and buf[-1][0] >= stamp_ns) or waited_ns >= self.max_wait_ns

    def _resolve(self) -> None:
        now = self._clock()
        while self._pending:
            stamp_ns, msg, t_in = self._pending[0]
            waited = (now - t_in) * 1e9
            if not all(self._final(c, stamp_ns, waited) for c in range(self.num_cameras)):
                break
            self._pending.popleft()
            images = [self._nearest(c, stamp_ns) for c in range(self.num_cameras)]
            if any(im is None for im in images):
                self.counters.unpaired += 1
                continue
            self.counters.paired += 1
            self._ready.append(SyncedFrame(stamp_ns, msg, images, t_in))
            while len(self._ready) > self.queue_size:
                self._ready.popleft()
                self.counters.skipped += 1
            self._cond.notify_all()
        # images too old to pair with any future cloud; much older ones (more than jump_ns: a bag loop or clock
        # reset) are kept, bounded by the buffer length, so the cloud that reveals the jump still finds its image
        oldest = self._pending[0][0] if self._pending else self._last_cloud_ns
        if oldest is not None:
            lo, hi = oldest - self.jump_ns, oldest - self.tolerance_ns
            for buf in self._images:
                if buf and lo <= buf[0][0] < hi:
                    keep = [it for it in buf if not (lo <= it[0] < hi)]
                    buf.clear()
                    buf.extend(keep)

    # ------------------------------------------------------------------ output
    def get(self, timeout_s: float = 0.1) -> Optional[SyncedFrame]:
        """The oldest ready frame (the queue holds at most ``queue_size`` newest), or ``None`` after the timeout."""
        deadline = time.monotonic() + timeout_s  # wall time even when pairing runs on an injected (bag) clock
        with self._cond:
            while True:
                self._resolve()
                if self._ready:
                    return self._ready.popleft()
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.02))

    def reset(self, keep_near_ns: Optional[int] = None) -> None:
        """Drop everything buffered (after a time jump); counters are kept.

        ``keep_near_ns``: keep the images within the tolerance of this stamp (the cloud that revealed the jump).
        """
        with self._cond:
            for buf in self._images:
                keep = [] if keep_near_ns is None else [it for it in buf
                                                        if abs(it[0] - keep_near_ns) <= self.tolerance_ns]
                buf.clear()
                buf.extend(keep)
            self._pending.clear()
            self._ready.clear()
            self._last_cloud_ns = None

    @property
    def last_cloud_ns(self) -> Optional[int]:
        return self._last_cloud_ns

    def pending(self) -> int:
        """Number of clouds waiting for an image or in the ready queue."""
        with self._cond:
            return len(self._pending) + len(self._ready)
