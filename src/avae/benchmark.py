"""`avae benchmark`: every model × dataset × seed of a suite, trained, evaluated and compared.

A suite (configs/suites/<name>.yaml) lists experiments: a dataset, its models, settings shared by
all of them and settings per model. Runs live in <runs>/<suite>/<dataset>-<model>-s<seed>; a
finished and evaluated run is skipped, an interrupted one resumes, so the command can be called
again until the suite is complete. Results: <results>/<suite>.json (one record per run),
<results>/<suite>.md (mean ± std tables, the paper's numbers beside ours) and <results>/<suite>.html,
both written by `avae.pages`; the speed figures are measured by `avae.performance`.

Samplers (`--samplers prior,gmm` or the suite's `evaluate: {samplers: ...}`): a run's samples are
scored once per sampler; a finished run not yet scored with all of them has each missing sampler
fitted (the run's seed, default settings) and is evaluated again, without training again.

Each unfinished run is one job, `run_one`, wherever it runs: in this process, in processes of its
own, in a SLURM job array or on Ray (`avae.launchers`), or by any scheduler through the commands
`job_commands` lists; the results are written once every run has been evaluated.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from . import __version__, atomic, config, launchers, pages, performance, run, samplers, trainer
from .errors import AvaeError
from .evaluation import evaluate
from .metrics.catalogue import HEADLINES, SAMPLER_HEADLINES, headlines, sampler_headlines
from .schema import setting


def suite_samplers(suite: dict) -> list[str]:
    """The samplers a suite's runs are scored with (its evaluation's `samplers`; prior by default)."""
    return samplers.parse_names((suite.get("evaluate") or {}).get("samplers", "prior"))


def with_samplers(suite: dict, names: str | None) -> dict:
    """The suite with its runs scored by the samplers `names` ('prior,gmm'; None: the suite file's)."""
    if names is None:
        return suite
    chosen = samplers.parse_names(names)
    if chosen == suite_samplers(suite):
        return suite
    return {**suite, "evaluate": {**(suite.get("evaluate") or {}), "samplers": ",".join(chosen)}}


@dataclass
class Job:
    dataset: str
    model: str
    seed: int
    settings: dict = field(default_factory=dict)  # dotted name → value, for config.resolve(settings=...)
    resources: dict = field(default_factory=dict)  # what the run asks of its engine (launchers.Resources)

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.model}-s{self.seed}"


SEEDS = {"kind": int, "minimum": 0}


@dataclass
class SuiteSettings:
    """A suite file's top level."""

    experiments: list = setting(items={"kind": dict}, min_length=1)
    name: str | None = setting(None)
    description: str | None = setting(None)
    seeds: list = setting(factory=lambda: [0], items=SEEDS, min_length=1)
    evaluate: dict = setting(factory=dict)  # keyword arguments of `evaluate` (config.EVALUATE_SETTINGS)
    resources: dict = setting(factory=dict)  # each run's GPUs, CPUs, memory, time, partition (launchers.Resources)


@dataclass
class ExperimentSettings:
    """One entry of a suite's experiments: a dataset, its models, their settings (SECTION.KEY: value)."""

    dataset: str = setting()
    models: list = setting(items={"kind": str}, min_length=1)
    seeds: list | None = setting(None, items=SEEDS, min_length=1)  # None: the suite's seeds
    settings: dict = setting(factory=dict)
    model_settings: dict = setting(factory=dict)  # model name → its own settings
    resources: dict = setting(factory=dict)  # over the suite's resources for this experiment's runs
    model_resources: dict = setting(factory=dict)  # model name → its runs' own resources


