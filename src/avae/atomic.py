"""Writing a file so that no reader ever sees half of it and no link redirects it: the one helper
every writer of avae uses (run directories, caches, downloads, pages)."""
from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Callable

from .errors import AvaeError

LINK_ADVICE = "avae never writes through a link, so a received folder cannot redirect its writes: remove the link"
TMP = ".tmp"
_TEMPORARY = re.compile(r"\.(\d+)-[0-9a-f]{8}\.tmp(\.[^.]*)?$")  # save_file's names: the writer's pid


def save_file(write: Callable[[Path], object], path: Path) -> None:
    """Write a file atomically: `write` fills a temporary file that then replaces `path`, so a
    reader never sees half a file, and a link planted at `path` is refused, never written through.
    The temporary name is the writer's own, so processes sharing a cache (a job array, two suites)
    never write into one file; it keeps the suffix, which some writers check (torch.export wants .pt2)."""
    if path.is_symlink():
        raise AvaeError(f"{path} is a symbolic link; {LINK_ADVICE}")
    tmp = path.with_name(f"{path.stem}.{os.getpid()}-{secrets.token_hex(4)}{TMP}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(*folders: Path) -> None:
    """Delete the temporary files that writers killed mid-write (SIGKILL, power loss) left behind."""
    for folder in folders:
        for path in folder.glob(f"*{TMP}*") if folder.is_dir() else ():
            found = _TEMPORARY.search(path.name)
            if found and not _alive(int(found.group(1))) and not path.is_symlink():
                path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
