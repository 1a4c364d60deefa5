"""Where a suite's runs are trained and evaluated: here, on a SLURM cluster (submitit) or on Ray.

The benchmark hands a launcher the suite's unfinished runs, each a `RunTask`: a plain, picklable
record that `avae.benchmark.run_one` trains (or resumes) and evaluates in whatever process the
engine gives it. A launcher has one method, `run(tasks, progress)`: it submits the runs, tells
`progress` when each starts and ends, and returns one `Outcome` per run. A run that fails is
reported and the others go on; its log is RUN_DIR/benchmark.log.

  local     this machine: one run after another in this process, or `--max-parallel N` runs at a
            time, each in a process of its own (the command `--jobs` prints)
  submitit  a SLURM job array (`avae[slurm]`); a run asking for several GPUs is a DDP run in its job
  ray       Ray tasks (`avae[ray]`) on an existing cluster or a local instance

This module imports no engine, and no torch, until a launcher runs.
"""
from __future__ import annotations

import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import AvaeError
from .schema import setting

LOG = "benchmark.log"  # each run's log, in its run directory (rank N > 0 of a DDP run: benchmark-rankN.log)
_MARK = "=== "  # the log lines that open and close an attempt at a run


@dataclass
class Resources:
    """What one run of a suite asks of its engine (a suite's `resources:`, an experiment's
    `resources:` and `model_resources:`, then the command's flags, later winning)."""

    gpus: float = setting(0, minimum=0)  # several: a DDP run (submitit, torchrun); a fraction: Ray shares a GPU
    cpus: float | None = setting(None, above=0)  # cores (torch threads); None: the launcher's share
    mem_gb: float | None = setting(None, above=0)  # submitit and Ray
    time_min: int | None = setting(None, minimum=1)  # SLURM time limit; None: 24 hours
    partition: str | None = setting(None)  # SLURM
    account: str | None = setting(None)  # SLURM


@dataclass(frozen=True)
class RunTask:
    """One run's job: everything `run_one` needs, and the command that does the same job."""

    name: str
    run_dir: str
    settings: dict  # the run's config settings, dotted name → value (config.resolve's `settings`)
    seed: int
    evaluate: dict
    command: tuple[str, ...]  # `avae benchmark ... --only NAME` (under torchrun for a run of several GPUs)
    data_root: str | None = None
    trust_code: bool = False
    resources: dict = field(default_factory=dict)
    threads: int | None = None  # torch threads the job takes where train.threads is auto (its share of cores)

    @property
    def log(self) -> Path:
        return Path(self.run_dir) / LOG

    @property
    def ranks(self) -> int:
        """Processes of the run: one per GPU where it asks for several (a DDP run)."""
        gpus = self.resources.get("gpus") or 0
        return int(gpus) if gpus > 1 else 1


@dataclass(frozen=True)
class Outcome:
    name: str
    ok: bool
    seconds: float
    error: str | None = None  # the last line of the run's error
    log: str | None = None


@dataclass
class Options:
    """How a launcher runs the tasks (the command's flags)."""

    max_parallel: int | None = None  # runs at a time; None: local 1, submitit and Ray as many as the cluster takes
    cluster: str = "slurm"  # submitit: slurm, or local (submitit's local executor: processes on this machine)
    address: str | None = None  # Ray: a cluster's address ("auto", "ray://host:10001"); None: $RAY_ADDRESS, else local
    folder: Path | None = None  # the engine's own files (submitit's job scripts and logs)


# --- the log of a run --------------------------------------------------------------------------
def log_path(run_dir: Path, rank: int = 0) -> Path:
    return Path(run_dir) / (LOG if rank == 0 else f"benchmark-rank{rank}.log")


def started_line(name: str) -> str:
    return f"{_MARK}{name}: started {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.uname().nodename} (pid {os.getpid()})"


def ended_line(outcome: Outcome) -> str:
    if outcome.ok:
        return f"{_MARK}{outcome.name}: finished in {outcome.seconds:.1f} s"
    return f"{_MARK}{outcome.name}: failed after {outcome.seconds:.1f} s: {outcome.error}"


def error_line(error: BaseException) -> str:
    """The last line of an error as a person reads it: a user error's message, else type: message."""
    text = " ".join(str(error).split()) or "(no message)"
    return text if isinstance(error, AvaeError) else f"{type(error).__name__}: {text}"