def load_suite(name: str) -> dict:
    """A suite, every entry checked (its run configs too) before anything runs."""
    path = Path(name)
    if not path.is_file():
        path = resources.files("avae") / "configs" / "suites" / f"{name}.yaml"
        if not path.is_file():
            names = sorted(p.stem for p in (resources.files("avae") / "configs" / "suites").iterdir())
            raise AvaeError(f"unknown suite '{name}'; suites are: {', '.join(names)} (or give a YAML file)")
    suite = config.check_section("suite", SuiteSettings, config.read_yaml(path, "suite"))
    suite["experiments"] = [_experiment(i, exp) for i, exp in enumerate(suite["experiments"], 1)]
    config.check_evaluate_settings(suite.get("evaluate", {}), "suite evaluate")
    try:
        suite_samplers(suite)
    except AvaeError as e:
        raise AvaeError(f"suite {path}, evaluate.samplers: {e}") from None
    suite["resources"] = config.check_section("suite.resources", launchers.Resources, suite.get("resources") or {})
    suite["name"] = suite.get("name") or Path(str(name)).stem
    for job in plan(suite):
        try:
            config.resolve(None, settings=job.settings)
        except AvaeError as e:
            raise AvaeError(f"suite {path}, run {job.name}: {e}") from None
    return suite


def _experiment(i: int, exp: dict) -> dict:
    where = f"suite.experiments[{i}]"
    exp = config.check_section(where, ExperimentSettings, exp)
    for section in ("model_settings", "model_resources"):
        for model, settings in exp.get(section, {}).items():
            if model not in exp["models"] or not isinstance(settings, (dict, type(None))):
                raise AvaeError(f"{where}.{section}.{model} must be a mapping of settings for one of the "
                                f"experiment's models ({', '.join(exp['models'])}), got {settings!r}")
    exp["resources"] = config.check_section(f"{where}.resources", launchers.Resources, exp.get("resources") or {})
    exp["model_resources"] = {model: config.check_section(f"{where}.model_resources.{model}", launchers.Resources,
                                                          values or {})
                              for model, values in exp.get("model_resources", {}).items()}
    return exp


def plan(suite: dict) -> list[Job]:
    """Every run of a suite; two runs of one name (one model listed twice for a dataset) are refused."""
    jobs: dict[str, Job] = {}
    for exp in suite["experiments"]:
        shared = exp.get("settings") or {}
        for model in exp["models"]:
            own = (exp.get("model_settings") or {}).get(model) or {}
            for seed in exp.get("seeds") or suite.get("seeds", [0]):
                settings = {"data.name": exp["dataset"], "model.name": model, "train.seed": seed,
                            "train.progress": False, **shared, **own}
                resources = launchers.merge(suite.get("resources"), exp.get("resources"),
                                            (exp.get("model_resources") or {}).get(model))
                job = Job(exp["dataset"], model, seed, settings, resources)
                if job.name in jobs:
                    raise AvaeError(f"suite {suite.get('name')} has run {job.name} twice (model {model} on "
                                    f"{exp['dataset']} with seed {seed}); list each model once per dataset, or put "
                                    "its other settings in a suite of their own")
                jobs[job.name] = job
    return list(jobs.values())


def run_suite(name: str, runs_root: Path = Path("benchmarks/runs"), results_root: Path = Path("benchmarks/results"),
              data_root: str | None = None, datasets: list[str] | None = None, *, trust_code: bool = False,
              launcher: str = "local", options: launchers.Options | None = None,
              resources: dict | None = None, samplers: str | None = None, seeds: list[int] | None = None) -> Path:
    """Train and evaluate every unfinished run of a suite through `launcher` (local, submitit, ray),
    then write the results. A run that fails is named (its log and the last line of its error) and
    the others go on; then nothing is written but the runs, and calling again resumes the failed ones.
    `resources` (launchers.Resources values) override the suite's for every run; `samplers` ('prior,gmm')
    the suite's evaluation samplers: a finished run not scored with all of them is scored again.
    `datasets`, `seeds`: the part of the suite to run (results: <suite>[-<datasets>][-s<seeds>].*)."""
    suite, jobs = _suite_jobs(name, datasets, resources, samplers, seeds)
    folder = Path(runs_root) / suite["name"]
    options = options or launchers.Options()
    if options.folder is None:
        options.folder = folder / ".submitit"
    engine = launchers.get(launcher, options)  # its package installed, or one line saying what to install
    names = suite_samplers(suite)
    todo = [job for job in jobs if not _scored(folder / job.name, names)]
    tasks = engine.prepare([_task(job, name, folder, data_root, suite, trust_code) for job in todo])
    engine.check(tasks)  # what this engine cannot run is refused before anything is submitted
    if tasks:
        print(f"benchmark {suite['name']}: {len(jobs)} runs, {len(jobs) - len(tasks)} finished before, {len(tasks)} to "
              f"run ({engine.describe(tasks)})", flush=True)
        progress = launchers.Progress(len(jobs), len(jobs) - len(tasks))
        failed = [o for o in engine.run(tasks, progress) if not o.ok]
        if failed:
            named = "; ".join(f"{o.name} ({o.error}; log: {o.log})" for o in failed[:3])
            more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
            raise AvaeError(f"{len(failed)} of {len(tasks)} runs failed: {named}{more}; the others are kept: fix the "
                            "cause and call the command again, which resumes the failed runs and writes the results")
    records = [_record(folder / job.name, job, names) for job in jobs]
    given = ",".join(names) if names != suite_samplers(load_suite(name)) else None  # named in the command
    return write_results(suite, records, Path(results_root), performance.measure(records, trust_code),
                         samplers=given)


