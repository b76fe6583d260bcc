"""Where uploads land while they stream in, and the sweep of what killed uploads left.

A request reads its file into a temporary file here before it is moved into storage; a
process killed mid-upload (OOM, SIGKILL, a redeploy) leaves that file behind, possibly
hundreds of MiB. Each file is named after the process that writes it, so the sweep — at start
and periodically after — removes the files of processes that are gone at once, and any file
untouched for ``upload_temp_max_idle_seconds`` (a client that stalled for good).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import IO

from core.settings import Settings

log = logging.getLogger("api.incoming")
PREFIX = "upload-"
OWNED = re.compile(rf"^{PREFIX}(\d+)-")


def incoming_dir(settings: Settings) -> Path:
    directory = settings.upload_temp_dir or Path(tempfile.gettempdir()) / "xai-compress-incoming"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def new_temp_file(directory: Path) -> IO[bytes]:
    """An open file for one upload, named after this process (the caller deletes it)."""
    return tempfile.NamedTemporaryFile(
        prefix=f"{PREFIX}{os.getpid()}-", dir=directory, delete=False
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process, alive
        return True
    return True


def sweep(directory: Path, max_idle_seconds: float) -> list[Path]:
    """Delete the upload files whose process is gone or that sat idle too long."""
    removed = []
    now = time.time()
    for path in directory.glob(f"{PREFIX}*"):
        owner = OWNED.match(path.name)
        try:
            idle = now - path.stat().st_mtime
        except FileNotFoundError:  # finished meanwhile
            continue
        if (owner and not _alive(int(owner.group(1)))) or idle > max_idle_seconds:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    if removed:
        log.info("removed %d upload file(s) left by killed or stalled uploads", len(removed))
    return removed
