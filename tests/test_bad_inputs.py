"""Every mistake a user can make, through the `avae` command: exit status 2, one line on stderr, no
traceback, and the run directory left as it should be (absent, untouched, resumable or retryable)."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from avae import config, trainer
from avae.cli import main
from fixtures import write_cifar10

ROOT, OUT, RUN = "{root}", "{out}", "{run}"
TRAIN = ["train", "--dataset", "mnist", "--data-root", ROOT, "--set", "model.width=0.125", "--set", "model.kde_size=100",
         "--set", "train.progress=false", "--set", "train.figures_every=0", "--out", OUT]
TINY = ["data.name=mnist", "data.train_size=250", "data.val_size=50", "model.latent_dim=16", "model.width=0.125", "model.kde_size=100", "train.batch_size=50",
        "train.epochs=1", "train.progress=false", "train.figures_every=0"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, mnist_root):
    cfg = config.resolve(None, [*TINY, f"data.root={mnist_root}"])
    return trainer.start(cfg, tmp_path_factory.mktemp("runs") / "trained")


def fails(capsys, argv, says):
    """Runs the command; asserts exit 2 and one error line (no traceback) that contains `says`."""
    assert main([str(a) for a in argv]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("avae: error:") and err.count("\n") == 1, err
    assert "Traceback" not in err and says in err, err
    return err


def fill(argv, **places):
    return [str(places.get(a.strip("{}"), a)) if a in (ROOT, OUT, RUN) else a for a in argv]


# --- values of the wrong type or range: refused before the run directory exists -------------------
SETTINGS = [
    ("model.kde_size=abc", "model.kde_size must be an integer ≥ 2 and ≤ 10,000,000, got 'abc'"),
    ("model.kde_size=2.5", "model.kde_size must be an integer ≥ 2 and ≤ 10,000,000, got 2.5"),
    ("model.kde_refresh_every=abc", "model.kde_refresh_every must be an integer ≥ 1"),
    ("model.sigma0_sq=abc", "model.sigma0_sq must be a number > 0"),
    ("model.sigma0_sq=0", "model.sigma0_sq must be a number > 0, got 0"),
    ("model.width=abc", "model.width must be a number > 0"),
    ("model.density_floor_quantile=abc", "model.density_floor_quantile must be a number > 0 and < 1 or null"),
    ("model.kde_precision=float16", "model.kde_precision must be one of auto, float32, bfloat16"),
    ("model.latent_dim=0", "model.latent_dim must be an integer ≥ 1"),
    ("model.latent_dim=abc", "model.latent_dim must be an integer ≥ 1"),
    ("model.kde_size=500", "smaller than the training set"),
    ("model.nonsense=1", "no setting model.nonsense"),
    ("model.name=3", "model.name must be a string"),
    ("train.seed=-1", "train.seed must be an integer ≥ 0 and ≤ 4,294,967,295, got -1"),
    ("train.seed=1.5", "train.seed must be an integer ≥ 0 and ≤ 4,294,967,295, got 1.5"),
    ("train.epochs=2.5", "train.epochs must be an integer ≥ 1, got 2.5"),
    ("train.batch_size=2.5", "train.batch_size must be an integer ≥ 2, got 2.5"),
    ("train.lr=.nan", "train.lr must be a number > 0, got nan"),
    ("train.lr=nan", "train.lr must be a number > 0, got 'nan'"),
    ("train.lr=fast", "train.lr must be a number"),
    ("train.lr_factor=2", "train.lr_factor must be a number > 0 and < 1, got 2"),
    ("train.val_batch_size=0", "train.val_batch_size must be an integer ≥ 1, got 0"),
    ("train.figure_points=0", "train.figure_points must be an integer ≥ 2, got 0"),
    ("train.precision=float16", "train.precision must be one of auto, float32, bfloat16"),
    ("train.progress=maybe", "train.progress must be true or false"),
    ("train.nonsense=1", "unknown train setting nonsense"),
    ("train.device=gpu9", "train.device 'gpu9' is not a device"),
    ("data.options=abc", "data.options must be a mapping"),
    ("data.options={nonsense: 1}", "has no option data.options.nonsense"),
    ("data.train_size=0", "data.train_size must be an integer ≥ 1 or null, got 0"),
    ("data.train_size=100000", "data.train_size must be between 1 and 500"),
    ("model.name.x=1", "model.name must be a string"),
    ("data=3", "--set data.name: data is set to 3, which is not a mapping of settings"),
    ("model=3", "config section 'model' in --set must be a mapping"),
    ("train=[1]", "config section 'train' in --set must be a mapping"),
    ("train.lr=[", "--set train.lr=[: the value is not valid YAML"),
    ("train.lr={", "the value is not valid YAML"),
    ("oops", "must look like section.key=value"),
    ("model.=1", "must look like section.key=value"),
    ("extra.key=1", "unknown config section 'extra'"),
]
if not torch.cuda.is_available():
    SETTINGS.append(("train.device=cuda", "train.device asks for cuda but no GPU is available"))


@pytest.mark.parametrize("setting,says", SETTINGS, ids=[s for s, _ in SETTINGS])
def test_a_bad_setting_is_refused_before_the_run_directory_exists(capsys, tmp_path, mnist_root, setting, says):
    out = tmp_path / "run"
    fails(capsys, fill(TRAIN, root=mnist_root, out=out) + ["--set", setting], says)
    assert not out.exists()


CONFIG_FILES = [
    ("scalar.yaml", b"3\n", "must be a mapping (key: value), got 3"),
    ("section.yaml", b"data: 3\n", "config section 'data' in config"),
    ("list_section.yaml", b"model: [avae]\n", "config section 'model' in config"),
    ("unknown.yaml", b"loss: {x: 1}\n", "unknown config section 'loss'"),
    ("tabs.yaml", b"train:\n\tepochs: 2\n", "not valid YAML (found character '\\t' that cannot start any token"),
    ("broken.yaml", b"train: {epochs: 2\n", "is not valid YAML"),
    ("binary.yaml", bytes(range(256)), "is not a text file"),
    ("wrong_value.yaml", b"train: {epochs: 2.5}\n", "train.epochs must be an integer ≥ 1, got 2.5"),
]


@pytest.mark.parametrize("name,content,says", CONFIG_FILES, ids=[c[0] for c in CONFIG_FILES])
def test_a_bad_config_file_is_refused(capsys, tmp_path, mnist_root, name, content, says):
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "run"
    fails(capsys, fill(TRAIN, root=mnist_root, out=out) + ["--config", path], says)
    assert not out.exists()


FLAGS = [
    (["train", "--epochs", "2.5"], "argument --epochs: must be an integer ≥ 1, got '2.5'"),
    (["train", "--seed", "-1"], "argument --seed: must be an integer ≥ 0 and ≤ 4,294,967,295, got '-1'"),
    (["train", "--config", "paper_results"], "config 'paper_results' is neither a file nor a preset; presets are: demo"),
    (["train", "--config", "nope"], "presets are: demo"),
    (["train", "--dataset", "nope", "--out", OUT], "unknown dataset 'nope'"),
    (["train", "--model", "nope", "--out", OUT], "unknown model 'nope'"),
    (["train", "--resume", OUT, "--epochs", "3"], "--resume continues a run with its own config"),
    (["train", "--resume", OUT], "is not a run directory"),
    (["train", "--nonsense"], "unrecognized arguments: --nonsense"),
    (["sample", RUN, "-n", "0"], "argument -n: must be an integer ≥ 1, got '0'"),
    (["sample", RUN, "--seed", "x"], "argument --seed: must be an integer ≥ 0"),
    (["sample", RUN, "--checkpoint", "first"], "argument --checkpoint: invalid choice"),
    (["sample", OUT], "is not a run directory"),
    (["evaluate", RUN, "-n", "5"], "argument -n: must be an integer ≥ 10, got '5'"),
    (["evaluate", RUN, "--seed", "-3"], "argument --seed: must be an integer ≥ 0"),
    (["evaluate", OUT], "is not a run directory"),
    (["evaluate", RUN, "-n", "15"], "the Gaussian fit of 16-dimensional codes needs more than 16; raise -n"),
    (["bandwidth", "-l", "0", "-m", "100"], "argument -l/--latent-dim: must be an integer ≥ 1 and ≤ 21,201, got '0'"),
    (["bandwidth", "-l", "2", "-m", "1"], "argument -m/--kde-size: must be an integer ≥ 2 and ≤ 10,000,000, got '1'"),
    (["bandwidth", "-l", "abc", "-m", "100"], "argument -l/--latent-dim: must be an integer ≥ 1 and ≤ 21,201, got 'abc'"),
    (["bandwidth", "-l", "2"], "the following arguments are required: -m/--kde-size"),
    (["nonsense"], "argument command: invalid choice: 'nonsense'"),
    ([], "the following arguments are required: command"),
]


@pytest.mark.parametrize("argv,says", FLAGS, ids=[" ".join(a) for a, _ in FLAGS])
def test_a_bad_flag_is_refused_in_one_line(capsys, tmp_path, trained_run, argv, says):
    before = sorted(p.relative_to(trained_run) for p in trained_run.rglob("*"))
    out = tmp_path / "nothing"
    fails(capsys, fill(argv, out=out, run=trained_run), says)
    assert not out.exists()
    assert sorted(p.relative_to(trained_run) for p in trained_run.rglob("*")) == before


def test_help_still_exits_zero(capsys):
    assert main(["evaluate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "fast (the default" in text


def test_a_cifar_folder_missing_one_batch_names_it(capsys, tmp_path):
    write_cifar10(tmp_path / "data", archive=False)
    (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").unlink()
    out = tmp_path / "run"
    fails(capsys, ["train", "--dataset", "cifar10", "--data-root", tmp_path / "data", "--out", out],
          "cifar-10-batches-py holds some CIFAR-10 batches but not test_batch")
    assert not out.exists()


# --- suites -----------------------------------------------------------------------------------------
GOOD_EXPERIMENT = {"dataset": "mnist", "models": ["ae"], "settings": {"train.epochs": 1}}
SUITES = [
    ("tabs", "experiments:\n\t- dataset: mnist\n", "is not valid YAML"),
    ("scalar", "3\n", "must be a mapping (key: value), got 3"),
    ("no experiments", {"seeds": [0]}, "suite has no experiments"),
    ("empty experiments", {"experiments": []}, "suite.experiments must be a non-empty list of mappings"),
    ("scalar experiment", {"experiments": [3]}, "suite.experiments must be a non-empty list of mappings"),
    ("bad seeds", {"seeds": [-1], "experiments": [GOOD_EXPERIMENT]}, "suite.seeds must be a non-empty list of integers ≥ 0"),
    ("no dataset", {"experiments": [{"models": ["ae"]}]}, "suite.experiments[1] has no dataset"),
    ("models scalar", {"experiments": [{"dataset": "mnist", "models": "ae"}]},
     "suite.experiments[1].models must be a non-empty list of strings"),
    ("unknown key", {"experiments": [{**GOOD_EXPERIMENT, "model": "ae"}]}, "unknown suite.experiments[1] setting model"),
    ("foreign model_settings", {"experiments": [{**GOOD_EXPERIMENT, "model_settings": {"avae": {"model.kde_size": 9}}}]},
     "suite.experiments[1].model_settings.avae must be a mapping of settings for one of the experiment's models"),
    ("bad setting", {"experiments": [{**GOOD_EXPERIMENT, "settings": {"train.epochs": 2.5}}]},
     "run mnist-ae-s0: train.epochs must be an integer ≥ 1, got 2.5"),
    ("bad evaluate", {"evaluate": {"n": 2}, "experiments": [GOOD_EXPERIMENT]}, "suite evaluate.n must be an integer ≥ 10"),
    ("unknown evaluate", {"evaluate": {"size": 2}, "experiments": [GOOD_EXPERIMENT]}, "unknown suite evaluate setting size"),
    ("duplicate run", {"experiments": [GOOD_EXPERIMENT, {**GOOD_EXPERIMENT, "settings": {"train.epochs": 2}}]},
     "has run mnist-ae-s0 twice"),
]


@pytest.mark.parametrize("name,suite,says", SUITES, ids=[s[0] for s in SUITES])
def test_a_bad_suite_is_refused_before_anything_runs(capsys, tmp_path, name, suite, says):
    path = tmp_path / "suite.yaml"
    path.write_text(suite if isinstance(suite, str) else yaml.safe_dump(suite))
    runs, results = tmp_path / "runs", tmp_path / "results"
    fails(capsys, ["benchmark", "--suite", path, "--runs", runs, "--results", results], says)
    assert not runs.exists() and not results.exists()



# --- run directories: damaged, diverged, locked, or in a place that cannot be written ------------------
def copy_of(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


def snapshot(run_dir):
    """Every file's bytes (the lock file aside: it names the last process that held it)."""
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != ".lock"}