def _suite_jobs(name: str, datasets: list[str] | None, resources: dict | None,
                samplers: str | None = None, seeds: list[int] | None = None) -> tuple[dict, list[Job]]:
    suite = _part(with_samplers(load_suite(name), samplers), datasets, seeds)
    given = config.check_section("resources", launchers.Resources, {k: v for k, v in (resources or {}).items()
                                                                       if v is not None})
    jobs = plan(suite)
    for job in jobs:
        job.resources = launchers.merge(job.resources, given)
    return suite, jobs


def _evaluated(run_dir: Path) -> bool:
    return (run_dir / run.EVALUATION).is_file()


def _scored(run_dir: Path, names: list[str]) -> bool:
    """Evaluated, with each of the samplers `names` scored (prior alone: any evaluation)."""
    if not _evaluated(run_dir):
        return False
    if names == ["prior"]:
        return True
    try:
        scored = json.loads((run_dir / run.EVALUATION).read_text()).get("samplers") or {}
    except (OSError, ValueError, AttributeError):
        return False
    return all(name in scored for name in names)


def _task(job: Job, suite_name: str, folder: Path, data_root: str | None, suite: dict,
          trust_code: bool) -> launchers.RunTask:
    root = str(Path(data_root).expanduser().resolve()) if data_root else None
    return launchers.RunTask(
        name=job.name, run_dir=str((folder / job.name).resolve()), settings=dict(job.settings), seed=job.seed,
        evaluate=dict(suite.get("evaluate") or {}), data_root=root, trust_code=trust_code,
        resources=dict(job.resources),
        command=tuple(_job_command(job, suite_name, folder.parent, root, trust_code, _samplers_flag(suite))))


def _samplers_flag(suite: dict) -> str | None:
    """The suite's samplers where they are not prior alone: a job's command names them."""
    names = suite_samplers(suite)
    return None if names == ["prior"] else ",".join(names)


def _job_command(job: Job, suite_name: str, runs_root: Path, data_root: str | None, trust_code: bool,
                 samplers: str | None = None) -> list[str]:
    """The command that trains and evaluates one run of a suite, from any folder; a run of several
    GPUs is started by torchrun, one process per GPU."""
    suite = str(Path(suite_name).resolve()) if Path(suite_name).is_file() else suite_name
    command = ["-m", "avae", "benchmark", "--suite", suite, "--runs", str(Path(runs_root).resolve())]
    command += ["--data-root", data_root] if data_root else []
    command += ["--trust-code"] if trust_code else []
    command += ["--samplers", samplers] if samplers else []
    gpus = int(job.resources.get("gpus") or 0)
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}"] if gpus > 1 else []
    return [sys.executable, *launcher, *command, "--only", job.name]


