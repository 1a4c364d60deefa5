"""`train.threads` beside other work: the AVAE's paper MNIST setting on Fashion-MNIST (l = 16,
m = 10,000 re-encoded every 10 steps, batch 100, full width, float32, channels-last) for
`--steps` SGD steps, with 1 thread, 2 threads and `auto`, while 0, 2 and 4 busy processes (each a
Python loop that never sleeps) share the machine. Each condition is one `avae train` process;
its wall time, its CPU seconds, and the threads `auto` took (metrics.jsonl) are recorded, with
the machine and its load.

    python benchmarks/threads_under_load.py                  # needs Fashion-MNIST; ≈ 10 min on 2 cores
    → benchmarks/results/threads_under_load-<capability>.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from avae import __version__, hardware

RESULTS = Path(__file__).parent / "results"
KDE_SIZE, BATCH = 10000, 100


@contextmanager
def busy_processes(count: int):
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(2 if count else 0)  # let them take their cores
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train_once(threads: str, steps: int, out: Path) -> dict:
    settings = [f"data.train_size={KDE_SIZE + steps * BATCH}", "data.val_size=1000", "model.width=1.0",
                "train.epochs=1", "train.figures_every=0", "train.progress=false", "train.precision=float32",
                "train.channels_last=true", "model.kde_precision=float32", "model.kde_channels_last=true",
                "model.kde_batch=256", f"train.threads={'null' if threads == 'auto' else threads}"]
    argv = [sys.executable, "-m", "avae", "train", "--dataset", "fashion_mnist", "--out", str(out),
            *sum((["--set", s] for s in settings), [])]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    cpu, load, start = children_cpu(), os.getloadavg()[0], time.perf_counter()
    subprocess.run(argv, check=True, env=env, capture_output=True)
    wall = time.perf_counter() - start
    epoch = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    return {"threads_setting": threads, "threads_used": epoch["threads"], "wall_s": round(wall, 1),
            "cpu_s": round(children_cpu() - cpu, 1), "train_s": round(epoch["train_s"], 1),
            "kde_refresh_s": round(epoch["kde_refresh_s"], 1), "load_before": round(load, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="SGD steps (a re-encoding every 10)")
    parser.add_argument("--loads", default="0,2,4", help="busy processes beside the run")
    parser.add_argument("--threads", default="1,2,auto")
    args = parser.parse_args()
    facts = hardware.machine()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        train_once("1", 1, Path(tmp) / "warm-up")  # fills the bandwidth and data caches
        for load in map(int, args.loads.split(",")):
            with busy_processes(load):
                for threads in args.threads.split(","):
                    row = {"busy_processes": load, **train_once(threads, args.steps, Path(tmp) / f"{load}-{threads}")}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"threads_under_load-{facts['capability']}.json"
    out.write_text(json.dumps({"machine": facts, "avae": __version__, "torch": torch.__version__,
                               "command": "python benchmarks/threads_under_load.py " + " ".join(sys.argv[1:]),
                               "steps": args.steps, "kde_size": KDE_SIZE, "batch": BATCH, "rows": rows}, indent=1))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
