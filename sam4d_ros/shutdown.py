# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Clean SIGINT / SIGTERM handling for the package's console entry points (node, bag replayer).

rclpy's own handler turns every Ctrl-C into a ``KeyboardInterrupt`` wherever Python happens to be, so a second
Ctrl-C while the node is shutting down (joining its worker, destroying entities) printed a traceback. Here
(``rclpy.init(..., signal_handler_options=SignalHandlerOptions.NO)`` plus :class:`ShutdownSignals`) no signal
raises anything:

* the first signal sets :attr:`ShutdownSignals.event`: :meth:`spin` returns and ``main`` shuts down in order. During
  start-up (before :meth:`ShutdownSignals.started`) it says so, and ``main`` stops as soon as the node is built.
  Raising ``KeyboardInterrupt`` there instead was tried and broke: mid-import it corrupted library state (hydra /
  omegaconf turned it into an ``AttributeError`` traceback), and inside some C-extension calls CPython remembered it
  as unhandled and killed the process with SIGINT at exit although ``main`` had caught it (exit -2);
* every later signal is logged ("already shutting down") and otherwise ignored.
"""

from __future__ import annotations

import signal
import sys
import threading


class ShutdownSignals:
    """Install the handlers for SIGINT and SIGTERM (main thread only); see the module docstring."""

    def __init__(self, name: str):
        self.name = name
        self.event = threading.Event()
        self._started = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        if self.event.is_set():
            print(f"[{self.name}] {signal.Signals(signum).name}: already shutting down", file=sys.stderr, flush=True)
            return
        self.event.set()
        if not self._started:
            print(f"[{self.name}] {signal.Signals(signum).name}: stopping once start-up has finished", file=sys.stderr,
                  flush=True)

    def started(self) -> None:
        """Start-up is over (only changes what a signal prints)."""
        self._started = True

    def spin(self, executor, period: float = 0.1) -> None:
        """Spin ``executor`` until a signal arrives or the context is shut down."""
        import rclpy

        while not self.event.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=period)
