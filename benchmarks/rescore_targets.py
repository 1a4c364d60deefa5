"""Re-score a committed suite's records against each model's own sampling distribution.

Records written before `avae evaluate` scored latent fits against the sampling distribution
(and computed the entropy estimator's Gaussian reference) are brought up to date from what they
hold; what needs the run directories (not in the repository) is dropped and listed:
- models sampling from N(0, I): the stored fit to N(0, I) is also the fit to the sampler;
- the AVAE: the stored fit was already to N(0, (1−h²)I); its ‖z‖² test against N(0, I) needs a new evaluation;
- RAE/AE (a Gaussian fitted to training codes): the stored "sampling" fit used N(0, mean variance·I),
  not the fitted Gaussian, so it is dropped until the runs are evaluated again;
- the entropy's Gaussian reference is computed here (it depends only on l, n, h and the seed).

    python benchmarks/rescore_targets.py benchmarks/results/paper-cpu.json
"""
from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

from avae import benchmark, run
from avae.metrics.latent import gaussian_entropy_reference
from avae.models.base import Model

PRIOR = Model.sampler
gaussian_reference = functools.cache(gaussian_entropy_reference)  # the same (l, n, h, seed) recurs per model


def upgrade(evaluation: dict) -> list[str]:
    """Bring one evaluation's latent_quality up to date in place; returns what it could not fill."""
    lq = evaluation["latent_quality"]
    if "sampling_distribution" in lq:
        return []
    sampler = evaluation["sampler"]
    lq["sampling_distribution"] = sampler
    missing = []
    if sampler == PRIOR:
        lq["norm_chi2_test_prior"] = lq["norm_chi2_test"]
    elif lq["sampling_variance"] != 1.0 and "(1−h²)" in sampler:
        missing.append("norm_chi2_test_prior")
    else:
        del lq["gaussian_kl_to_sampling_distribution"], lq["norm_chi2_test"]
        missing += ["gaussian_kl_to_sampling_distribution", "norm_chi2_test", "norm_chi2_test_prior"]
    entropy = lq["entropy"]
    l = len(lq["collapsed_axes"]["variances"])
    entropy["gaussian_reference"] = gaussian_reference(
        l, entropy["params"]["n"], entropy["params"]["h"], evaluation["seed"], entropy["params"]["floor_quantile"])
    return missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a suite's results JSON")
    args = parser.parse_args()
    payload = json.loads(args.results.read_text())
    needs = payload.get("needs_new_evaluation", {})  # kept when the script runs again
    for record in payload["records"]:
        missing = upgrade(record["evaluation"])
        if missing:
            needs[f"{record['dataset']}-{record['model']}-s{record['seed']}"] = missing
        record["headline"] = benchmark.headlines(record["evaluation"], record["training"])
    out = benchmark.write_results(payload["suite"], payload["records"], args.results.parent, payload["performance"])
    rescored = json.loads(out.read_text())
    rescored["needs_new_evaluation"] = needs
    run.write_json(out, rescored)
    benchmark.write_pages(rescored, out.parent)  # the .md and .html list what needs a new evaluation
    if not needs:
        return
    print(f"{out}: {len(needs)} records need a new evaluation for some latent metrics")


if __name__ == "__main__":
    main()
