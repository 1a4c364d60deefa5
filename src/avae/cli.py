"""The `avae` command: train, config, demo, evaluate, sample, compare, export, fit-sampler, benchmark, bandwidth, models."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from . import atomic, machine_load, schema
from .errors import AvaeError

COMPUTING = ("train", "demo", "evaluate", "fit-sampler", "benchmark")  # commands whose threads share the machine


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help, or a bad flag (already reported in one line)
        return e.code if isinstance(e.code, int) else 0
    if args.command in COMPUTING:
        machine_load.openmp_waits_passively()  # before torch starts OpenMP, which reads it once
    try:
        return args.run(args) or 0
    except AvaeError as e:
        print(f"avae: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of our output (e.g. `| head`) closed it: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush does not fail again
        return 141  # 128 + SIGPIPE, as a shell tool ends
    except OSError as e:  # a place the user named that cannot be written (full disk, read-only folder)
        print(f"avae: error: {e.strerror or e}: {e.filename or ''}; choose another place or free it", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        words = sys.argv[1:] if argv is None else argv
        print(f"\navae: interrupted; {_after_interrupt(args, getattr(e, 'run_dir', None), words)}", file=sys.stderr)
        return 130


def _after_interrupt(args, run_dir, words: list[str]) -> str:
    """What to do after Ctrl-C: the run to resume (the trainer names it), or the command to repeat."""
    if args.command == "benchmark":  # its finished runs are kept and the interrupted one resumes
        return f"finished runs are kept; the suite continues with\navae {shlex.join(words)}"
    if run_dir is not None:
        from . import run

        if not run.has_checkpoint(run_dir):
            return f"no checkpoint was written yet; start the run again with\navae train --config " \
                   f"{run_dir / run.CONFIG} --out {run_dir}"
        return f"the run continues with\navae train --resume {run_dir}"
    if args.command == "evaluate":
        return "evaluate.json was not written; the line above names what was kept and the command that continues"
    return "nothing was finished; run the command again"


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


class _Parser(argparse.ArgumentParser):
    """Reports a bad flag in one line (the usage is one `--help` away); `--help` shows each default."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, formatter_class=_Help, **kwargs)

    def error(self, message):
        self.exit(2, f"avae: error: {message} (see `{self.prog} --help`)\n")


class _Help(argparse.HelpFormatter):
    """Each flag's help ends with its default, where it has one the help does not already name."""

    def _get_help_string(self, action):
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default in ([], argparse.SUPPRESS)
        if "default" in text or unset or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _flag(kind, rules: dict):
    """An argparse type that checks a flag's value with the settings' validator."""

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = text
        try:
            return schema.check_value("value", value, kind, rules)
        except AvaeError:
            raise argparse.ArgumentTypeError(f"must be {schema.describe(kind, rules)}, got {text!r}") from None

    return convert


def _setting_flag(cls, name: str):
    """The argparse type of a config setting: its declared type and range."""
    return _flag(*schema.fields(cls)[name])


# the samplers (avae.samplers.SAMPLERS, named here so that parsing imports no torch)
SAMPLERS_HELP = ("prior (the model's own), gaussian, gmm, flow (pip install 'avae[flow]'), "
                 "latent_diffusion (pip install 'avae[diffusion]'); all but prior fitted first with `avae fit-sampler`")


