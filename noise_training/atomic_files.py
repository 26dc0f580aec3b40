"""Writing a file so that a crash never leaves half of it: the one utility mt_dnn shares from here.

The providers' caches (neighbour and synonym tables) and the training run's files (checkpoints,
run_config.json, metrics) need the same guarantee: a reader finds the old file or the new one,
never a mix. It lives in noise_training, the package that depends on nothing of the project,
so that mt_dnn (which imports noise_training anyway) can use it without noise_training ever
importing mt_dnn; mt_dnn.run_files re-exports it next to its JSON helpers.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename is only durable once its folder is); best effort."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, before_replace: Callable[[], None] | None = None) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    ``before_replace`` runs when the temporary file is complete but not yet renamed (the
    crash tests use it to kill a process at exactly that moment).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None and exc.errno is not None:
            # a full disk shows up in write()/fsync(), which name no file: name the one we were writing
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
