# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Replay a rosbag2 (directory or bare ``.mcap``/``.db3``) with rclpy, without ``ros2 bag play``.

Messages are read with ``rosbags`` and published as the stored CDR bytes (no deserialisation) on publishers of the
recorded types, at the recorded rate times ``--rate`` (``--rate 0``: as fast as possible), with ``/clock``
(``rosgraph_msgs/Clock``, bag time) so that nodes can run with ``use_sim_time``. ``/tf_static`` is published
reliable + transient-local so late subscribers still get it; other topics reliable, depth 10 (matches both
reliable and best-effort subscribers). ``--loop`` starts over at the end (time jumps backwards, like
``ros2 bag play --loop``).

    sam4d_bag_replay BAG [--rate 1.0] [--loop] [--topics /a /b] [--remap /a:=/b] [--no-clock] [--ros-args ...]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

NS = 1_000_000_000


def message_class(msgtype: str):
    """The rclpy class of ``pkg/msg/Type`` (``None`` when the package is not importable here)."""
    parts = msgtype.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    try:
        return getattr(importlib.import_module(f"{parts[0]}.{parts[1]}"), parts[2])
    except (ImportError, AttributeError):
        return None


def read_bag(path, topics: Optional[Sequence[str]] = None) -> Iterator[Tuple[str, str, int, bytes]]:
    """Yield ``(topic, msgtype, log_time_ns, cdr_bytes)`` in log-time order."""
    from rosbags.rosbag2 import Reader

    with Reader(Path(path)) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        if not conns:  # rosbags reads every connection when given none
            return
        for conn, t, raw in reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, int(t), bytes(raw)


def bag_topics(path) -> Dict[str, str]:
    """Topic -> message type of a bag."""
    from rosbags.rosbag2 import Reader

    with Reader(Path(path)) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


