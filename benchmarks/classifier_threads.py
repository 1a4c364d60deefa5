"""The feature classifier's training on one thread (what avae does) against two, idle and beside
other work: Fashion-MNIST, the classifier avae trains for its Fréchet distances (`--images` training
images, `--epochs` epochs, batch 100), wall seconds of each condition (best of `--rounds`, the
conditions taking turns), and whether each thread count gives the same weights every time.

    python benchmarks/classifier_threads.py                    # needs Fashion-MNIST; ≈ 5 min on 2 cores
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/classifier_threads.py
    → benchmarks/results/classifier_threads-<capability>.json
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from avae import __version__, config, hardware, run
from avae.data import load_data
from avae.metrics import features

sys.path.insert(0, str(Path(__file__).parent))
from threads_under_load import busy_processes  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def fit_once(data, targets, threads: int, images: int, epochs: int) -> tuple[float, torch.Tensor]:
    """Seconds of one classifier fit on `threads` threads, and its first layer's weights."""
    net = features.initial_net(data, targets, seed=0)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        features._fit(net, data, targets, 0, epochs, images, progress=False)
        return time.perf_counter() - start, net.body[0].weight.detach().clone()
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--busy", type=int, default=2, help="busy processes beside the fit in the second half")
    args = parser.parse_args()
    data = load_data(config.resolve(None, ["data.name=fashion_mnist"]), cut=False)
    targets = features.targets_of(data.train, data)
    rows = []
    for busy in sorted({0, args.busy}):
        with busy_processes(busy):
            load = os.getloadavg()[0]
            seconds, weights = {1: [], 2: []}, {1: [], 2: []}
            for _ in range(args.rounds):
                for threads in (1, 2):
                    s, w = fit_once(data, targets, threads, args.images, args.epochs)
                    seconds[threads].append(s)
                    weights[threads].append(w)
            for threads in (1, 2):
                same = all(torch.equal(w, weights[threads][0]) for w in weights[threads])
                rows.append({"busy_processes": busy, "threads": threads, "best_s": min(seconds[threads]),
                             "seconds": seconds[threads], "same_weights_each_round": same, "load_average_1min": load})
                print(f"busy {busy}, {threads} thread(s): best {min(seconds[threads]):6.1f} s of "
                      f"{[round(s, 1) for s in seconds[threads]]}; same weights each round: {same}; load {load:.1f}")
    facts = hardware.machine()
    out = RESULTS / f"classifier_threads-{facts['capability'].upper()}.json"
    run.write_json(out, {"command": "python benchmarks/classifier_threads.py " + " ".join(sys.argv[1:]),
                         "images": args.images, "epochs": args.epochs, "machine": facts,
                         "torch": torch.__version__, "avae": __version__, "rows": rows})
    print(f"written: {out}")


if __name__ == "__main__":
    main()
