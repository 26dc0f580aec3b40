"""One writer per run folder: ``RUN/.train.lock``, held by ``train.py`` for the whole run.

Two processes writing one run folder interleave ``metrics.jsonl``, mix one run's
``run_config.json`` with another's checkpoints, or delete each other's files. So every
``train.py`` (under ``torchrun``, global rank 0 only, for all its ranks) takes this lock
before it looks at the folder's contents and keeps it until it exits; a second writer,
whatever its flags, stops at once with one line naming the holder's pid and host.

What it relies on:

- **Atomic exclusive create** (``open(O_CREAT | O_EXCL)``): exactly one process can create
  the file. Local file systems guarantee it, and so does NFS from version 3 on (the server
  performs the exclusive create); NFSv2 and some FUSE file systems do not. No ``fcntl`` or
  ``flock`` lock is used: those are advisory, are emulated differently over NFS (NLM on v3,
  byte-range locks on v4) and vanish silently when a client loses its lease.
- **Liveness by pid, on the same host only.** The file names the holder's host, pid and the
  pid's start time (from ``/proc``, so a recycled pid does not look alive). A lock whose
  holder is on this host and no longer running (killed by ``kill -9``, a power cut) is taken
  over with a warning. A lock held on *another* host (a shared NFS folder) is never taken
  over automatically, because this host cannot see that process: the message says which
  file to delete once that process is known to be gone. Containers that share a hostname
  but not a pid namespace would defeat this check; give them distinct hostnames.
- Taking over a stale lock happens under a second, short-lived exclusive file
  (``.train.lock.takeover``), so two processes that both find the same stale lock cannot
  both end up holding it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

from mt_dnn.errors import UserError

logger = logging.getLogger(__name__)

LOCK_NAME = ".train.lock"
# A lock file is created empty and then written; a reader that finds it empty or cut waits
# this long for the writer to finish before it judges the file abandoned.
_WRITE_GRACE_S = 5.0


class RunLockError(UserError):
    """Another process holds the run folder."""


def _process_start(pid: int) -> str | None:
    """The pid's start time in clock ticks since boot (Linux), to tell a recycled pid apart."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None


def _pid_running(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): the signal test is all there is
    if state in ("Z", "X"):  # a zombie has finished; only its parent has not noticed yet
        return False
    return start is None or _process_start(pid) == start


def _describe(holder: dict) -> str:
    since = holder.get("since")
    when = f", since {since}" if since else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')}{when}"


class RunLock:
    """``acquire()`` or raise :class:`RunLockError`; ``release()`` when the run ends."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.held = False
        self._created_dirs: list[Path] = []  # deepest first: removed again if the run writes nothing
        self._token = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"

    def _owner(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _process_start(os.getpid()),
                "since": time.strftime("%Y-%m-%d %H:%M:%S"), "token": self._token}

    def _create(self, path: Path, content: dict) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(content, handle)
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def _read(self, path: Path) -> dict | None:
        """The holder's record; None when the file is gone. Waits out a writer still writing it."""
        deadline = time.monotonic() + _WRITE_GRACE_S
        while True:
            try:
                text = path.read_text(encoding="utf-8")
                holder = json.loads(text)
                if isinstance(holder, dict) and "pid" in holder and "host" in holder:
                    return holder
            except FileNotFoundError:
                return None
            except (OSError, ValueError):
                pass
            try:
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                return None
            if time.monotonic() > deadline or age > _WRITE_GRACE_S:
                return {"pid": None, "host": socket.gethostname(), "unreadable": True}
            time.sleep(0.05)

    def _is_stale(self, holder: dict) -> bool:
        if holder.get("unreadable"):
            return True  # its writer died between creating and writing it
        if holder.get("host") != socket.gethostname():
            return False  # we cannot see another host's processes
        try:
            pid = int(holder["pid"])
        except (TypeError, ValueError):
            return True
        return not _pid_running(pid, holder.get("pid_start"))

    def _take_over(self, stale: dict) -> bool:
        """Replace the stale lock, unless another process replaced it first."""
        guard = self.path.with_name(LOCK_NAME + ".takeover")
        if not self._create(guard, self._owner()):
            other = self._read(guard)
            if other is None or not self._is_stale(other):
                return False  # someone else is taking it over right now
            guard.unlink(missing_ok=True)
            if not self._create(guard, self._owner()):
                return False
        try:
            current = self._read(self.path)
            if current is not None and current.get("token") != stale.get("token"):
                return False  # replaced meanwhile by a live process
            if current is not None:
                self.path.unlink(missing_ok=True)
            return self._create(self.path, self._owner())
        finally:
            guard.unlink(missing_ok=True)

    def _make_run_dir(self) -> None:
        missing = []
        folder = self.run_dir
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._created_dirs.extend(f for f in missing if f not in self._created_dirs)

    def acquire(self) -> None:
        for _ in range(5):  # a lock released or replaced between our attempts is simply tried again
            self._make_run_dir()
            try:
                if self._create(self.path, self._owner()):
                    self.held = True
                    return
            except FileNotFoundError:
                continue  # a failed run removed the folder it had created, just now
            holder = self._read(self.path)
            if holder is None:
                continue
            if not self._is_stale(holder):
                break
            if self._take_over(holder):
                what = "an unreadable lock file" if holder.get("unreadable") else \
                    f"a lock left by {_describe(holder)}, which is no longer running"
                logger.warning("%s: took over %s", self.path, what)
                self.held = True
                return
            time.sleep(0.2)  # another process is taking it over: see who won
        holder = self._read(self.path) or {}
        self.release()
        elsewhere = holder.get("host") != socket.gethostname()
        hint = (f"; if that process is gone, delete {self.path}" if elsewhere
                else "; wait for it to finish or stop it (or give another --output_dir)")
        raise RunLockError(f"--output_dir {self.run_dir}: another train.py is writing this run "
                           f"({_describe(holder)}){hint}")

    def release(self) -> None:
        """Remove the lock if it is still ours, and the run folder if we created it and it stayed empty."""
        if self.held:
            current = self._read(self.path)
            if current is not None and current.get("token") == self._token:
                self.path.unlink(missing_ok=True)
            self.held = False
        for folder in self._created_dirs:
            try:
                folder.rmdir()  # only succeeds when nothing was written into it
            except OSError:
                break
        self._created_dirs = []

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