def _save(obj):
    return lambda path: torch.save(obj, path)


def _edit_checkpoint(edit):
    def write(path):
        state = torch.load(path, weights_only=True)
        edit(state)
        torch.save(state, path)
    return write


def _nan_weight(state):
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))


def _wrong_shape(state):
    name = next(k for k, v in state["model"].items() if v.is_floating_point() and v.ndim > 1)
    state["model"][name] = state["model"][name][:1]


DAMAGE = [  # (what, file, how to damage it, what the error says)
    ("checkpoint not a dict", "checkpoints/last.pt", _save([1, 2, 3]), "holds a list, not a checkpoint"),
    ("checkpoint without keys", "checkpoints/last.pt", _save({"model": {}}), "lacks model_extra"),
    ("checkpoint of another model", "checkpoints/last.pt", _edit_checkpoint(_wrong_shape), "does not fit this run's model"),
    ("checkpoint with NaN weights", "checkpoints/last.pt", _edit_checkpoint(_nan_weight), "non-finite weights"),
    ("checkpoint truncated", "checkpoints/last.pt", lambda p: p.write_bytes(p.read_bytes()[:100]), "cannot be read"),
    ("config scalar", "config.yaml", lambda p: p.write_text("3\n"), "config.yaml is damaged"),
    ("config without sections", "config.yaml", lambda p: p.write_text("{}\n"), "config.yaml is damaged"),
    ("config bad value", "config.yaml", lambda p: p.write_text(p.read_text().replace("epochs: 1", "epochs: 2.5")),
     "config.yaml is damaged"),
    ("config not YAML", "config.yaml", lambda p: p.write_text("data: {\n"), "config.yaml is damaged"),
    ("run.json a list", "run.json", lambda p: p.write_text("[1, 2]"), "run.json is damaged"),
    ("run.json empty data spec", "run.json",
     lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "data_spec": {}})), "run.json is damaged"),
    ("run.json not JSON", "run.json", lambda p: p.write_text("{"), "run.json is damaged"),
    ("metrics.jsonl torn in the middle", "metrics.jsonl", lambda p: p.write_text('{"epoch": 1\n{"epoch": 2}\n'),
     "metrics.jsonl is damaged at line 1"),
]
COMMANDS = {"resume": ["train", "--resume", RUN], "evaluate": ["evaluate", RUN, "-n", "20"],
            "sample": ["sample", RUN, "-n", "4"]}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("what,file,damage,says", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_run_directory_is_named_and_left_as_it_was(capsys, tmp_path, trained_run, command, what, file,
                                                             damage, says):
    if file == "metrics.jsonl" and command != "resume":
        pytest.skip("only training reads the metrics log")
    run_dir = copy_of(trained_run, tmp_path)
    damage(run_dir / file)
    before = snapshot(run_dir)
    err = fails(capsys, fill(COMMANDS[command], run=run_dir), says)
    assert file.split("/")[-1] in err
    assert snapshot(run_dir) == before


def test_evaluate_names_the_part_that_produces_non_finite_values(capsys, tmp_path, trained_run):
    """Finite weights so large that the encoder's sums overflow: the codes are NaN, and evaluation says so."""
    def huge_first_layer(state):
        name = next(k for k, v in state["model"].items() if k.startswith("encoder") and v.ndim == 4)
        state["model"][name] = torch.full_like(state["model"][name], 3e38)

    run_dir = copy_of(trained_run, tmp_path)
    _edit_checkpoint(huge_first_layer)(run_dir / "checkpoints" / "last.pt")
    err = fails(capsys, ["evaluate", run_dir, "-n", "20"], "the encoder of")
    assert "non-finite values (NaN or inf) in its codes of held-out images" in err
    assert not (run_dir / "evaluate.json").exists()


def test_a_torn_last_metrics_line_is_dropped_on_resume(capsys, tmp_path, trained_run):
    run_dir = copy_of(trained_run, tmp_path)
    log = run_dir / "metrics.jsonl"
    first = log.read_text()
    log.write_text(first + '{"epoch": 2, "train_lo')  # a kill in the middle of a write
    config_path = run_dir / "config.yaml"
    config_path.write_text(config_path.read_text().replace("epochs: 1", "epochs: 2"))
    assert main(["train", "--resume", str(run_dir)]) == 0
    lines = log.read_text().splitlines()
    assert lines[0] == first.strip() and [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_output_places_that_cannot_be_written(capsys, tmp_path, mnist_root, trained_run):
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    fails(capsys, fill(TRAIN, root=mnist_root, out=a_file), "is a file, not a folder")
    fails(capsys, fill(TRAIN, root=mnist_root, out=a_file / "run"), "cannot be created")
    assert a_file.read_text() == "not a folder"
    fails(capsys, ["sample", trained_run, "-n", "4", "--out", a_file], "is a file, not a folder")
    fails(capsys, ["sample", trained_run, "-n", "4", "--out", a_file / "sub"], "cannot be created")
    fails(capsys, ["compare", trained_run, trained_run, "--out", a_file], "is a file, not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_a_read_only_folder_is_refused(capsys, tmp_path, mnist_root, trained_run):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        fails(capsys, fill(TRAIN, root=mnist_root, out=folder), "is not writable")
        fails(capsys, fill(TRAIN, root=mnist_root, out=folder / "run"), "cannot be created")
        fails(capsys, ["sample", trained_run, "-n", "4", "--out", folder / "samples"], "is not writable")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_a_run_that_diverges_before_its_first_checkpoint_is_failed_and_can_be_started_again(capsys, tmp_path,
                                                                                            mnist_root):
    out = tmp_path / "run"
    argv = fill(TRAIN, root=mnist_root, out=out) + ["--set", "data.train_size=250", "--set", "data.val_size=50",
                                                     "--epochs", "1", "--set", "train.batch_size=50"]
    fails(capsys, argv + ["--set", "train.lr=1e12"], "diverged at epoch 1, step")
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    assert not (out / "checkpoints" / "last.pt").exists()
    assert main([str(a) for a in argv]) == 0  # the same --out starts again
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert config.load_yaml((out / "config.yaml").read_text())["train"]["lr"] == 5e-4  # the new config's


def test_a_run_that_diverges_later_keeps_its_last_good_checkpoint(capsys, tmp_path, mnist_root, monkeypatch):
    from avae.models.avae import AVAE

    calls = {"n": 0}
    original = AVAE.training_loss

    def diverging(self, x):
        out = original(self, x)
        calls["n"] += 1
        if calls["n"] > 3:  # epoch 1 has 3 steps: (250 − m=100) / 50
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(AVAE, "training_loss", diverging)
    out = tmp_path / "run"
    argv = fill(TRAIN, root=mnist_root, out=out) + ["--set", "data.train_size=250", "--set", "data.val_size=50",
                                                     "--epochs", "3", "--set", "train.batch_size=50"]
    fails(capsys, argv, "diverged at epoch 2, step 1")
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]
    monkeypatch.setattr(AVAE, "training_loss", original)
    assert main(["sample", str(out), "-n", "4"]) == 0  # the last good weights still sample
    fails(capsys, fill(TRAIN, root=mnist_root, out=out), "already holds a run")


LOCK_HOLDER = """
import sys, time
from pathlib import Path
from avae import run
with run.lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_run_being_trained_refuses_a_second_trainer_until_its_process_dies(capsys, tmp_path, trained_run):
    run_dir = copy_of(trained_run, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run_dir)], stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == b"locked"
        before = snapshot(run_dir)
        fails(capsys, ["train", "--resume", run_dir], f"is being trained by another process (pid {holder.pid})")
        assert snapshot(run_dir) == before
    finally:
        holder.kill()  # SIGKILL: the lock goes with the process
        holder.wait()
    config_path = run_dir / "config.yaml"
    config_path.write_text(config_path.read_text().replace("epochs: 1", "epochs: 2"))
    assert main(["train", "--resume", str(run_dir)]) == 0