def job_commands(name: str, runs_root: Path = Path("benchmarks/runs"), data_root: str | None = None,
                 datasets: list[str] | None = None, *, trust_code: bool = False,
                 resources: dict | None = None, samplers: str | None = None, seeds: list[int] | None = None) -> list[str]:
    """One shell command per unfinished run of a suite, for any scheduler: run them in any order, in
    any number at a time, then `avae benchmark --suite NAME` writes the results."""
    suite, jobs = _suite_jobs(name, datasets, resources, samplers, seeds)
    folder = Path(runs_root) / suite["name"]
    root = str(Path(data_root).expanduser().resolve()) if data_root else None
    names = suite_samplers(suite)
    return [shlex.join(_job_command(job, name, Path(runs_root), root, trust_code, _samplers_flag(suite)))
            for job in jobs if not _scored(folder / job.name, names)]


def run_named(name: str, run_name: str, runs_root: Path = Path("benchmarks/runs"), data_root: str | None = None, *,
              trust_code: bool = False, samplers: str | None = None) -> launchers.Outcome | None:
    """Train and evaluate one run of a suite (what a `job_commands` command does); None if it was
    already evaluated. Its failure is one line naming its log."""
    suite, jobs = _suite_jobs(name, None, None, samplers)
    job = next((j for j in jobs if j.name == run_name), None)
    if job is None:
        names = [j.name for j in jobs]
        raise AvaeError(f"suite {suite['name']} has no run {run_name}; its runs are: {', '.join(names[:6])}"
                        + (f" and {len(names) - 6} more" if len(names) > 6 else ""))
    folder = Path(runs_root) / suite["name"]
    if _scored(folder / job.name, suite_samplers(suite)):
        return None
    outcome = run_one(_task(job, name, folder, data_root, suite, trust_code))
    if not outcome.ok:
        raise AvaeError(f"run {outcome.name} failed: {outcome.error} (log: {outcome.log})")
    return outcome


def run_one(task: launchers.RunTask) -> launchers.Outcome:
    """One run of a suite trained (or resumed from its checkpoint) and evaluated: the job of every
    launcher. Its output goes to RUN_DIR/benchmark.log, each attempt between a start and an end line;
    an error ends this run only: its traceback is logged and a failed Outcome returned. Under
    torch.distributed (torchrun, a submitit job of several GPUs) every rank trains, rank 0 evaluates."""
    rank = int(os.environ.get("RANK", "0"))
    run_dir = Path(task.run_dir)
    run.subfolder(run.make_folder(run_dir.parent, "--runs"), run_dir.name)  # a link there is refused
    log = launchers.log_path(run_dir, rank)
    start = time.perf_counter()
    try:
        handle = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError:
        if log.is_symlink():
            raise AvaeError(f"{log} is a symbolic link; {atomic.LINK_ADVICE}") from None
        raise
    with os.fdopen(handle, "a") as out, redirect_stdout(out), redirect_stderr(out):
        print(launchers.started_line(task.name), flush=True)
        try:
            _train_and_evaluate(task, rank)
            outcome = launchers.Outcome(task.name, True, time.perf_counter() - start, None, str(log))
        except Exception as e:  # this run's failure: the others go on
            traceback.print_exc()
            outcome = launchers.Outcome(task.name, False, time.perf_counter() - start, launchers.error_line(e),
                                        str(log))
        print(launchers.ended_line(outcome), flush=True)
    return outcome


def _train_and_evaluate(task: launchers.RunTask, rank: int) -> None:
    run_dir = Path(task.run_dir)
    names = samplers.parse_names(task.evaluate.get("samplers", "prior"))
    if _scored(run_dir, names):
        return
    if task.threads:  # the job's share of the cores, where train.threads is auto (avae.hardware.threads reads it)
        os.environ["OMP_NUM_THREADS"] = str(task.threads)
        torch.set_num_threads(task.threads)
    if run.status(run_dir) != "finished":
        if run.has_checkpoint(run_dir):
            trainer.resume(run_dir, trust_code=task.trust_code)
        else:  # never started, or ended before its first checkpoint (its files are kept aside)
            extra = {"data.root": task.data_root} if task.data_root else {}
            trainer.start(config.resolve(None, settings={**task.settings, **extra}), run_dir)
    if rank != 0:
        return
    threads = run.read(run_dir)[0].train.threads or task.threads
    if threads:  # scored with the threads it trained with, whichever process scores it
        torch.set_num_threads(threads)
    _fit_samplers(run_dir, names, task)
    evaluate(run_dir, seed=task.seed, progress=False, trust_code=task.trust_code, **task.evaluate)


