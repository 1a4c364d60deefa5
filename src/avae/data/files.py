"""Finding a dataset's files on disk (explicit root, then $AVAE_DATA_ROOT, then default folders),
downloading official files on request (verified against known checksums), and cache folders.
"""
from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..atomic import save_file
from ..errors import AvaeError
from ..schema import setting

ENV_ROOT = "AVAE_DATA_ROOT"
ENV_CACHE = "AVAE_CACHE_DIR"
USER_DATA = Path("~/.avae/data").expanduser()
ROOT = "the data root (--data-root, data.root)"


def resolve_root(dataset_name: str, root: str | os.PathLike | None, candidates=()) -> list[Path]:
    """Folders to search, best first.

    An explicit `root` wins outright, else $AVAE_DATA_ROOT, else `candidates`: the user named a
    place, so we never silently read a different copy. Each folder is searched directly and in
    its `<dataset_name>/` subfolder (also spelled with '-' for '_').
    """
    if root is not None:
        bases = [given_path(root, ROOT)]
    elif os.environ.get(ENV_ROOT):
        bases = [Path(os.environ[ENV_ROOT]).expanduser()]
    else:
        bases = [Path(c).expanduser() for c in candidates]
    subfolders = dict.fromkeys([dataset_name, dataset_name.replace("_", "-")])
    folders = []
    for base in bases:
        folders += [base] + [base / sub for sub in subfolders]
    return folders


def given_path(value, what: str) -> Path | None:
    """A path the user gave as `what` (None: not given). An empty one is refused: Path("") is the
    current folder, which would be read silently in place of the data meant."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise AvaeError(f"{what} must be a path, got {value!r}")
    if not str(value).strip():
        raise AvaeError(f"{what} is empty; give the folder or file that holds the data, or leave it out")
    return Path(value).expanduser()


def named_root(root) -> Path | None:
    """The data root the user named (argument, else $AVAE_DATA_ROOT), or None."""
    if root is not None:
        return given_path(root, ROOT)
    if os.environ.get(ENV_ROOT):
        return Path(os.environ[ENV_ROOT]).expanduser()
    return None


def searched(folders) -> str:
    return ", ".join(str(f) for f in folders) or "(no folder: pass a data root)"


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
    raise AvaeError(f"file {wanted[first][0]} not found in {searched(folders)}; {how_to_get}")


def option(name: str, value: str | None = None) -> str:
    """A dataset option as the command line spells it: data.options.NAME, or --set data.options.NAME=VALUE."""
    return f"data.options.{name}" if value is None else f"--set data.options.{name}={value}"


def reject_options(dataset: str, options: dict) -> None:
    """Every loader takes only the options it documents; anything else is a user's typo."""
    if options:
        raise AvaeError(
            f"dataset '{dataset}' has no option {', '.join(map(option, sorted(options)))}; remove it "
            "(`avae datasets` lists the datasets; docs/datasets.md gives each one's options)"
        )


@dataclass(frozen=True)
class Download:
    """data.options of a dataset with official files to fetch."""

    download: bool = setting(False)  # fetch the official files (checksum-verified) when they are not found


# --- downloads ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Remote:
    """One official file: where it can be fetched from (first URL first) and its checksum."""

    name: str
    urls: tuple[str, ...]
    md5: str | None  # None: no verified checksum known; the download is refused rather than trusted


_MNIST = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
_DSPRITES = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"

# MD5 checksums of the official files, as published by the datasets' authors and used by
# torchvision / disent; each was cross-checked in at least two independent sources.
DOWNLOADS: dict[str, tuple[Remote, ...]] = {
    "mnist": tuple(
        Remote(name, tuple(base + name for base in _MNIST), md5)
        for name, md5 in (
            ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        )
    ),
    "fashion_mnist": tuple(
        Remote(name, tuple(base + name for base in _FASHION), md5)
        for name, md5 in (
            ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        )
    ),
    "cifar10": (
        Remote("cifar-10-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
               "c58f30108f718f92721af3b95e74349a"),
    ),
    "dsprites": (
        Remote(_DSPRITES, (f"https://github.com/deepmind/dsprites-dataset/raw/master/{_DSPRITES}",
                           f"https://raw.githubusercontent.com/google-deepmind/dsprites-dataset/master/{_DSPRITES}"),
               "7da33b31b13a06f4b04a70402ce90c2e"),
    ),
    "shapes3d": (
        Remote("3dshapes.h5", ("https://storage.googleapis.com/3d-shapes/3dshapes.h5",),
               "099a2078d58cec4daad0702c55d06868"),
    ),
}

CHUNK = 1 << 20


def fetch(url: str, out, progress: str = "") -> None:
    """Copy the bytes at `url` into the binary file `out` (any urllib URL, file:// included)."""
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=progress, disable=None, leave=False) as bar:
            while block := response.read(CHUNK):
                out.write(block)
                bar.update(len(block))


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def download_target(dataset: str, root) -> Path:
    """Where downloads go: the named data root, else ~/.avae/data/<dataset>."""
    base = named_root(root)
    return base if base is not None else USER_DATA / dataset


def download(remote: Remote, folder: Path) -> Path:
    """Fetch one official file into `folder`, verified against its checksum, written atomically.

    Every URL is tried in turn; a file that fails its checksum is deleted and never kept.
    """
    if remote.md5 is None:
        raise AvaeError(f"no verified checksum is known for {remote.name}; download it by hand from {remote.urls[0]}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AvaeError(f"cannot create {folder} to download {remote.name} into ({err}); pass a writable data root")
    target = folder / remote.name
    problems = []
    for url in remote.urls:
        print(f"avae: downloading {url} -> {target}", file=sys.stderr)
        try:
            save_file(lambda tmp: _fetch_verified(url, tmp, remote), target)  # a file that fails is never kept
            return target
        except (urllib.error.URLError, OSError, ValueError) as err:
            problems.append(f"{url}: {getattr(err, 'reason', None) or err}")
    raise AvaeError(f"could not download {remote.name} ({'; '.join(problems)}); no file was kept")


def _fetch_verified(url: str, path: Path, remote: Remote) -> None:
    with open(path, "wb") as out:
        fetch(url, out, progress=remote.name)
    found = md5_of(path)
    if found != remote.md5:
        raise ValueError(f"checksum mismatch (MD5 {found}, expected {remote.md5})")


def download_missing(dataset: str, root, names=None) -> Path:
    """Download the dataset's official files absent from the download folder; return that folder."""
    folder = download_target(dataset, root)
    for remote in DOWNLOADS[dataset]:
        if (names is None or remote.name in names) and not (folder / remote.name).is_file():
            download(remote, folder)
    return folder


# --- caches --------------------------------------------------------------------------------------
def cache_root() -> Path:
    """$AVAE_CACHE_DIR, default ~/.cache/avae (shared with the bandwidth cache)."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "avae")