def outcome_from_log(task: RunTask, offset: int = 0, why: str | None = None, seconds: float = 0.0,
                     engine_log: str | None = None) -> Outcome:
    """A run's outcome from what its log gained after `offset` (its size when the job was submitted),
    where the engine gave none back (a process of its own, or a job that died): what run_one wrote
    at the end, else why the engine ended it (and the engine's log where the run wrote none)."""
    lines = _tail(task.log, offset)
    start = max((i for i, line in enumerate(lines) if line.startswith(f"{_MARK}{task.name}: started")), default=-1)
    for line in reversed(lines[start + 1:] if start >= 0 else []):
        head = f"{_MARK}{task.name}: "
        if line.startswith(head + "finished in "):
            return Outcome(task.name, True, float(line[len(head + "finished in "):].split()[0]), None, str(task.log))
        if line.startswith(head + "failed after "):
            took, _, error = line[len(head + "failed after "):].partition(" s: ")
            return Outcome(task.name, False, float(took), error, str(task.log))
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    why = why or "the job ended before the run did (killed, or out of time or memory?)"
    log = str(task.log) if task.log.exists() or not engine_log else engine_log
    ends = f"; its log ends: {last}" if last and last not in why else ""
    return Outcome(task.name, False, seconds, why + ends, log)


def _tail(path: Path, offset: int = 0, size: int = 1 << 16) -> list[str]:
    """The lines of the last `size` bytes of a file after `offset`."""
    try:
        with open(path, "rb") as f:
            f.seek(max(offset, f.seek(0, os.SEEK_END) - size))
            return f.read().decode(errors="replace").splitlines()
    except OSError:
        return []


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# --- progress ----------------------------------------------------------------------------------
class Progress:
    """One line per event: finished / running / failed counts, an ETA from the finished runs' times,
    and what happened; a run that fails is named with its log and the last line of its error."""

    HEARTBEAT_S = 900  # a line at least this often while nothing happens (cluster queues)

    def __init__(self, total: int, finished: int, out=None):
        self.total, self.finished, self.out = total, finished, out
        self.running: set[str] = set()
        self.failed: list[Outcome] = []
        self.seconds: list[float] = []
        self._last = time.monotonic()

    def started(self, name: str) -> None:
        self.running.add(name)
        self._line(f"{name} started")

    def ended(self, outcome: Outcome) -> None:
        self.running.discard(outcome.name)
        if outcome.ok:
            self.finished += 1
            self.seconds.append(outcome.seconds)
            self._line(f"{outcome.name} finished in {_clock(outcome.seconds)}")
        else:
            self.failed.append(outcome)
            self._line(f"{outcome.name} failed: {outcome.error} (log: {outcome.log})")

    def tick(self) -> None:
        if time.monotonic() - self._last > self.HEARTBEAT_S:
            names = sorted(self.running)
            self._line("running: " + (", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
                                      if names else "none yet (queued)"))

    def eta(self) -> float | None:
        """Seconds until every run has ended: the finished runs' mean time for each run left, as many
        at a time as run now."""
        left = self.total - self.finished - len(self.failed)
        if not self.seconds or not left:
            return None
        return sum(self.seconds) / len(self.seconds) * left / max(1, len(self.running))

    def status(self) -> str:
        eta = self.eta()
        return (f"[{self.finished}/{self.total} finished, {len(self.running)} running, {len(self.failed)} failed"
                + (f", ETA {_clock(eta)}" if eta is not None else "") + "]")

    def _line(self, event: str) -> None:
        self._last = time.monotonic()
        print(f"{self.status()} {event}", file=self.out or sys.stdout, flush=True)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# --- launchers ---------------------------------------------------------------------------------
