"""SIGTERM/SIGINT as a request to checkpoint at the next update boundary, then stop.

Schedulers (SLURM) send SIGTERM some time before they kill a job, and a user's Ctrl-C
usually means "stop, but keep my progress": both set a flag that the training loop reads
between updates. A second Ctrl-C raises KeyboardInterrupt at once (the checkpoint files
are atomic, so that, too, leaves the folder resumable).
"""

from __future__ import annotations

import logging
import signal

logger = logging.getLogger(__name__)


class StopRequest:
    """A context manager that installs the handlers and restores the previous ones on exit."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. called from a test thread)
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal_name == "SIGINT" and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user does not want to wait
        self.signal_name = signal.Signals(signum).name
        logger.warning("%s received: checkpointing at the next update boundary, then stopping", self.signal_name)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
