# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Sensor subscriptions whose reliability follows the publishers (``auto``), and QoS problems made visible.

A best-effort subscriber matches every publisher, but against a *reliable* publisher on the same host it loses
most large messages (seen with a real replay: 8 of 47 clouds, 16 of 47 images; a reliable subscriber got 47 of 47).
A reliable subscriber gets nothing from a *best-effort* publisher (most LiDAR and camera drivers). So:

* ``auto`` (default): reliable when every publisher of the topic is reliable, best-effort as soon as one is not;
  before any publisher is seen, best-effort (matches anything). :meth:`SensorSubscription.check` (a node timer)
  re-reads the publishers and re-creates the subscription when the right choice changes, with a log line; this is
  what ``ros2 bag record`` users expect from a subscriber that adapts to ``ros2 bag play``.
* ``reliable`` / ``best_effort``: fixed; a mismatch that loses data (a best-effort publisher with a reliable
  subscription: nothing arrives; a reliable publisher with a best-effort one: large messages are dropped) is
  logged once per publisher set and counted (``qos_mismatch``), which ``/diagnostics`` reports as WARN.
* Lost messages reported by the middleware (``message_lost`` event, where the RMW supports it) are counted
  (``messages_lost``) and an incompatible-QoS event is counted as ``qos_mismatch``.
"""

from __future__ import annotations

from typing import Callable, List, Optional

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITY_CHOICES = ("auto", "reliable", "best_effort")


def sensor_qos(reliability: str, depth: int) -> QoSProfile:
    """Sensor-data style QoS (keep last ``depth``, volatile); ``reliability`` ``reliable`` or ``best_effort``."""
    rel = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=depth, reliability=rel, history=HistoryPolicy.KEEP_LAST,
                      durability=DurabilityPolicy.VOLATILE)


def _name(policy) -> str:
    return "reliable" if policy == ReliabilityPolicy.RELIABLE else "best_effort"


def _wanted(publishers: List[str]) -> Optional[str]:
    """The reliability that loses nothing against these publishers' (None: no publisher to go by)."""
    if not publishers:
        return None
    return "reliable" if all(p == "reliable" for p in publishers) else "best_effort"


class SensorSubscription:
    """One input subscription (see the module docstring); ``count(key)`` receives the problem counters."""

    def __init__(self, node, msg_type, topic: str, callback: Callable, reliability: str, depth: int,
                 count: Optional[Callable[..., None]] = None):
        if reliability not in RELIABILITY_CHOICES:
            raise ValueError(f"reliability must be one of {RELIABILITY_CHOICES}, not {reliability!r}")
        self.node, self.msg_type, self.callback, self.mode, self.depth = node, msg_type, callback, reliability, depth
        self._count = count or (lambda key, n=1: None)
        self._topic = topic
        self._warned: Optional[tuple] = None
        self._old = None  # the previous subscription during a switch
        self._last_key = None
        self.sub = None
        first = reliability if reliability != "auto" else (_wanted(self._publishers()) or "best_effort")
        self._create(first)

    @property
    def topic_name(self) -> str:
        """The resolved (remapped) topic name."""
        return self.sub.topic_name

    @property
    def reliability(self) -> str:
        """The reliability the subscription has now (``reliable`` or ``best_effort``)."""
        return self._current

    def _make(self, reliability: str):
        from rclpy.event_handler import SubscriptionEventCallbacks

        # in auto mode an incompatible publisher is transient: check() switches to a policy that matches it
        events = SubscriptionEventCallbacks(incompatible_qos=lambda _e: None if self.mode == "auto"
                                            else self._count("qos_mismatch"),
                                            message_lost=lambda e: self._count_lost(e))
        qos = sensor_qos(reliability, self.depth)
        try:
            return self.node.create_subscription(self.msg_type, self._topic, self._deliver, qos,
                                                 event_callbacks=events)
        except Exception:  # noqa: BLE001 - an RMW without these events: subscribe without them
            return self.node.create_subscription(self.msg_type, self._topic, self._deliver, qos)

    def _create(self, reliability: str) -> None:
        self.sub = self._make(reliability)
        self._current = reliability

    def _deliver(self, msg) -> None:
        # while two subscriptions overlap (a switch in progress) a message can arrive on both: pass it on once
        stamp = getattr(getattr(msg, "header", None), "stamp", None)
        key = None if stamp is None else (int(stamp.sec), int(stamp.nanosec), getattr(msg.header, "frame_id", ""))
        if self._old is not None and key is not None and key == self._last_key:
            return
        self._last_key = key
        self.callback(msg)

    def _switch(self, reliability: str) -> None:
        """Make-before-break: the new subscription is created first; the old one is destroyed once the new one has
        matched every publisher (:meth:`check`), so no message is lost in the handover.
        """
        if self._old is not None:
            self.node.destroy_subscription(self._old)
        self._old = self.sub
        self._create(reliability)

    def _count_lost(self, event) -> None:
        self._count("messages_lost", max(1, int(getattr(event, "total_count_change", 1) or 1)))

    def _publishers(self) -> List[str]:
        name = self.sub.topic_name if self.sub is not None else self.node.resolve_topic_name(self._topic)
        return [_name(p.qos_profile.reliability) for p in self.node.get_publishers_info_by_topic(name)]

    def check(self) -> None:
        """Re-read the publishers: adapt (``auto``) or warn about a data-losing mismatch (fixed modes)."""
        pubs = self._publishers()
        if self._old is not None and self.sub.get_publisher_count() >= len(pubs):
            self.node.destroy_subscription(self._old)
            self._old = None
        wanted = _wanted(pubs)
        if wanted is None:
            return
        log = self.node.get_logger()
        if self.mode == "auto":
            if wanted != self._current:
                log.info(f"{self.topic_name}: publishers {pubs}; subscription now {wanted} (was {self._current})")
                self._switch(wanted)
            return
        key = (tuple(sorted(pubs)), self._current)
        if wanted != self._current and key != self._warned:
            self._warned = key
            self._count("qos_mismatch")
            why = ("nothing arrives from a best-effort publisher" if self._current == "reliable"
                   else "large messages from a reliable publisher are dropped")
            log.warning(f"{self.topic_name}: subscription is {self._current} but the publishers are {pubs}: {why}; "
                        f"set the reliability parameter to auto or {wanted}")