class Launcher:
    """Submits runs to an engine and waits for them; `run` is all a caller uses.

    An engine launcher gives `submit` (a handle for a task), `ended` (the handles that have ended,
    waiting up to a timeout), `outcome` and `cancel`; `run` keeps at most `max_parallel` runs
    submitted, notices a run start when its log grows, and on Ctrl-C cancels what it submitted.
    """

    name = ""
    module: str | None = None  # the engine's package, if it has one
    extra = ""  # avae's optional extra that installs it
    poll_s = 1.0

    def __init__(self, options: Options):
        self.options = options

    @classmethod
    def check_installed(cls) -> None:
        if cls.module is None:
            return
        try:
            importlib.import_module(cls.module)
        except ImportError:
            raise AvaeError(f"--launcher {cls.name} needs {cls.module}, which is not installed: "
                            f"pip install 'avae[{cls.extra}]'") from None

    def check(self, tasks: list[RunTask]) -> None:
        """Refuse, before anything is submitted, what this engine cannot run."""

    def describe(self, tasks: list[RunTask]) -> str:
        return self.name

    def prepare(self, tasks: list[RunTask]) -> list[RunTask]:
        """The tasks as this engine runs them (e.g. with their share of threads)."""
        return tasks

    def window(self, tasks: list[RunTask]) -> int:
        """Runs submitted at a time."""
        return self.options.max_parallel or len(tasks)

    def run(self, tasks: list[RunTask], progress: Progress) -> list[Outcome]:
        waiting, active, outcomes = list(tasks), {}, []
        sizes: dict[str, int] = {}  # each log's size at submission: what follows is this attempt's
        self.start(tasks)
        window = self.window(tasks)
        try:
            while waiting or active:
                while waiting and len(active) < window:
                    task = waiting.pop(0)
                    sizes[task.name] = _log_size(task.log)
                    active[task.name] = (task, self.submit(task))
                for name, (task, _) in active.items():
                    if name not in progress.running and _log_size(task.log) > sizes[name]:
                        progress.started(name)
                for name in self.ended({name: handle for name, (_, handle) in active.items()}, self.poll_s):
                    task, handle = active.pop(name)
                    if name not in progress.running:
                        progress.started(name)
                    outcome = self.outcome(task, handle, sizes[name])
                    outcomes.append(outcome)
                    progress.ended(outcome)
                progress.tick()
        except BaseException:
            if active:
                print(f"stopping the {len(active)} submitted run(s); calling the command again resumes them",
                      file=sys.stderr, flush=True)
                self.cancel({name: handle for name, (_, handle) in active.items()})
            raise
        finally:
            self.stop()
        return outcomes

    # the engine
    def start(self, tasks: list[RunTask]) -> None: ...

    def stop(self) -> None: ...

    def submit(self, task: RunTask):
        raise NotImplementedError

    def ended(self, handles: dict, timeout: float) -> list[str]:
        raise NotImplementedError

    def outcome(self, task: RunTask, handle, offset: int) -> Outcome:
        raise NotImplementedError

    def cancel(self, handles: dict) -> None: ...