def _fit_samplers(run_dir: Path, names: list[str], task: launchers.RunTask) -> None:
    """Fit each of the samplers `names` the run has no file of for the checkpoint it is scored at (or
    one fitted for another checkpoint, or unreadable) with its default settings and the run's seed."""
    checkpoint = task.evaluate.get("checkpoint", "last")
    for name in names:
        if not samplers.sampler_class(name).fitted:
            continue
        if samplers.path_of(run_dir, name, checkpoint).is_file():
            try:
                samplers.load_for_run(run_dir, name, checkpoint=checkpoint)
                continue
            except AvaeError as e:
                print(f"fitting the {name} sampler again: {e}", flush=True)
        fitted = samplers.fit_sampler(run_dir, name, seed=task.seed, checkpoint=checkpoint,
                                      trust_code=task.trust_code)
        print(f"fitted the {name} sampler: {fitted.path}", flush=True)


def only_datasets(suite: dict, datasets: list[str]) -> dict:
    """The part of a suite on `datasets`; its runs are the full suite's, its results files are its own."""
    known = [exp["dataset"] for exp in suite["experiments"]]
    unknown = [d for d in datasets if d not in known]
    if unknown:
        raise AvaeError(f"suite {suite['name']} has no dataset {', '.join(unknown)}; it has: {', '.join(known)}")
    return {**suite, "experiments": [e for e in suite["experiments"] if e["dataset"] in datasets],
            "datasets": list(datasets)}


def _part(suite: dict, datasets: list[str] | None, seeds: list[int] | None) -> dict:
    """The part of a suite that --datasets and --seeds name (the whole suite without them)."""
    suite = only_datasets(suite, datasets) if datasets else suite
    return only_seeds(suite, seeds) if seeds else suite


def only_seeds(suite: dict, seeds: list[int]) -> dict:
    """The part of a suite with `seeds` (each one of its seeds); its runs are the full suite's, its results files
    are its own. An experiment left with none of its seeds is left out."""
    def kept(exp_seeds):
        return [s for s in exp_seeds if s in seeds]

    known = sorted({s for exp in suite["experiments"] for s in exp.get("seeds") or suite.get("seeds", [0])})
    unknown = [str(s) for s in seeds if s not in known]
    if unknown:
        raise AvaeError(f"suite {suite['name']} has no seed {', '.join(unknown)}; its seeds are: "
                        f"{', '.join(map(str, known))}")
    shared, experiments = kept(suite.get("seeds", [0])), []
    for exp in suite["experiments"]:
        own = exp.get("seeds")
        if own and kept(own):
            experiments.append({**exp, "seeds": kept(own)})
        elif not own and shared:
            experiments.append(exp)
    return {**suite, "seeds": shared, "only_seeds": list(seeds), "experiments": experiments}


def _record(run_dir: Path, job: Job, names: list[str] | None = None) -> dict:
    result = json.loads((run_dir / run.EVALUATION).read_text())
    epochs = run.read_metrics(run_dir)
    training = {
        "epoch_s": float(np.mean([e["epoch_s"] for e in epochs])),
        "images_per_s": float(np.mean([e["images_per_s"] for e in epochs])),
        "epoch_times_s": [e["epoch_s"] for e in epochs],
        "train_times_s": [e["train_s"] for e in epochs],
        "steps": [e["steps"] for e in epochs],
        "kde_refresh_s": [e["kde_refresh_s"] for e in epochs if "kde_refresh_s" in e],
        "threads": [e.get("threads") for e in epochs],
        "final": epochs[-1],
    }
    record = {"dataset": job.dataset, "model": job.model, "seed": job.seed, "run_dir": str(run_dir),
              "settings": job.settings, "config": config.load_yaml((run_dir / run.CONFIG).read_text()),
              "headline": headlines(result, training)}
    if names and names != ["prior"]:  # each sampler's numbers, only where more than the model's own is asked
        record["samplers"] = {name: sampler_headlines((result.get("samplers") or {}).get(name) or {})
                              for name in names}
    return {**record, "training": training, "evaluation": result}


