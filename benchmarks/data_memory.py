"""Peak resident memory of the dSprites and 3D Shapes datasets while training-style batches are read.

Each case runs in a fresh Python process that loads the dataset through `load_dataset` (as
`avae train` does) and fetches 100 random batches of 100 training images; the process's peak RSS
(resource.getrusage ru_maxrss) is recorded with its RSS right after `import avae`, torch included.

Cases:
- dsprites / shapes3d, procedural (no files);
- dsprites, file: a synthetic full-size official .npz (737,280 × 64 × 64 images of 0/1 under the
  official keys, written from the procedural renderer in chunks, deflate-compressed; made once in
  --scratch, ~2 minutes on 2 cores), read through the bit-packing reader;
- shapes3d, file: a synthetic full-size 3dshapes.h5 (480,000 × 64 × 64 × 3, gzip, one chunk per
  image; the official file is also compressed), read lazily with h5py.

    python benchmarks/data_memory.py [--scratch DIR] [--procedural-only]

Also times the procedural renderers (10,000 random images, best of 3; 3D Shapes' one-time
geometry). Writes benchmarks/results/data_memory.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "data_memory.json"
BATCHES, BATCH = 100, 100
NPZ = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
H5 = "3dshapes.h5"
GIB = 1024 ** 3


def rss_mib() -> float:
    """Current resident set size in MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    """Peak RSS of this process in MiB: ru_maxrss, cross-checked with /proc's VmHWM.

    The parent never grows large (synthetic files are made in their own processes), so the
    exec-inherited part of ru_maxrss stays below a case's own peak.
    """
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    try:
        with open("/proc/self/status") as f:
            hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return maxrss
    return max(maxrss, hwm)


# --- one case, in its own process ------------------------------------------------------------------
def child(dataset: str, source: str, root: str | None) -> dict:
    import torch

    from avae.data import load_dataset

    torch.set_num_threads(os.cpu_count() or 1)
    baseline = rss_mib()
    start = time.perf_counter()
    data = load_dataset(dataset, root=root, seed=0, source=source)
    opened = time.perf_counter() - start
    rng = np.random.default_rng(0)
    first = None
    start = time.perf_counter()
    checksum = 0
    for b in range(BATCHES):
        t = time.perf_counter()
        images = data.train.images(np.sort(rng.choice(len(data.train), BATCH, replace=False)))
        checksum += int(images[:, :, 32, 32].sum())
        if first is None:
            first = time.perf_counter() - t
    fetch = time.perf_counter() - start
    return {
        "dataset": dataset, "source": data.info["source"], "images": len(data.factor_grid),
        "baseline_rss_mib": round(baseline, 1), "peak_rss_mib": round(peak_mib(), 1),
        "open_s": round(opened, 2), "first_batch_s": round(first, 2),
        "batches_s": round(fetch, 2), "batches": BATCHES, "batch_size": BATCH,
        "within_2_gib": peak_mib() * 2**20 < 2 * GIB, "checksum": checksum,
    }


def render_timing() -> dict:
    """Seconds to render 10,000 random procedural images (best of 3), and 3D Shapes' one-time geometry."""
    import torch

    from avae.data.dsprites import ProceduralDSprites
    from avae.data.shapes3d import ProceduralShapes3D

    torch.set_num_threads(os.cpu_count() or 1)
    out = {}
    start = time.perf_counter()
    ProceduralShapes3D.tables()
    out["shapes3d_first_use_s"] = round(time.perf_counter() - start, 2)
    for name, images in (("dsprites", ProceduralDSprites()), ("shapes3d", ProceduralShapes3D())):
        rng = np.random.default_rng(0)
        times = []
        for _ in range(3):
            idx = rng.integers(0, len(images), 10_000)
            start = time.perf_counter()
            images.images(idx)
            times.append(time.perf_counter() - start)
        out[f"{name}_10000_images_s"] = round(min(times), 3)
    return out


