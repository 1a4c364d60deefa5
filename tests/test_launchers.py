"""A four-run suite through every launcher (this process, processes of its own, submitit's local
executor, a local Ray instance, and the `--jobs` commands run in reverse order): each results JSON
equals the sequential one record for record (seeded, CPU, pinned precision, layout and threads).
Then the error paths: an engine not installed, resources an engine cannot give, a failing run."""
import json
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from avae import benchmark, launchers, performance
from avae.cli import main

SETTINGS = {"data.train_size": 200, "data.val_size": 50, "model.latent_dim": 2, "model.width": 0.125,
            "train.epochs": 1, "train.batch_size": 50, "train.figures_every": 0,
            # nothing left to the machine's load: precision, layout and threads pinned
            "train.threads": 1, "train.precision": "float32", "train.channels_last": False}
SUITE = {
    "description": "four tiny runs",
    "seeds": [0, 1],
    "evaluate": {"n": 30, "disentanglement": "none", "features": "random", "entropy_kde_size": 100},
    "experiments": [{
        "dataset": "mnist", "models": ["avae", "ae"], "settings": SETTINGS,
        "model_settings": {"avae": {"model.kde_size": 50, "model.kde_precision": "float32",
                                    "model.kde_channels_last": False, "model.kde_batch": 100}},
    }],
}
NAMES = ["mnist-avae-s0", "mnist-avae-s1", "mnist-ae-s0", "mnist-ae-s1"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, mnist_root):
    """The suite file, its CLI arguments, and the sequential run's records (the reference)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AVAE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))  # as conftest's, for this scope
        mp.setattr(performance, "gemm_peak", lambda *a, **k: 100.0)  # the results' peak figure, not what is tested
        folder = tmp_path_factory.mktemp("launchers")
        suite = folder / "tiny.yaml"
        suite.write_text(yaml.safe_dump(SUITE))

        def args(name):
            return ["benchmark", "--suite", str(suite), "--runs", str(folder / name / "runs"), "--results",
                    str(folder / name / "results"), "--data-root", str(mnist_root)]

        assert main(args("sequential")) == 0
        yield {"folder": folder, "args": args, "reference": records(folder / "sequential")}


@pytest.fixture(autouse=True)
def _no_peak(monkeypatch):
    monkeypatch.setattr(performance, "gemm_peak", lambda *a, **k: 100.0)


def records(where):
    return [comparable(r) for r in json.loads((where / "results" / "tiny.json").read_text())["records"]]


def comparable(value):
    """A record without what differs between any two runs of it: times (keys ending in _s) and paths."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if not k.endswith("_s") and k not in ("run_dir", "run")}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def test_sequential_reports_progress_and_logs_each_run(setup, capsys):
    assert [r["model"] for r in setup["reference"]] == ["avae", "avae", "ae", "ae"]
    assert all(r["training"]["threads"] == [1] for r in setup["reference"])
    for name in NAMES:
        log = (setup["folder"] / "sequential" / "runs" / "tiny" / name / "benchmark.log").read_text()
        assert log.startswith(f"=== {name}: started ") and f"=== {name}: finished in " in log
    # called again: every run is finished, nothing is trained, the results are written again
    assert main(setup["args"]("sequential")) == 0
    out = capsys.readouterr().out
    assert "started" not in out and "results:" in out


def test_submitit_local_executor_matches_the_sequential_run(setup, capsys):
    pytest.importorskip("submitit")
    assert main(setup["args"]("submitit") + ["--launcher", "submitit", "--submitit-cluster", "local",
                                             "--max-parallel", "2", "--cpus", "1", "--time-min", "30"]) == 0
    out = capsys.readouterr().out
    assert "submitit's local executor, 2 at a time" in out and ", 3 running," not in out
    assert records(setup["folder"] / "submitit") == setup["reference"]
    assert list((setup["folder"] / "submitit" / "runs" / "tiny" / ".submitit").glob("*_log.out"))  # submitit's own logs


def test_ray_local_instance_runs_two_side_by_side_and_matches(setup, capsys):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(setup["args"]("ray") + ["--launcher", "ray", "--cpus", "1"]) == 0
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    assert "[0/4 finished, 2 running, 0 failed]" in out  # two runs side by side on the two cores
    assert records(setup["folder"] / "ray") == setup["reference"]