def summarise(records: list[dict]) -> dict:
    """{dataset: {metric: {model: (mean, std, n)}}} with the population std over seeds."""
    table: dict = {}
    for r in records:
        for metric, value in r["headline"].items():
            table.setdefault(r["dataset"], {}).setdefault(metric, {}).setdefault(r["model"], []).append(value)
    return {d: {m: {model: (float(np.mean(v)), float(np.std(v)), len(v)) for model, v in metrics[m].items()}
                for m in HEADLINES if m in metrics} for d, metrics in table.items()}


def summarise_samplers(records: list[dict]) -> dict:
    """{dataset: {metric: {model: {sampler: (mean, std, n)}}}} over seeds, from records with samplers."""
    table: dict = {}
    for r in records:
        for sampler, values in (r.get("samplers") or {}).items():
            for metric, value in values.items():
                (table.setdefault(r["dataset"], {}).setdefault(metric, {}).setdefault(r["model"], {})
                 .setdefault(sampler, []).append(value))
    return {d: {m: {model: {s: (float(np.mean(v)), float(np.std(v)), len(v)) for s, v in by_sampler.items()}
                    for model, by_sampler in metrics[m].items()}
                for m in SAMPLER_HEADLINES if m in metrics} for d, metrics in table.items()}


def results_stem(suite: dict) -> str:
    part, seeds = suite.get("datasets"), suite.get("only_seeds")
    return suite["name"] + (f"-{'-'.join(part)}" if part else "") + (f"-s{'-'.join(map(str, seeds))}" if seeds else "")


def write_results(suite: dict, records: list[dict], results_root: Path, perf: dict,
                  samplers: str | None = None) -> Path:
    """The results JSON, Markdown and HTML with the suite's performance section; `samplers`: the
    `--samplers` the command was given (None: the suite file's)."""
    results_root.mkdir(parents=True, exist_ok=True)
    part, seeds = suite.get("datasets"), suite.get("only_seeds")
    stem = results_stem(suite)
    machine = performance.machine()
    hours = {"train": sum(sum(r["training"]["epoch_times_s"]) for r in records) / 3600,
             "evaluate": sum(sum(r["evaluation"]["timings_s"].values()) for r in records) / 3600}
    pages.store_pictures(records, results_root, f"{stem}-pictures")
    payload = {"suite": suite, "records": records, "summary": summarise(records)}
    if any("samplers" in r for r in records):
        payload["sampler_summary"] = summarise_samplers(records)
    payload |= {"performance": perf, "avae": __version__, "torch": torch.__version__,
                "python": platform.python_version(), "machine": machine, "compute_hours": hours,
                "written": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": f"avae benchmark --suite {suite['name']}" + (f" --datasets {','.join(part)}" if part else "")
                + (f" --seeds {','.join(map(str, seeds))}" if seeds else "") + (f" --samplers {samplers}" if samplers else "")}
    out = results_root / f"{stem}.json"
    run.write_json(out, payload)
    pages.write_pages(payload, out)
    return out


def rewrite_pages(name: str, results_root: Path, datasets: list[str] | None = None,
                  seeds: list[int] | None = None) -> Path:
    """Rewrite a suite's .md and .html from its results JSON, without training or evaluating."""
    suite = _part(load_suite(name), datasets, seeds)
    path = Path(results_root) / f"{results_stem(suite)}.json"
    if not path.is_file():
        raise AvaeError(f"no results {path} to rewrite pages from; run `avae benchmark --suite {name}` first")
    pages.write_pages(json.loads(path.read_text()), path)
    return path