class BagReplayer:
    """Publishes a bag's messages on an existing rclpy node (call :meth:`run` from any thread)."""

    def __init__(self, node, bag, rate: float = 1.0, topics: Optional[Sequence[str]] = None,
                 remap: Optional[Dict[str, str]] = None, publish_clock: bool = True, loop: bool = False,
                 clock_period: float = 0.02,
                 filter_fn: Optional[Callable[[str, int, bytes], Optional[bytes]]] = None):
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock

        self.node, self.bag, self.rate, self.loop = node, Path(bag), float(rate), bool(loop)
        self.topics = list(topics) if topics else None
        self.remap = dict(remap or {})
        self.clock_period = clock_period
        self.filter_fn = filter_fn
        self.published = 0
        self.loops = 0
        self.last_time_ns: Optional[int] = None  # bag time of the newest message or clock published
        self._Clock = Clock
        self._pubs = {}
        self.bag_types = types = bag_topics(self.bag)  #: topic -> message type of everything in the bag
        log = node.get_logger()
        for topic, msgtype in types.items():
            if self.topics is not None and topic not in self.topics:
                continue
            cls = message_class(msgtype)
            if cls is None:
                log.warning(f"skipping {topic}: message type {msgtype} is not importable here")
                continue
            static = topic in ("/tf_static",)
            qos = QoSProfile(depth=100 if static else 10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if static else DurabilityPolicy.VOLATILE)
            self._pubs[topic] = node.create_publisher(cls, self.remap.get(topic, topic), qos)
        self._clock_pub = node.create_publisher(Clock, "/clock", 10) if publish_clock else None
        self.topics_published = sorted(self._pubs)

    def prime(self, topics: Sequence[str] = ("/tf_static",)) -> int:
        """Publish the bag's messages of ``topics`` now, before :meth:`run`; returns the number published.

        ``/tf_static`` is transient-local: nodes that start or finish discovery later still get it.
        """
        n = 0
        for topic, _, _, raw in read_bag(self.bag, [t for t in topics if t in self._pubs]):
            self._pubs[topic].publish(raw)
            n += 1
        return n

    def wait_for_subscribers(self, timeout: float = 10.0, topics: Optional[Sequence[str]] = None) -> List[str]:
        """Wait until every publisher (of ``topics``, default all) has a subscriber; returns those still without."""
        pubs = {t: p for t, p in self._pubs.items() if topics is None or t in topics}
        end = time.monotonic() + timeout
        while True:
            missing = sorted(t for t, p in pubs.items() if p.get_subscription_count() == 0)
            if not missing or time.monotonic() >= end:
                return missing
            time.sleep(0.02)

    def send_clock(self, t_ns: int) -> None:
        """Publish ``/clock`` at bag time ``t_ns`` (also usable after :meth:`run`, to keep sim time going)."""
        self.last_time_ns = int(t_ns)
        if self._clock_pub is not None:
            msg = self._Clock()
            msg.clock.sec, msg.clock.nanosec = divmod(int(t_ns), NS)
            self._clock_pub.publish(msg)

    def run(self, stop: Optional[threading.Event] = None, max_messages: int = 0) -> int:
        """Play the bag (``loop``: until ``stop``); returns the number of messages published."""
        if not self._pubs:
            return 0
        try:
            return self._run(stop or threading.Event(), max_messages)
        except Exception as exc:  # noqa: BLE001 - node/context destroyed while playing (shutdown): stop quietly
            if "destruction was requested" in str(exc) or "context" in str(exc).lower():
                return self.published
            raise

    def _run(self, stop: threading.Event, max_messages: int) -> int:
        while not stop.is_set():
            t_bag0 = None
            t_wall0 = time.monotonic()
            for topic, _, t, raw in read_bag(self.bag, list(self._pubs)):
                if stop.is_set():
                    break
                if t_bag0 is None:
                    t_bag0 = t
                if self.rate > 0:
                    target = t_wall0 + (t - t_bag0) / NS / self.rate
                    while True:
                        left = target - time.monotonic()
                        if left <= 0 or stop.is_set():
                            break
                        self.send_clock(t_bag0 + int((time.monotonic() - t_wall0) * self.rate * NS))
                        time.sleep(min(left, self.clock_period))
                self.send_clock(t)
                if self.filter_fn is not None:
                    raw = self.filter_fn(topic, t, raw)
                    if raw is None:
                        continue
                self._pubs[topic].publish(raw)
                self.published += 1
                if max_messages and self.published >= max_messages:
                    return self.published
            self.loops += 1
            if not self.loop:
                break
        return self.published


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry point; returns the exit code."""
    import rclpy
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv if argv is None else argv)
    ap = argparse.ArgumentParser(prog="sam4d_bag_replay", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bag", help="rosbag2 directory or .mcap/.db3 file")
    ap.add_argument("--rate", type=float, default=1.0, help="playback speed factor (0 = as fast as possible)")
    ap.add_argument("--loop", action="store_true", help="start over at the end")
    ap.add_argument("--topics", nargs="*", default=None, help="only these topics")
    ap.add_argument("--remap", nargs="*", default=[], help="topic remaps OLD:=NEW")
    ap.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    ap.add_argument("--delay", type=float, default=0.5, help="seconds to wait for subscribers before playing")
    args = ap.parse_args(remove_ros_args(argv)[1:])
    if not Path(args.bag).exists():
        print(f"sam4d_bag_replay: {args.bag} does not exist", file=sys.stderr)
        return 2
    remap = {}
    for r in args.remap:
        if ":=" not in r:
            print(f"sam4d_bag_replay: bad --remap {r!r} (use OLD:=NEW)", file=sys.stderr)
            return 2
        a, b = r.split(":=", 1)
        remap[a] = b
    from rclpy.signals import SignalHandlerOptions

    from sam4d_ros.shutdown import ShutdownSignals

    signals = ShutdownSignals("sam4d_bag_replay")
    node = executor = spin = None
    try:
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node("sam4d_bag_replay")
        try:
            rep = BagReplayer(node, args.bag, rate=args.rate, topics=args.topics, remap=remap,
                              publish_clock=not args.no_clock, loop=args.loop)
        except Exception as exc:  # noqa: BLE001 - rosbags raises its own error types for unreadable bags
            node.get_logger().fatal(f"cannot replay {args.bag}: {exc}")
            return 2
        if not rep.topics_published:
            wanted = args.topics if args.topics else sorted(rep.bag_types)
            node.get_logger().fatal(f"nothing to replay in {args.bag}: none of the topics {wanted} is in the bag "
                                    f"with an importable message type (bag topics: {rep.bag_types})")
            return 2
        node.get_logger().info(f"replaying {args.bag}: {rep.topics_published} at rate {args.rate}")
        executor = rclpy.executors.SingleThreadedExecutor()
        executor.add_node(node)
        spin = threading.Thread(target=signals.spin, args=(executor,), daemon=True)
        signals.started()
        spin.start()
        if not signals.event.wait(args.delay):
            n = rep.run(signals.event)
            node.get_logger().info(f"done: {n} messages")
            signals.event.wait(0.5)  # let reliable writers deliver the last messages
        return 0
    finally:
        # stop the spin thread before anything is destroyed: a thread still inside the executor at interpreter
        # exit aborted the process ("terminate called without an active exception", exit 134)
        signals.started()
        signals.event.set()
        if spin is not None:
            spin.join(timeout=5.0)
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