def test_jobs_commands_in_reverse_order_then_the_suite(setup, capsys):
    args = setup["args"]("jobs")
    assert main(args + ["--jobs"]) == 0
    captured = capsys.readouterr()
    commands = captured.out.splitlines()
    assert len(commands) == 4 and "4 unfinished run(s)" in captured.err
    assert [c.rsplit(" ", 1)[1] for c in commands] == NAMES and all(" --only " in c for c in commands)
    last, *others = reversed(commands)
    shell = subprocess.run(last, shell=True, capture_output=True, text=True, timeout=600)  # as a scheduler runs it
    assert shell.returncode == 0 and "run mnist-ae-s1 finished in " in shell.stdout, shell.stderr[-2000:]
    for command in others:  # the same command line, through the CLI in this process
        words = shlex.split(command)
        assert words[:3] == [sys.executable, "-m", "avae"]
        assert main(words[3:]) == 0
    assert capsys.readouterr().out.count(" finished in ") == 3
    assert main(args + ["--jobs"]) == 0 and capsys.readouterr().out == ""  # nothing left to run
    assert main(args) == 0
    assert "started" not in capsys.readouterr().out
    assert records(setup["folder"] / "jobs") == setup["reference"]


def test_a_run_of_two_gpus_is_a_ddp_run_under_submitit_as_under_torchrun(tmp_path, mnist_root, capsys):
    """Two ranks (gloo on the CPU stands in for two GPUs): submitit's two tasks of one job train the
    run as the torchrun command of `--jobs` does."""
    pytest.importorskip("submitit")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(dict(SUITE, seeds=[0], experiments=[{"dataset": "mnist", "models": ["ae"],
                                                                         "settings": SETTINGS}])))

    def args(name):
        return ["benchmark", "--suite", str(path), "--runs", str(tmp_path / name / "runs"), "--results",
                str(tmp_path / name / "results"), "--data-root", str(mnist_root), "--gpus", "2"]

    assert main(args("submitit") + ["--launcher", "submitit", "--submitit-cluster", "local"]) == 0  # as an array
    assert (tmp_path / "submitit" / "runs" / "tiny" / "mnist-ae-s0" / "benchmark-rank1.log").is_file()
    tasks = sorted(p.name.split("_")[1] for p in (tmp_path / "submitit" / "runs" / "tiny" / ".submitit").glob("*_log.out"))
    assert tasks == ["0", "1"]  # one job of two tasks, one per rank
    capsys.readouterr()
    assert main(args("torchrun") + ["--jobs"]) == 0
    (command,) = capsys.readouterr().out.splitlines()
    assert " -m torch.distributed.run --standalone --nproc-per-node=2 -m avae benchmark " in command
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert main(args("torchrun")) == 0
    (record,) = records(tmp_path / "submitit")
    assert record["training"]["final"]["ranks"] == 2
    assert records(tmp_path / "torchrun") == [record]


