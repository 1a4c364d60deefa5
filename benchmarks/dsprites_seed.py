"""Why dSprites seed 1 fails for the deterministic encoders in `paper-cpu`: the suite's dSprites
settings with the seed split into its parts (initial weights; training subset and order), with
more epochs and with other learning rates. Resumable; prints and writes the validation
reconstruction cost per epoch beside that of the best constant image (the per-pixel mean).

    python benchmarks/dsprites_seed.py --model rae      # → results/dsprites_seed.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from avae import config, run, trainer
from avae.likelihood import Likelihood
from avae.models import Model, build_model, data_spec, new_model
from avae.data import load_data

SUITE = ["data.name=dsprites", "data.train_size=40000", "data.val_size=5000", "model.width=0.5",
         "train.figures_every=0", "train.progress=false"]
OWN = {"avae": ["model.kde_size=2000"]}
# name: (seed for the initial weights, seed for the training subset and order, epochs, other settings)
VARIANTS = {
    "seed0": (0, 0, 3, []), "seed1": (1, 1, 8, []), "init1_data0": (1, 0, 3, []), "init0_data1": (0, 1, 3, []),
    "seed1_lr1e-3": (1, 1, 3, ["train.lr=0.001"]), "seed1_lr2e-4": (1, 1, 3, ["train.lr=0.0002"]),
    "seed3": (3, 3, 3, []), "seed4": (4, 4, 3, []), "init2_data1": (2, 1, 3, []),
}


def settings(model: str, data_seed: int, epochs: int, extra: list[str], threads: int) -> list[str]:
    return SUITE + OWN.get(model, []) + extra + [f"model.name={model}", f"train.seed={data_seed}",
                                                  f"train.epochs={epochs}", f"train.threads={threads}"]


def train_variant(run_dir: Path, init_seed: int, cfg_settings: list[str]) -> list[dict]:
    """Train (or resume) one variant; the weights come from init_seed as paper-cpu drew them, the data
    subset and order from train.seed."""
    seeded_model = trainer.seeded_model
    trainer.seeded_model = lambda cfg, data: paper_cpu_weights(init_seed, cfg, data_spec(data))
    try:
        status = run.status(run_dir)
        if status is None:
            trainer.start(config.resolve(None, cfg_settings), run_dir)
        elif status != "finished":
            trainer.resume(run_dir)
    finally:
        trainer.seeded_model = seeded_model
    return run.read_metrics(run_dir)


def paper_cpu_weights(seed: int, cfg: config.Config, spec) -> Model:
    """A model's initial weights as paper-cpu drew them: torch seeded with train.seed alone, whatever the
    model (now the model's name enters the seed too); torch's noise stream follows on from them."""
    torch.manual_seed(seed)
    return build_model(cfg.to_dict()["model"], spec)


def shared_initialisation(seed: int) -> dict:
    """How many encoder and decoder tensors each model shares with the AVAE at one seed, before training,
    with paper-cpu's weights and with the current ones."""
    nets: dict = {"train.seed alone (paper-cpu)": {}, "train.seed and the model's name (now)": {}}
    spec = None
    for model in ["avae", "rae", "aae", "wae", "vae", "beta_tcvae"]:
        cfg = config.resolve(None, SUITE + OWN.get(model, []) + [f"model.name={model}", f"train.seed={seed}"])
        spec = spec or data_spec(load_data(cfg))
        for scheme, built in zip(nets, [paper_cpu_weights(seed, cfg, spec), new_model(cfg, spec)]):
            nets[scheme][model] = {k: v for k, v in built.state_dict().items() if k.startswith(("encoder", "decoder"))}
    counts = {}
    for scheme, of in nets.items():
        ref = of["avae"]
        counts[scheme] = {model: f"{sum(k in sd and torch.equal(sd[k], ref[k]) for k in ref)}/{len(ref)}"
                          for model, sd in of.items()}
    return counts


def constant_image_cost(data_seed: int) -> float:
    """The validation reconstruction cost of the per-pixel mean of the training images, decoded for every input."""
    data = load_data(config.resolve(None, SUITE + ["model.name=rae", f"train.seed={data_seed}"]))
    train_images = torch.as_tensor(data.train.images(np.arange(len(data.train)))).double() / 255
    mean = train_images.mean(0, keepdim=True).clamp(1e-6, 1 - 1e-6)
    val = torch.as_tensor(data.val.images(np.arange(len(data.val)))).double() / 255
    return float(Likelihood("bernoulli").per_image(torch.logit(mean).expand_as(val), val).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="rae")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs/dsprites-seed"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dsprites_seed.json"))
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results.setdefault("runs", {})
    if "train.seed alone (paper-cpu)" not in results.get("tensors_identical_to_the_avae_at_seed_1", {}):
        results["tensors_identical_to_the_avae_at_seed_1"] = shared_initialisation(1)
    if "constant_image_val_recon" not in results:
        results["constant_image_val_recon"] = {f"data_seed {s}": constant_image_cost(s) for s in (0, 1)}
    print(results["constant_image_val_recon"], flush=True)
    for name in args.variants.split(","):
        init_seed, data_seed, epochs, extra = VARIANTS[name]
        epochs_ = train_variant(args.runs / f"{args.model}-{name}", init_seed,
                      settings(args.model, data_seed, epochs, extra, args.threads))
        results["runs"][f"{args.model}-{name}"] = {
            "model": args.model, "init_seed": init_seed, "data_seed": data_seed, "settings": extra,
            "val_recon": [e["val_recon"] for e in epochs_], "train_recon": [e["train_recon"] for e in epochs_],
            "epoch_s": [e["epoch_s"] for e in epochs_]}
        print(args.model, name, [round(e["val_recon"], 1) for e in epochs_], flush=True)
        results.update(command="python benchmarks/dsprites_seed.py --model MODEL [--variants A,B]",
                       settings=SUITE, threads=args.threads)
        results.pop("not_run", None)
        run.write_json(args.out, results)


if __name__ == "__main__":
    main()