def run_child(dataset: str, source: str, root: Path | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", dataset, source] + ([str(root)] if root else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- synthetic full-size official files ------------------------------------------------------------
def write_npy_member(archive: zipfile.ZipFile, name: str, shape, dtype, chunks) -> None:
    """Stream an .npy member into a zip: header, then each chunk's bytes."""
    with archive.open(name, "w", force_zip64=True) as f:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(f, header)
        for chunk in chunks:
            f.write(np.ascontiguousarray(chunk, dtype).tobytes())


def make_dsprites_npz(path: Path) -> float:
    """The official layout, images from the procedural renderer; returns seconds taken."""
    from avae.data.dsprites import ProceduralDSprites

    sprites = ProceduralDSprites()
    n = len(sprites)
    start = time.perf_counter()
    classes = np.concatenate([np.zeros((n, 1), np.int64), sprites.factor_classes(np.arange(n))], axis=1)
    values = np.concatenate([np.ones((n, 1)), sprites.factor_values(np.arange(n))], axis=1)
    tmp = path.with_suffix(".part")
    step = 8192
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        write_npy_member(archive, "imgs.npy", (n, 64, 64), np.uint8,
                         (sprites.images(np.arange(s, min(s + step, n)))[:, 0].numpy() // 255
                          for s in range(0, n, step)))
        write_npy_member(archive, "latents_classes.npy", classes.shape, np.int64, [classes])
        write_npy_member(archive, "latents_values.npy", values.shape, np.float64, [values])
    os.replace(tmp, path)
    return time.perf_counter() - start


def make_shapes3d_h5(path: Path) -> float:
    import h5py

    from avae.data.shapes3d import ProceduralShapes3D

    shapes = ProceduralShapes3D()
    n = len(shapes)
    start = time.perf_counter()
    tmp = path.with_suffix(".part")
    with h5py.File(tmp, "w") as f:
        images = f.create_dataset("images", (n, 64, 64, 3), np.uint8, chunks=(1, 64, 64, 3),
                                  compression="gzip", compression_opts=1)
        f.create_dataset("labels", data=shapes.factor_values(np.arange(n)))
        for s in range(0, n, 10_000):
            images[s:s + 10_000] = shapes.images(np.arange(s, min(s + 10_000, n))).numpy().transpose(0, 2, 3, 1)
    os.replace(tmp, path)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/avae-data-memory"),
                        help="folder for the synthetic full-size files (kept for re-runs)")
    parser.add_argument("--procedural-only", action="store_true", help="skip the synthetic official files")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child == ["timing"]:
            print(json.dumps(render_timing()))
            return
        if args.child[0] == "make":
            make = {"dsprites": make_dsprites_npz, "shapes3d": make_shapes3d_h5}[args.child[1]]
            print(json.dumps({"seconds": round(make(Path(args.child[2])), 1)}))
            return
        dataset, source, *root = args.child
        print(json.dumps(child(dataset, source, root[0] if root else None)))
        return

    cases, made = [], {}
    load_before = os.getloadavg()  # other processes on the machine slow torch's renderer (dSprites) most
    timing = subprocess.run([sys.executable, __file__, "--child", "timing"], capture_output=True, text=True, check=True)
    timing = json.loads(timing.stdout.strip().splitlines()[-1])
    print(json.dumps(timing), flush=True)
    for dataset in ("dsprites", "shapes3d"):
        cases.append(run_child(dataset, "procedural"))
        print(json.dumps(cases[-1]), flush=True)
    if not args.procedural_only:
        for dataset, name in (("dsprites", NPZ), ("shapes3d", H5)):
            folder = args.scratch / dataset
            folder.mkdir(parents=True, exist_ok=True)
            record = folder / (name + ".json")  # how the kept file was made, for re-runs
            if not (folder / name).is_file() or not record.is_file():  # made in a child: this process stays small
                out = subprocess.run([sys.executable, __file__, "--child", "make", dataset, str(folder / name)],
                                     capture_output=True, text=True, check=True)
                record.write_text(out.stdout.strip().splitlines()[-1])
            made[name] = json.loads(record.read_text())
            made.setdefault(name, {})["bytes"] = (folder / name).stat().st_size
            cases.append(run_child(dataset, "file", folder))
            print(json.dumps(cases[-1]), flush=True)
    versions = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                              capture_output=True, text=True, check=True).stdout.strip()
    result = {
        "what": "peak RSS (max of ru_maxrss and VmHWM) while loading each dataset and fetching 100 random "
                "training batches of 100 (fresh process per case; baseline = RSS after importing avae and torch)",
        "command": "python benchmarks/data_memory.py",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": versions, "numpy": np.__version__},
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "render_timing": timing,
        "synthetic_files": made,
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