@pytest.mark.parametrize("engine, module, extra", [("submitit", "submitit", "slurm"), ("ray", "ray", "ray")])
def test_missing_engine_is_one_line_and_submits_nothing(engine, module, extra, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: `import` fails
    suite = tmp_path / "tiny.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    assert main(["benchmark", "--suite", str(suite), "--runs", str(tmp_path / "runs"), "--launcher", engine]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--launcher {engine} needs {module}" in err
    assert f"pip install 'avae[{extra}]'" in err
    assert not (tmp_path / "runs").exists()


def test_resources_are_declared_merged_and_checked(tmp_path, capsys):
    suite = dict(SUITE, resources={"cpus": 2, "time_min": 60},
                 experiments=[dict(SUITE["experiments"][0], resources={"mem_gb": 4},
                                   model_resources={"avae": {"gpus": 0.5, "cpus": 1}})])
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(suite))
    jobs = benchmark.plan(benchmark.load_suite(str(path)))
    # the model's over the experiment's over the suite's
    assert jobs[0].resources == {"cpus": 1, "time_min": 60, "mem_gb": 4, "gpus": 0.5}
    assert jobs[2].resources == {"cpus": 2, "time_min": 60, "mem_gb": 4}
    args = ["benchmark", "--suite", str(path), "--runs", str(tmp_path / "runs")]

    def error(*more):
        assert main(args + list(more)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        return err

    if _installed("submitit"):
        assert "resources.gpus 0.5 is a fraction; SLURM gives whole GPUs" in error(
            "--launcher", "submitit", "--submitit-cluster", "local")
        if shutil.which("sbatch") is None:
            assert "this machine has no `sbatch`" in error("--launcher", "submitit", "--gpus", "1")
    if _installed("ray"):
        assert "asks for 2 GPUs, a DDP run" in error("--launcher", "ray", "--gpus", "2")
    assert "argument --cpus: must be a number > 0" in error("--cpus", "0")
    assert "--ray-address goes with --launcher ray" in error("--ray-address", "auto")
    assert "--jobs launches nothing" in error("--jobs", "--max-parallel", "2")
    assert not (tmp_path / "runs").exists()  # nothing was submitted or created
    path.write_text(yaml.safe_dump(dict(SUITE, resources={"gpus": -1})))
    assert "suite.resources.gpus must be a number ≥ 0, got -1" in error()
    path.write_text(yaml.safe_dump(dict(SUITE, experiments=[dict(SUITE["experiments"][0],
                                                                 model_resources={"vae": {"cpus": 1}})])))
    assert "model_resources.vae must be a mapping of settings for one of the experiment's models" in error()

    # a run of several GPUs is a torchrun command; the others plain
    path.write_text(yaml.safe_dump(suite))
    assert main(args + ["--jobs", "--gpus", "2"]) == 0
    commands = capsys.readouterr().out.splitlines()
    assert len(commands) == 4 and all("-m torch.distributed.run --standalone --nproc-per-node=2 -m avae" in c
                                      for c in commands)


def _installed(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def test_a_failing_run_is_named_with_its_log_and_the_others_finish(tmp_path, mnist_root, capsys):
    bad = {"data.train_size": 10**6}  # fails when its data are loaded, in its own job
    suite = dict(SUITE, seeds=[0], experiments=[dict(SUITE["experiments"][0], models=["ae", "vae"],
                                                     model_settings={"vae": bad})])
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(suite))
    args = ["benchmark", "--suite", str(path), "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res"),
            "--data-root", str(mnist_root), "--max-parallel", "2"]
    assert main(args) == 2  # two processes of their own, side by side
    out, err = capsys.readouterr()
    assert "2 to run (local, 2 at a time, each in a process of its own)" in out
    log = tmp_path / "runs" / "tiny" / "mnist-vae-s0" / "benchmark.log"
    reason = "data.train_size must be between 1 and 500, got 1000000"
    assert f"mnist-vae-s0 failed: {reason} (log: {log})" in out
    assert "mnist-ae-s0 finished in" in out and "[1/2 finished, 0 running, 1 failed]" in out
    assert err.count("\n") == 1 and f"1 of 2 runs failed: mnist-vae-s0 ({reason}; log: {log})" in err
    assert "Traceback" in log.read_text()  # the whole error is in the log
    assert (tmp_path / "runs" / "tiny" / "mnist-ae-s0" / "evaluate.json").is_file()
    assert not (tmp_path / "res").exists()  # no results that look complete

    # fixed and called again: the finished run is kept, the failed one runs, the results are written
    stamp = (tmp_path / "runs" / "tiny" / "mnist-ae-s0" / "evaluate.json").stat().st_mtime_ns
    path.write_text(yaml.safe_dump(dict(suite, experiments=[dict(suite["experiments"][0], model_settings={})])))
    assert main(args[:-2]) == 0  # this time in this process
    out = capsys.readouterr().out
    assert "1 finished before, 1 to run (local, one at a time in this process)" in out
    assert "mnist-ae-s0 started" not in out and "[2/2 finished, 0 running, 0 failed] mnist-vae-s0 finished" in out
    assert (tmp_path / "runs" / "tiny" / "mnist-ae-s0" / "evaluate.json").stat().st_mtime_ns == stamp
    assert len(json.loads((tmp_path / "res" / "tiny.json").read_text())["records"]) == 2
    assert log.read_text().count("=== mnist-vae-s0: started") == 2  # each attempt in its log


def test_a_job_that_dies_is_named_from_its_log(tmp_path):
    task = launchers.RunTask(name="d-m-s0", run_dir=str(tmp_path), settings={}, seed=0, evaluate={}, command=())
    task.log.write_text("=== d-m-s0: started x\n=== d-m-s0: failed after 1.0 s: old error\n")
    offset = task.log.stat().st_size
    with open(task.log, "a") as f:
        f.write("=== d-m-s0: started y\nepoch 1\n")
    outcome = launchers.outcome_from_log(task, offset, "its process ended with signal SIGKILL")
    assert not outcome.ok and outcome.log == str(task.log)
    assert outcome.error == "its process ended with signal SIGKILL; its log ends: epoch 1"  # not the old attempt's
    with open(task.log, "a") as f:
        f.write("=== d-m-s0: finished in 3.5 s\n")
    assert launchers.outcome_from_log(task, offset) == launchers.Outcome("d-m-s0", True, 3.5, None, str(task.log))
    # a job that never wrote its run's log is named with the engine's log, and the error of the trace it quotes
    gone = launchers.RunTask(name="d-m-s1", run_dir=str(tmp_path / "never"), settings={}, seed=0, evaluate={},
                             command=())
    trace = ("Job (task=0) failed during processing with trace:\n----\nTraceback (most recent call last):\n"
             '  File "x.py", line 1, in <module>\n    import avae\nImportError: no avae here\n\n----\n'
             "You can check full logs at paths:\n  - /logs/7_0_log.err\n")
    outcome = launchers.outcome_from_log(gone, 0, f"submitit job 7: {launchers.engine_error(Exception(trace))}",
                                         engine_log="/logs/7_0_log.err")
    assert (outcome.error, outcome.log) == ("submitit job 7: ImportError: no avae here", "/logs/7_0_log.err")


