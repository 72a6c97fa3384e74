"""Runtime output readable by its owner only: folders made 0700, files created 0600.

Set explicitly when a folder or file is created, not with a umask: the library runs in the
CLI, in flow workers and in the API, and a umask is process-wide state none of them owns.
Existing folders and files keep the modes an operator gave them.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str | Path) -> Path:
    """Make `path` and any missing parents, each created 0700; return it."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            continue  # made by another process meanwhile
        os.chmod(d, DIR_MODE)  # a umask can only remove bits, but be exact
    return path


def private_file(path: str | Path) -> Path:
    """Create `path` empty with mode 0600 if it does not exist (its folder made private); return it."""
    path = Path(path)
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    except FileExistsError:
        return path
    os.close(fd)
    os.chmod(path, FILE_MODE)
    return path
