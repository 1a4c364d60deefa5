"""Time `avae demo` and `avae evaluate` of its run, from a fresh cache, as a new user meets them.

    python benchmarks/demo_evaluate.py --out benchmarks/results/demo_evaluate-AVX2.json   # with
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 to hold the kernels to AVX2

The cache (bandwidths, the `auto` measurement, the feature classifier) starts empty, so the
evaluation includes training the feature classifier. The JSON records the machine, the load
average before and after each command, both wall times and the evaluation's phase timings.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from avae import hardware


def timed_command(args: list[str], env: dict) -> dict:
    load_before = os.getloadavg()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "avae", *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return {"command": "avae " + " ".join(args), "wall_s": round(time.perf_counter() - start, 1),
            "loadavg_before": load_before, "loadavg_after": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        env = os.environ | {"AVAE_CACHE_DIR": str(Path(scratch) / "cache")}
        run_dir = Path(scratch) / "demo"
        demo = timed_command(["demo", "--out", str(run_dir)], env)
        evaluation = timed_command(["evaluate", str(run_dir)], env)
        result = json.loads((run_dir / "evaluate.json").read_text())
    record = {
        "machine": hardware.machine(),
        "demo": demo, "evaluate": evaluation, "evaluate_phases_s": result["timings_s"],
        "feature_classifier_test_accuracy": result["feature_space"].get("test_accuracy"),
        "disentanglement": {name: {"score": m["score"], "standard_error": m.get("standard_error")}
                            for name, m in result.get("disentanglement", {}).items()},
    }
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: record[k] for k in ("demo", "evaluate")}, indent=1))


if __name__ == "__main__":
    main()