def test_progress_counts_and_eta(capsys):
    progress = launchers.Progress(total=5, finished=1)
    progress.started("a")
    progress.started("b")
    assert progress.eta() is None  # nothing finished here yet
    progress.ended(launchers.Outcome("a", True, 60.0))
    progress.ended(launchers.Outcome("b", False, 1.0, "boom", "b/benchmark.log"))
    progress.started("c")
    progress.started("d")
    assert progress.eta() == pytest.approx(60.0 * 2 / 2)  # two left, two at a time, 60 s each
    lines = capsys.readouterr().out.splitlines()
    # after a: 60 s for each of the three left, one at a time
    assert lines[2] == "[2/5 finished, 1 running, 0 failed, ETA 0:03:00] a finished in 0:01:00"
    assert lines[3] == "[2/5 finished, 0 running, 1 failed, ETA 0:02:00] b failed: boom (log: b/benchmark.log)"
    assert lines[-1] == "[2/5 finished, 2 running, 1 failed, ETA 0:01:00] d started"
    assert launchers._clock(3725) == "1:02:05"


class FakeEngine(launchers.Launcher):
    """An engine whose jobs end when the test says: the shared loop's window, progress and Ctrl-C."""

    name = "fake"

    def __init__(self, max_parallel, interrupt_after=None):
        super().__init__(launchers.Options(max_parallel=max_parallel))
        self.submitted, self.most, self.cancelled, self.stopped = [], 0, None, False
        self.live, self.interrupt_after = {}, interrupt_after

    def submit(self, task):
        self.submitted.append(task.name)
        self.live[task.name] = task
        self.most = max(self.most, len(self.live))
        task.log.write_text(f"=== {task.name}: started now\n")
        return task.name

    def ended(self, handles, timeout):
        if self.interrupt_after is not None and len(self.submitted) > self.interrupt_after:
            raise KeyboardInterrupt
        name = sorted(handles)[0]
        del self.live[name]
        return [name]

    def outcome(self, task, handle, offset):
        return launchers.Outcome(task.name, not task.name.endswith("3"), 2.0, None if task.name[-1] != "3" else "x")

    def cancel(self, handles):
        self.cancelled = sorted(handles)

    def stop(self):
        self.stopped = True


def fake_tasks(tmp_path, n):
    return [launchers.RunTask(name=f"run{i}", run_dir=str(tmp_path), settings={}, seed=0, evaluate={}, command=())
            for i in range(n)]


def test_the_shared_loop_keeps_the_window_and_cancels_on_ctrl_c(tmp_path, capsys):
    engine = FakeEngine(max_parallel=2)
    outcomes = engine.run(fake_tasks(tmp_path, 5), launchers.Progress(5, 0))
    assert engine.submitted == [f"run{i}" for i in range(5)] and engine.most == 2 and engine.stopped
    assert [o.ok for o in outcomes] == [True, True, True, False, True]
    assert "[4/5 finished, 0 running, 1 failed] run4 finished in 2 s" in capsys.readouterr().out

    engine = FakeEngine(max_parallel=2, interrupt_after=1)
    with pytest.raises(KeyboardInterrupt):
        engine.run(fake_tasks(tmp_path, 5), launchers.Progress(5, 0))
    assert engine.cancelled == ["run0", "run1"] and engine.stopped  # what it submitted is cancelled
    assert "stopping the 2 submitted run(s)" in capsys.readouterr().err


def test_the_run_lock_keeps_a_second_job_off_a_run_in_training(setup, tmp_path, capsys):
    from avae import run

    args = setup["args"]("locked")
    run_dir = setup["folder"] / "locked" / "runs" / "tiny" / "mnist-ae-s0"
    run_dir.mkdir(parents=True)
    with run.lock(run_dir):  # another process trains it
        assert main(args + ["--only", "mnist-ae-s0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run mnist-ae-s0 failed: " in err and "is being trained by another process" in err
    assert f"(log: {run_dir / 'benchmark.log'})" in err
    assert not (run_dir / "run.json").exists()  # nothing of the other trainer's run was touched