def _parser() -> argparse.ArgumentParser:
    from .config import EVALUATE_DEFAULTS as D, EVALUATE_SETTINGS as EVALUATE, TrainSettings
    from .launchers import LAUNCHERS, Resources

    p = _Parser(prog="avae", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model (the AVAE or a baseline) into a run directory")
    _config_flags(t, TrainSettings)
    t.add_argument("--out", help="run directory (default runs/<dataset>-<model>-<time>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    _trust_flag(t)
    t.set_defaults(run=_train)

    f = sub.add_parser("config", help="print the whole configuration that `avae train` with these flags would use")
    _config_flags(f, TrainSettings)
    f.set_defaults(run=_config)

    d = sub.add_parser("demo", help="the default job: AVAE on procedural dSprites, no download")
    d.add_argument("--out", help="run directory (default runs/demo-<time>)")
    d.set_defaults(run=_demo)

    s = sub.add_parser("sample", help="generate images from a trained run")
    s.add_argument("run_dir")
    s.add_argument("-n", type=_flag(int, {"minimum": 1}), default=64, help="number of images")
    s.add_argument("--seed", type=_flag(int, schema.SEED), default=0, help="seed of the codes drawn")
    s.add_argument("--checkpoint", choices=["last", "best"], default="last", help="checkpoint to load")
    s.add_argument("--out", help="folder to write samples.npy and samples.png into (default RUN_DIR)")
    s.add_argument("--sampler", default="prior", help=f"what the codes are drawn from: {SAMPLERS_HELP}")
    _trust_flag(s)
    s.set_defaults(run=_sample)

    e = sub.add_parser("evaluate", help="score a trained run: sample quality, latent quality, disentanglement")
    e.add_argument("run_dir")
    e.add_argument("-n", type=_flag(*EVALUATE["n"]), default=D.n,
                   help="held-out images, samples and interpolations (each)")
    e.add_argument("--seed", type=_flag(*EVALUATE["seed"]), default=D.seed, help="seed of every metric's draws")
    e.add_argument("--features", choices=EVALUATE["features"][1]["choices"], default=D.features,
                   help="feature space for FD and precision/recall: classifier (trained on the labels or factors), "
                        "random (an untrained fixed-seed CNN, needs no labels), inception (needs avae[fid]); "
                        "auto: classifier where the data have labels or factors, else random")
    e.add_argument("--inception-weights", help="path of the Inception-v3 2015-12-05 weights (offline)")
    e.add_argument("--checkpoint", choices=EVALUATE["checkpoint"][1]["choices"], default=D.checkpoint,
                   help="checkpoint to score")
    e.add_argument("--split", choices=EVALUATE["split"][1]["choices"], default=D.split,
                   help="held-out split (default: test where it exists)")
    e.add_argument("--disentanglement", choices=EVALUATE["disentanglement"][1]["choices"], default=D.disentanglement,
                   help="metric sizes for datasets with ground-truth factors: fast (the default: reduced sizes, "
                        "minutes), default (disentanglement_lib's and the authors' sizes, hours on a CPU), none")
    e.add_argument("--samplers", default=D.samplers, metavar="NAMES",
                   help=f"score the samples of each sampler side by side, names separated by commas (e.g. "
                        f"prior,gmm,flow): {SAMPLERS_HELP}")
    e.add_argument("--likelihood-samples", type=_flag(*EVALUATE["likelihood_samples"]), default=D.likelihood_samples,
                   metavar="K", help="importance samples per image of the negative log-likelihood (IWAE bound) of "
                                     "the VAE family and vamp; 0: skip it")
    e.add_argument("--likelihood-images", type=_flag(*EVALUATE["likelihood_images"]), default=D.likelihood_images,
                   metavar="M", help="held-out images the log-likelihood averages over, at most -n")
    _trust_flag(e)
    e.set_defaults(run=_evaluate)

    c = sub.add_parser("compare", help="evaluation results of several runs side by side, with the settings that differ")
    c.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    c.add_argument("--out", default=".", help="folder to write comparison.html into (default the current folder)")
    c.set_defaults(run=_compare)

    x = sub.add_parser("export", help="weights, config, encoder and decoder programs (torch.export) and the sampler's "
                                         "Gaussian, for use without avae")
    x.add_argument("run_dir")
    x.add_argument("--out", help="folder to write (default RUN_DIR/export)")
    x.add_argument("--checkpoint", choices=["last", "best"], default="last", help="checkpoint to export")
    x.add_argument("--sampler", default="prior",
                   help="sampler.pt's sampler: prior (the model's Gaussian), gaussian or gmm (fitted with "
                        "`avae fit-sampler`); flow and latent_diffusion need avae to sample")
    _trust_flag(x)
    x.set_defaults(run=_export)

    fs = sub.add_parser("fit-sampler", help="fit a sampler to a trained run's codes, report its fit and save it in "
                                            "the run (for sample, export and evaluate to draw from)")
    fs.add_argument("run_dir")
    fs.add_argument("--sampler", required=True, help=SAMPLERS_HELP)
    fs.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting of the sampler (e.g. k=10 for gmm)")
    fs.add_argument("--codes", type=_flag(int, {"minimum": 4}), default=10000,
                    help="training images whose codes are used (at most; the VAE family's codes are posterior means)")
    fs.add_argument("--heldout", type=_flag(float, {"above": 0, "below": 1}), default=0.1,
                    help="share of those codes held out to score the fit")
    fs.add_argument("--seed", type=_flag(int, schema.SEED), default=0, help="seed of the subset and of the fit")
    fs.add_argument("--checkpoint", choices=["last", "best"], default="last", help="checkpoint whose codes are used")
    _trust_flag(fs)
    fs.set_defaults(run=_fit_sampler)

    k = sub.add_parser("benchmark", help="train and evaluate every model × dataset × seed of a suite (resumable)")
    k.add_argument("--suite", default="paper-cpu", help="suite name (paper-cpu, paper, smoke) or YAML file")
    k.add_argument("--runs", default="benchmarks/runs", help="folder of the suite's run directories")
    k.add_argument("--results", default="benchmarks/results", help="folder for <suite>.json/.md/.html")
    k.add_argument("--data-root", help="folder holding the datasets' files")
    k.add_argument("--datasets", help="comma-separated part of the suite to run (results: <suite>-<datasets>.*)")
    k.add_argument("--seeds", help="comma-separated seeds of the suite to run (results: <suite>[-<datasets>]-s<seeds>.*)")
    k.add_argument("--pages-only", action="store_true",
                   help="rewrite the .md and .html pages from the results JSON; train and evaluate nothing")
    k.add_argument("--launcher", choices=list(LAUNCHERS), default="local",
                   help="where each unfinished run is trained and evaluated: local (this machine), submitit (a SLURM "
                        "job array: pip install 'avae[slurm]'), ray (Ray tasks: pip install 'avae[ray]')")
    k.add_argument("--max-parallel", type=_flag(int, {"minimum": 1}), metavar="N",
                   help="runs at a time (local: 1 unless given, in this process; submitit, ray: as many as the cluster "
                        "takes unless given)")
    k.add_argument("--jobs", action="store_true",
                   help="print one shell command per unfinished run, for any scheduler; run them in any order, then "
                        "this command without --jobs writes the results")
    k.add_argument("--only", metavar="RUN", help="train and evaluate the one run RUN (e.g. mnist-avae-s0), as a --jobs "
                                                  "command does; no results are written")
    k.add_argument("--samplers", metavar="NAMES",
                   help="score each run's samples once per sampler, names separated by commas (e.g. prior,gmm; "
                        "default: the suite's evaluate.samplers, else prior): a finished run not scored with all of them has "
                        f"each missing one fitted and is evaluated again, without training: {SAMPLERS_HELP}")
    k.add_argument("--submitit-cluster", choices=["slurm", "local"], default="slurm",
                   help="with --launcher submitit: slurm, or local (submitit's local executor: processes here)")
    k.add_argument("--ray-address", help="with --launcher ray: a running cluster's address (default $RAY_ADDRESS, "
                                         "else a local Ray instance)")
    r = k.add_argument_group("resources of each run (over the suite file's `resources:`)")
    for name, kind, what in (("gpus", float, "GPUs (several: a DDP run; a fraction: Ray shares a GPU)"),
                             ("cpus", float, "CPU cores, also its torch threads"), ("mem_gb", float, "memory in GB"),
                             ("time_min", int, "SLURM time limit in minutes (default 24 hours)"),
                             ("partition", str, "SLURM partition"), ("account", str, "SLURM account")):
        r.add_argument(f"--{name.replace('_', '-')}", type=_flag(kind, schema.fields(Resources)[name][1]), help=what)
    _trust_flag(k)
    k.set_defaults(run=_benchmark)

    b = sub.add_parser("bandwidth", help="the bias-corrected KDE bandwidth for latent size l and KDE size m")
    b.add_argument("-l", "--latent-dim", type=_flag(int, schema.LATENT_DIM), required=True, help="latent size l")
    b.add_argument("-m", "--kde-size", type=_flag(int, schema.KDE_SIZE), required=True, help="KDE size m")
    b.add_argument("--seed", type=_flag(int, schema.SEED), default=0, help="seed of the estimate's draws")
    b.add_argument("--no-cache", action="store_true", help="compute anew, ignoring the on-disk cache")
    b.add_argument("--json", action="store_true", help="print JSON")
    b.set_defaults(run=_bandwidth)

    m = sub.add_parser("models", help="list the models")
    m.set_defaults(run=_models)

    ds = sub.add_parser("datasets", help="list the datasets and where each one's files are looked for")
    ds.add_argument("--data-root", help="the data root you would pass to `avae train` (else $AVAE_DATA_ROOT)")
    ds.set_defaults(run=_datasets)
    return p


def _config_flags(parser, TrainSettings) -> None:
    """The flags that choose a configuration (`avae train`, `avae config`)."""
    parser.add_argument("--config", help="YAML file or preset name (e.g. demo)")
    parser.add_argument("--dataset", help="dataset name (its preset supplies the paper's settings)")
    parser.add_argument("--model", help="model name, see `avae models`")
    parser.add_argument("--epochs", type=_setting_flag(TrainSettings, "epochs"), help="train.epochs (default: the config's)")
    parser.add_argument("--seed", type=_setting_flag(TrainSettings, "seed"), help="train.seed (default: the config's, else 0)")
    parser.add_argument("--data-root", help="folder holding the dataset's files (else $AVAE_DATA_ROOT); for the "
                        "images dataset the folder of images, for array the .npy/.npz file")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")


def _trust_flag(parser) -> None:
    parser.add_argument("--trust-code", action="store_true",
                        help="open a run whose config names its own network classes (this imports and runs their "
                             "code: only for runs you trust)")


def _train(args) -> int:
    from . import trainer
    from .api import resume

    if args.resume:
        given = (args.config, args.dataset, args.model, args.epochs, args.seed, args.data_root, args.out)
        if args.set or any(value is not None for value in given):
            raise AvaeError("--resume continues a run with its own config; give no other settings")
        run_dir = resume(Path(args.resume), trust_code=args.trust_code)
        return _finished(run_dir)
    if args.trust_code:
        raise AvaeError("--trust-code goes with --resume (a new run imports the classes its config names)")
    cfg = _resolved(args)
    return _finished(trainer.start(cfg, Path(args.out) if args.out else trainer.default_run_dir(cfg)))


def _resolved(args):
    """The configuration the flags of `avae train` (and `avae config`) ask for."""
    from . import config

    if args.data_root is not None and not args.data_root.strip():  # _absolute would turn "" into the current folder
        raise AvaeError("--data-root is empty; give the folder or file that holds the data, or leave the flag out")
    flags = {}  # as values: a path is never read back as YAML
    for (key, value), flag in zip((("data.name", args.dataset), ("model.name", args.model), ("train.epochs", args.epochs),
                                   ("train.seed", args.seed), ("data.root", _absolute(args.data_root))),
                                  ("--dataset", "--model", "--epochs", "--seed", "--data-root")):
        if value is None:
            continue
        if any(item.partition("=")[0].strip() == key for item in args.set):
            raise AvaeError(f"{flag} and --set {key}=... both set {key}; give it once")
        flags[key] = value
    return config.resolve(args.config, list(args.set), flags)


def _config(args) -> int:
    from . import config

    print(config.dump(_resolved(args)), end="")
    return 0


def _absolute(path: str | None) -> str | None:
    """A path that still names the same file when the run is resumed or evaluated from another folder."""
    return None if path is None else str(Path(path).expanduser().resolve())


def _demo(args) -> int:
    from . import config, hardware, trainer

    out = Path(args.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    print(f"avae demo: training the AVAE on procedural dSprites into {out}", file=sys.stderr)
    busy, cores = hardware.busy_cores(), hardware.available_cores()
    if busy > hardware.QUIET_SHARE * cores:
        print(f"note: other work keeps {busy:.1f} of this machine's {cores} cores busy, so the demo's minute will "
              "be longer (it runs on the cores left free)", file=sys.stderr)
    return _finished(trainer.start(config.resolve("demo"), out))


def _finished(run_dir: Path) -> int:
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    from . import run

    figures = sorted((run_dir / run.FIGURES).glob("epoch_*"))
    print(f"run finished: {run_dir}")
    if figures:
        print(f"pictures: {figures[-1]}/ (samples.png, reconstructions.png, latents.png, norms.png)")
    print(f"metrics: {run_dir / run.METRICS}")
    print(f"next: `avae evaluate {run_dir}` scores it; `avae sample {run_dir} -n 64` draws new images")
    return 0


def _sample(args) -> int:
    import numpy as np

    from . import report, run
    from .api import sample
    from .samplers import sampler_class

    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir
    if out.exists() and not out.is_dir():
        raise AvaeError(f"--out {out} is a file, not a folder; give the folder to write samples.npy and samples.png into")
    images = sample(run_dir, args.n, seed=args.seed, checkpoint=args.checkpoint, sampler=args.sampler,
                    trust_code=args.trust_code)
    run.make_folder(out)
    atomic.save_file(lambda tmp: np.save(tmp, images), out / "samples.npy")
    report.save_grid(out / "samples.png", images[:256])
    drawn = f"{args.sampler}: {sampler_class(args.sampler).description}"
    print(f"{len(images)} samples (codes drawn by {drawn}): {out / 'samples.npy'} and {out / 'samples.png'}")
    return 0


def _evaluate(args) -> int:
    from .api import evaluate

    result = evaluate(args.run_dir, n=args.n, seed=args.seed, features=args.features,
                      inception_weights=args.inception_weights, checkpoint=args.checkpoint, split=args.split,
                      disentanglement=args.disentanglement, samplers=args.samplers,
                      likelihood_samples=args.likelihood_samples, likelihood_images=args.likelihood_images,
                      trust_code=args.trust_code)
    space = result["feature_space"]
    print(f"feature space: {space['name']}" + (f" ({space['note']})" if "note" in space else ""))
    for name, q in result["sample_quality"].items():
        print(f"{name:>3}: FD {q['frechet_distance']:.3f}  PRD P/R {q['prd']['precision']:.3f}/{q['prd']['recall']:.3f}")
    for name, s in result.get("samplers", {}).items():
        q, fit = s["sample_quality"], s["latent_fit"]
        print(f"N, {name} sampler: FD {q['frechet_distance']:.3f}  PRD P/R {q['prd']['precision']:.3f}/"
              f"{q['prd']['recall']:.3f}  sliced KS to the codes {fit['sliced_ks']:.3f}")
    lq = result["latent_quality"]
    print(f"entropy {lq['entropy']['entropy']:.3f} (reference {lq['entropy']['reference']})  "
          f"MSE/pixel {lq['reconstruction']['mse_per_pixel']:.5f}  collapsed axes {lq['collapsed_axes']['count']}")
    nll = result["likelihood"]
    print(f"NLL {nll['nll_nats']:.2f} nats/image, {nll['bits_per_dim']:.4f} bits/dim (IWAE bound, "
          f"K = {nll['samples']}, {nll['n']} images)" if "nll_nats" in nll else f"NLL: none ({nll['absent']})")
    print(f"written: {Path(args.run_dir) / 'evaluate.json'} and {Path(args.run_dir) / 'evaluate.html'}")
    return 0


def _compare(args) -> int:
    from .api import compare
    from .comparison import COMPARISON, text_table

    comparison = compare(args.run_dirs, args.out)
    print(text_table(comparison))
    print(f"written: {Path(args.out) / COMPARISON}")
    return 0


def _export(args) -> int:
    from .api import export

    out = export(args.run_dir, args.out, args.checkpoint, trust_code=args.trust_code, sampler=args.sampler)
    tensors = ("weights, means and scale_trils of the gmm's components" if args.sampler == "gmm"
               else "mean and scale_tril of the codes' Gaussian" + ("" if args.sampler == "prior" else f" ({args.sampler})"))
    print(f"exported to {out}/: weights.pt (state dict), config.yaml, data_spec.json, encoder.pt2 and decoder.pt2 "
          f"(torch.export.load(path).module()), sampler.pt ({tensors})")
    return 0


def _fit_sampler(args) -> int:
    from . import config, samplers

    settings = {}
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise AvaeError(f"--set {item}: a sampler setting must look like key=value, e.g. k=10")
        try:
            settings[key.strip()] = config.load_yaml(raw)
        except config.yaml.YAMLError:
            raise AvaeError(f"--set {item}: the value is not valid YAML; quote it or fix it") from None
    fitted = samplers.fit_sampler(args.run_dir, args.sampler, settings, codes=args.codes, heldout=args.heldout,
                                  seed=args.seed, checkpoint=args.checkpoint, trust_code=args.trust_code, progress=True)
    report = fitted.report
    if fitted.path is None:
        print(f"{args.sampler}: the model's own sampler (nothing to fit), scored on the {report.details['codes']} of "
              f"training images ({args.checkpoint} checkpoint)")
    else:
        print(f"{args.sampler} fitted in {report.seconds:.1f} s to the {report.details['codes']} of "
              f"{report.codes_train:,} training images ({args.checkpoint} checkpoint)")
    print(f"  {report.summary()}")
    extra = {k: v for k, v in report.details.items() if k != "codes"}
    if extra:
        print("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in extra.items()))
    if fitted.path is not None:
        print(f"saved: {fitted.path}")
        print(f"next: `avae sample {args.run_dir} --sampler {args.sampler}` draws images from it")
    return 0


def _benchmark(args) -> int:
    from . import launchers
    from .benchmark import job_commands, rewrite_pages, run_named, run_suite

    datasets = args.datasets.split(",") if args.datasets else None
    seeds = _seeds(args.seeds) if args.seeds else None
    resources = {name: getattr(args, name) for name in schema.fields(launchers.Resources)}
    if args.samplers is not None:  # an unknown name is refused before anything runs
        from .samplers import parse_names
        parse_names(args.samplers)
    modes = [flag for flag, on in (("--pages-only", args.pages_only), ("--jobs", args.jobs), ("--only", args.only))
             if on]
    if len(modes) > 1:
        raise AvaeError(f"{' and '.join(modes)} ask for different things; give one of them")
    engine = [flag for flag, on in (("--launcher", args.launcher != "local"), ("--max-parallel", args.max_parallel),
                                    ("--submitit-cluster", args.submitit_cluster != "slurm"),
                                    ("--ray-address", args.ray_address)) if on]
    if modes and engine:
        raise AvaeError(f"{modes[0]} launches nothing; leave out {', '.join(engine)}")
    for flag, value, launcher in (("--submitit-cluster", args.submitit_cluster != "slurm", "submitit"),
                                  ("--ray-address", args.ray_address, "ray")):
        if value and args.launcher != launcher:
            raise AvaeError(f"{flag} goes with --launcher {launcher}")
    if args.only and (datasets or seeds):
        raise AvaeError(f"--only names one run; leave out {'--datasets' if datasets else '--seeds'}")
    if args.pages_only:
        out = rewrite_pages(args.suite, Path(args.results), datasets, seeds)
    elif args.jobs:
        commands = job_commands(args.suite, Path(args.runs), _absolute(args.data_root), datasets,
                                trust_code=args.trust_code, resources=resources, samplers=args.samplers, seeds=seeds)
        print(f"# {len(commands)} unfinished run(s): run these commands in any order, then `avae benchmark --suite "
              f"{args.suite}` (with the same --runs and --results) writes the results", file=sys.stderr)
        for command in commands:
            print(command)
        return 0
    elif args.only:
        outcome = run_named(args.suite, args.only, Path(args.runs), _absolute(args.data_root),
                            trust_code=args.trust_code, samplers=args.samplers)
        if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
            print(f"run {args.only} is already evaluated; nothing to do" if outcome is None else
                  f"run {args.only} finished in {outcome.seconds:.1f} s (log: {outcome.log})")
        return 0
    else:
        options = launchers.Options(max_parallel=args.max_parallel, cluster=args.submitit_cluster,
                                    address=args.ray_address)
        out = run_suite(args.suite, Path(args.runs), Path(args.results), args.data_root, datasets,
                        trust_code=args.trust_code, launcher=args.launcher, options=options, resources=resources,
                        samplers=args.samplers, seeds=seeds)
    print(f"results: {out}, {out.with_suffix('.md')}, {out.with_suffix('.html')}")
    return 0


def _seeds(text: str) -> list[int]:
    """Seeds from '0,1'; anything else is one line."""
    try:
        return [int(item) for item in text.split(",")]
    except ValueError:
        raise AvaeError(f"--seeds takes seeds separated by commas (e.g. 0,1), got {text!r}") from None


def _bandwidth(args) -> int:
    from .api import bandwidth
    from .kde_bandwidth import as_dict

    start = time.perf_counter()
    bw = bandwidth(args.latent_dim, args.kde_size, seed=args.seed, cache=not args.no_cache, progress=True)
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps({**as_dict(bw), "seconds": seconds}))
    else:
        print(f"l={bw.latent_dim} m={bw.kde_size}: h_opt={bw.h_opt:.4f}  h={bw.h:.4f}  sampling std={bw.sampling_std:.4f}")
    return 0


def _datasets(args) -> int:
    from .data import DATASETS

    width = max(map(len, DATASETS))
    for name, entry in sorted(DATASETS.items()):
        print(f"{name:<{width}}  {entry.summary}\n{'':<{width}}  files: {entry.where(args.data_root)}")
    return 0


def _models(args) -> int:
    from .models import MODELS

    width = max(map(len, MODELS))
    for name, cls in sorted(MODELS.items()):
        print(f"{name:<{width}}  {cls.description}  [samples: {cls.sampler}]")
    return 0