class Local(Launcher):
    """This machine. One run at a time (the default) runs in this process, as `avae benchmark`
    always has; `--max-parallel N` (or a run of several GPUs) runs each in a process of its own,
    the command that `--jobs` prints, each with its share of the cores as torch threads."""

    name = "local"
    poll_s = 0.5

    def in_process(self, tasks: list[RunTask]) -> bool:
        return (self.options.max_parallel or 1) == 1 and all(t.ranks == 1 for t in tasks)

    def describe(self, tasks):
        if self.in_process(tasks):
            return "local, one at a time in this process"
        return f"local, {self.options.max_parallel or 1} at a time, each in a process of its own"

    def prepare(self, tasks):
        if self.in_process(tasks):  # as ever: train.threads, or under auto the cores other work leaves free
            return tasks
        from .hardware import available_cores

        share = max(1, available_cores() // (self.options.max_parallel or 1))
        return [_with_threads(t, int(t.resources["cpus"]) if t.resources.get("cpus") else share) for t in tasks]

    def run(self, tasks, progress):
        if not self.in_process(tasks):
            return super().run(tasks, progress)
        from .benchmark import run_one

        outcomes = []
        for task in tasks:
            progress.started(task.name)
            outcomes.append(run_one(task))
            progress.ended(outcomes[-1])
        return outcomes

    def submit(self, task):
        env = dict(os.environ)
        if task.threads and "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = str(task.threads)
        Path(task.run_dir).mkdir(parents=True, exist_ok=True)
        with open(task.log, "ab") as log:  # the run's output, and the command's own last line
            process = subprocess.Popen(task.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       env=env)
        return process, time.monotonic()

    def ended(self, handles, timeout):
        deadline = time.monotonic() + timeout
        while True:
            done = [name for name, (process, _) in handles.items() if process.poll() is not None]
            if done or time.monotonic() > deadline:
                return done
            time.sleep(0.05)

    def outcome(self, task, handle, offset):
        process, began = handle
        status, seconds = process.returncode, time.monotonic() - began
        outcome = outcome_from_log(task, offset, None if status in (0, 2) else f"its process ended with {_exit(status)}",
                                   seconds)
        if status == 0 and not outcome.ok:  # the command found the run evaluated (by another job meanwhile)
            return Outcome(task.name, True, seconds, None, str(task.log))
        return outcome

    def cancel(self, handles):
        """Ctrl-C reaches the runs' processes too (one process group); those still going get SIGINT,
        so that each marks its run interrupted, then SIGTERM."""
        processes = [process for process, _ in handles.values()]
        for sig, grace in ((None, 10), (signal.SIGINT, 30), (signal.SIGTERM, 10)):
            alive = [p for p in processes if p.poll() is None]
            if not alive:
                return
            for p in alive if sig else ():
                p.send_signal(sig)
            end = time.monotonic() + grace
            while time.monotonic() < end and any(p.poll() is None for p in alive):
                time.sleep(0.1)


class Submitit(Launcher):
    """A SLURM job array per set of resources (`avae[slurm]`), at most --max-parallel jobs at a time
    (the array's %N). A run of several GPUs gets one task per GPU on one node, and trains as DDP
    (the environment torchrun would give, from submitit's TorchDistributedEnvironment)."""

    name, module, extra = "submitit", "submitit", "slurm"
    CLUSTERS = ("slurm", "local")
    DAY_MIN = 24 * 60

    def __init__(self, options):
        super().__init__(options)
        self.poll_s = 1.0 if options.cluster == "local" else 15.0  # sacct is not to be asked every second

    def describe(self, tasks):
        where = "SLURM job array" if self.options.cluster == "slurm" else "submitit's local executor"
        at_a_time = f", {self.options.max_parallel} at a time" if self.options.max_parallel else ""
        return f"submitit ({where}{at_a_time})"

    def check(self, tasks):
        if self.options.cluster not in self.CLUSTERS:
            raise AvaeError(f"--submitit-cluster must be one of {', '.join(self.CLUSTERS)}, "
                            f"got {self.options.cluster!r}")
        if self.options.cluster == "slurm" and shutil.which("sbatch") is None:
            raise AvaeError("--launcher submitit submits to SLURM, but this machine has no `sbatch`; run the command "
                            "on the cluster's login node, or use --submitit-cluster local to run the jobs here")
        for task in tasks:
            for key in ("gpus", "cpus"):
                value = task.resources.get(key)
                if value is not None and value != int(value):
                    raise AvaeError(f"run {task.name}: resources.{key} {value:g} is a fraction; SLURM gives whole "
                                    f"{'GPUs' if key == 'gpus' else 'CPUs'} (fractions are for --launcher ray)")

    def prepare(self, tasks):
        """Each rank's share of its run's cores as torch threads; on SLURM without `cpus`, what the job's
        CPU set allows (avae.hardware.threads), on the local executor this machine's cores shared."""
        from .hardware import available_cores

        here = 0
        if self.options.cluster == "local":
            here = available_cores() // (self.options.max_parallel or len(tasks) or 1)
        return [_with_threads(t, max(1, int(t.resources.get("cpus") or here) // t.ranks)
                              if t.resources.get("cpus") or here else None) for t in tasks]

    def arrays(self) -> bool:
        """Whether every task is submitted at the start, one job array per set of resources: on SLURM
        (the array's %N holds them back), and on the local executor where no limit is asked (it starts
        what it is given at once, so under --max-parallel it gets the tasks in turn)."""
        return self.options.cluster == "slurm" or not self.options.max_parallel

    def start(self, tasks):
        self.jobs = {}
        if not self.arrays():
            return
        groups: dict[tuple, list[RunTask]] = {}
        for task in tasks:
            groups.setdefault(tuple(sorted(task.resources.items())), []).append(task)
        try:
            for group in groups.values():
                self.jobs.update(zip((t.name for t in group), self.executor(group[0]).map_array(submitit_job, group)))
        except Exception as e:
            self.cancel(self.jobs)
            raise AvaeError(f"submitit could not submit the runs ({error_line(e)}); none of them is running") from None

    def executor(self, task: RunTask):
        import submitit

        executor = submitit.AutoExecutor(folder=self.options.folder, cluster=self.options.cluster)
        executor.update_parameters(**self.parameters(task.resources, task.ranks))
        return executor

    def window(self, tasks):
        return len(tasks) if self.arrays() else super().window(tasks)

    def parameters(self, resources: dict, ranks: int) -> dict:
        gpus, cpus = int(resources.get("gpus") or 0), resources.get("cpus")
        return {"name": "avae-benchmark", "timeout_min": resources.get("time_min") or self.DAY_MIN,
                "mem_gb": resources.get("mem_gb"), "nodes": 1, "tasks_per_node": ranks,
                "gpus_per_node": gpus or None, "cpus_per_task": max(1, int(cpus) // ranks) if cpus else None,
                "slurm_partition": resources.get("partition"), "slurm_account": resources.get("account"),
                "slurm_array_parallelism": self.options.max_parallel}

    def submit(self, task):
        if task.name not in self.jobs:
            try:
                self.jobs[task.name] = self.executor(task).submit(submitit_job, task)
            except Exception as e:
                raise AvaeError(f"submitit could not submit run {task.name} ({error_line(e)})") from None
        return self.jobs[task.name]

    def ended(self, handles, timeout):
        time.sleep(timeout)
        return [name for name, job in handles.items() if job.done()]

    def outcome(self, task, job, offset):
        try:
            return job.results()[0]  # rank 0's
        except Exception as e:  # the job died, or could not start the function
            return outcome_from_log(task, offset, f"submitit job {job.job_id}: {engine_error(e)}",
                                    engine_log=str(job.paths.stderr))

    def cancel(self, handles):
        for job in handles.values():
            try:
                job.cancel(check=False)
            except OSError:
                pass


def submitit_job(task: RunTask) -> Outcome:
    """A submitit job: under several tasks (one per GPU), the torch.distributed environment
    torchrun sets, then the run."""
    import submitit

    if submitit.JobEnvironment().num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    from .benchmark import run_one

    return run_one(task)


class Ray(Launcher):
    """Ray tasks (`avae[ray]`) with each run's CPUs and GPUs (fractions allowed: small runs share a
    GPU), on the cluster at --ray-address or $RAY_ADDRESS, else on a local instance started here.
    A Ray session already started in this process (`ray.init(...)`) is used as it is."""

    name, module, extra = "ray", "ray", "ray"
    poll_s = 1.0

    def check(self, tasks):
        for task in tasks:
            if task.ranks > 1:
                raise AvaeError(f"run {task.name} asks for {task.resources['gpus']:g} GPUs, a DDP run: Ray runs each "
                                "run as one process; use --launcher submitit, or --jobs (torchrun commands)")

    def prepare(self, tasks):
        return [_with_threads(t, max(1, int(t.resources.get("cpus") or 1))) for t in tasks]

    def start(self, tasks):
        import ray

        self.started_here = not ray.is_initialized()
        if self.started_here:
            try:
                ray.init(address=self.options.address, include_dashboard=False, log_to_driver=False)
            except Exception as e:  # ConnectionError, RuntimeError, ValueError, ...
                raise AvaeError(f"Ray could not start or reach its cluster ({error_line(e)}); give a running cluster's "
                                "address with --ray-address, or none to start a local instance") from None
        from .benchmark import run_one

        self.remote = ray.remote(run_one)

    def stop(self):
        import ray

        if getattr(self, "started_here", False):
            ray.shutdown()

    def submit(self, task):
        r = task.resources
        options = {"num_cpus": r.get("cpus") or 1, "num_gpus": r.get("gpus") or 0, "max_retries": 0}
        if r.get("mem_gb"):
            options["memory"] = int(r["mem_gb"] * 2**30)
        return self.remote.options(**options).remote(task)

    def ended(self, handles, timeout):
        import ray

        names = {ref: name for name, ref in handles.items()}
        done, _ = ray.wait(list(names), num_returns=len(names), timeout=timeout)
        return [names[ref] for ref in done]

    def outcome(self, task, ref, offset):
        import ray

        try:
            return ray.get(ref)
        except Exception as e:  # the worker died, or the task was cancelled
            return outcome_from_log(task, offset, f"Ray: {engine_error(e)}")

    def cancel(self, handles):
        import ray

        for ref in handles.values():
            ray.cancel(ref)  # KeyboardInterrupt in the task: the trainer marks its run interrupted


LAUNCHERS: dict[str, type[Launcher]] = {launcher.name: launcher for launcher in (Local, Submitit, Ray)}


def get(name: str, options: Options | None = None) -> Launcher:
    """The launcher of a name, its engine installed (else one line with the `pip install` to run)."""
    if name not in LAUNCHERS:
        raise AvaeError(f"unknown launcher '{name}'; launchers are: {', '.join(LAUNCHERS)}")
    cls = LAUNCHERS[name]
    cls.check_installed()
    return cls(options or Options())


def _with_threads(task: RunTask, threads: int | None) -> RunTask:
    return replace(task, threads=threads)


def engine_error(error: Exception) -> str:
    """The error an engine reports for a job: the exception line of a traceback its message quotes
    (the first line after the last `Traceback` header that is not indented), else its last line."""
    lines = [line.rstrip() for line in str(error).splitlines() if line.strip()]
    header = max((i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")),
                 default=None)
    if header is not None:
        found = next((line for line in lines[header + 1:] if not line[0].isspace()), None)
        if found:
            return found.strip()
    return lines[-1].strip() if lines else type(error).__name__


def _exit(status: int) -> str:
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"exit status {status}"


def merge(*layers: dict | None) -> dict:
    """Resources given at several levels, later ones winning (None: not given)."""
    out: dict = {}
    for layer in layers:
        out.update({k: v for k, v in (layer or {}).items() if v is not None})
    return out
