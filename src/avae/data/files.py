"""Finding a dataset's files on disk: explicit root, then $AVAE_DATA_ROOT, then default folders."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import AvaeError

ENV_ROOT = "AVAE_DATA_ROOT"
USER_DATA = Path("~/.avae/data").expanduser()


def resolve_root(dataset_name: str, root: str | os.PathLike | None, candidates=()) -> list[Path]:
    """Folders to search, best first.

    An explicit `root` wins outright, else $AVAE_DATA_ROOT, else `candidates`: the user named a
    place, so we never silently read a different copy. Each folder is searched directly and in
    its `<dataset_name>/` subfolder (also spelled with '-' for '_').
    """
    if root is not None:
        bases = [Path(root).expanduser()]
    elif os.environ.get(ENV_ROOT):
        bases = [Path(os.environ[ENV_ROOT]).expanduser()]
    else:
        bases = [Path(c).expanduser() for c in candidates]
    subfolders = dict.fromkeys([dataset_name, dataset_name.replace("_", "-")])
    folders = []
    for base in bases:
        folders += [base] + [base / sub for sub in subfolders]
    return folders


def find_in(folder: Path, names) -> Path | None:
    """The first of `names` (spellings of one file) present in `folder`."""
    for name in names:
        path = folder / name
        if path.is_file():
            return path
    return None


def find_files(folders: list[Path], wanted: dict[str, tuple[str, ...]], how_to_get: str) -> dict[str, Path]:
    """Locate every wanted file (key → accepted spellings) in the first folder holding them all.

    Files are never mixed across folders, so one download is never paired with another.
    """
    best_missing = None
    for folder in folders:
        found = {key: find_in(folder, names) for key, names in wanted.items()}
        missing = [key for key, path in found.items() if path is None]
        if not missing:
            return found
        if best_missing is None or len(missing) < len(best_missing):
            best_missing = missing
    first = (best_missing or list(wanted))[0]
    searched = ", ".join(str(f) for f in folders) or "(no folder: pass a data root)"
    raise AvaeError(f"file {wanted[first][0]} not found in {searched}; {how_to_get}")
