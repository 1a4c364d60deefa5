"""Bad input: one line naming the problem, exit code 2, no traceback, no run directory."""
import gzip
import subprocess
import sys

import pytest

from avae.cli import main
from fixtures import write_mnist


@pytest.fixture()
def writable_mnist_root(tmp_path):
    """MNIST files of this test's own, which it may damage (the session's `mnist_root` is shared)."""
    root = tmp_path / "data"
    write_mnist(root, n_train=600, n_test=60)
    return root


def fails(capsys, *argv, says):
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("avae: error:") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert says in err, err
    return err


SMALL = ["--set", "model.width=0.125", "--set", "model.kde_size=100", "--set", "train.progress=false"]


@pytest.mark.parametrize(
    "extra,says",
    [
        (["--dataset", "nope"], "unknown dataset 'nope'"),
        (["--model", "nope"], "unknown model 'nope'"),
        (["--set", "model.kde_size=500"], "smaller than the training set"),
        (["--set", "model.kde_size=5000"], "smaller than the training set"),
        (["--set", "model.latent_dim=0"], "latent_dim"),
        (["--set", "model.latent_dim=-2"], "latent_dim"),
        (["--set", "model.latent_dim=abc"], "latent_dim"),
        (["--set", "model.nonsense=1"], "no setting model.nonsense"),
        (["--set", "train.nonsense=1"], "unknown train setting nonsense"),
        (["--set", "train.lr=fast"], "train.lr must be a number"),
        (["--set", "oops"], "must look like section.key=value"),
        (["--set", "extra.key=1"], "unknown config section 'extra'"),
    ],
)
def test_bad_settings(capsys, tmp_path, mnist_root, extra, says):
    out = tmp_path / "run"
    fails(capsys, "train", "--dataset", "mnist", "--data-root", str(mnist_root), *SMALL, *extra, "--out", str(out), says=says)
    assert not out.exists()


def test_missing_data_file_names_it_and_how_to_get_it(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    err = fails(capsys, "train", "--dataset", "mnist", "--data-root", str(empty), "--out", str(tmp_path / "r"),
                says="train-images-idx3-ubyte")
    assert str(empty) in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("damage,says", [("magic", "magic"), ("truncate", "truncated")])
def test_corrupt_data_file(capsys, tmp_path, writable_mnist_root, damage, says):
    path = writable_mnist_root / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    raw = b"\x00\x00\x09\x99" + raw[4:] if damage == "magic" else raw[: len(raw) // 2]
    path.write_bytes(gzip.compress(raw))
    fails(capsys, "train", "--dataset", "mnist", "--data-root", str(writable_mnist_root), *SMALL, "--out", str(tmp_path / "r"),
          says=says)
    assert not (tmp_path / "r").exists()


def test_resume_of_a_folder_that_is_not_a_run(capsys, tmp_path):
    fails(capsys, "train", "--resume", str(tmp_path), says="not a run directory")
    fails(capsys, "train", "--resume", str(tmp_path / "missing"), says="not a run directory")


def test_resume_with_a_corrupt_checkpoint_keeps_the_files(capsys, tmp_path, mnist_root):
    run_dir = tmp_path / "r"
    assert main(["train", "--dataset", "mnist", "--data-root", str(mnist_root), *SMALL, "--epochs", "1",
                 "--set", "train.figures_every=0", "--out", str(run_dir)]) == 0
    capsys.readouterr()
    checkpoint = run_dir / "checkpoints" / "last.pt"
    checkpoint.write_bytes(b"garbage")
    fails(capsys, "train", "--resume", str(run_dir), says="corrupt")
    assert checkpoint.read_bytes() == b"garbage"  # nothing overwritten
    fails(capsys, "train", "--dataset", "mnist", "--data-root", str(mnist_root), *SMALL, "--out", str(run_dir),
          says="already holds a run")


def test_sample_needs_a_run(capsys, tmp_path):
    fails(capsys, "sample", str(tmp_path), says="not a run directory")


def test_models_lists_every_registered_model(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()]
    assert {"ae", "avae"} <= set(names) and names == sorted(names)
    assert "N(0, (1−h²)I)" in out


def test_datasets_lists_each_dataset_with_where_its_files_are(capsys, tmp_path, monkeypatch):
    from avae.data import DATASETS

    monkeypatch.delenv("AVAE_DATA_ROOT", raising=False)
    write_mnist(tmp_path / "mnist")
    assert main(["datasets", "--data-root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines[::2]]
    assert names == sorted(DATASETS) and all(line.split()[0] == "files:" for line in lines[1::2])
    where = dict(zip(names, lines[1::2]))
    assert where["mnist"].endswith(f"found in {tmp_path / 'mnist'}")
    assert f"not found in {tmp_path}, {tmp_path / 'cifar10'}" in where["cifar10"]
    assert "rendered procedurally" in where["dsprites"] and str(tmp_path / "dsprites") in where["dsprites"]
    assert where["images"].endswith(str(tmp_path))


def test_output_closed_by_its_reader_ends_quietly():
    reader_gone = subprocess.Popen([sys.executable, "-m", "avae", "datasets"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
    reader_gone.stdout.close()  # as `avae datasets | head -0` does
    assert reader_gone.wait() == 141 and reader_gone.stderr.read() == b""


def test_module_entry_point_and_argparse_errors():
    ok = subprocess.run([sys.executable, "-m", "avae", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "bandwidth" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "avae", "train", "--epochs", "x"], capture_output=True, text=True)
    assert bad.returncode == 2


def test_the_command_line_is_parsed_without_importing_torch():
    code = "import sys; from avae import cli; cli._parser(); print(sorted(m for m in ('torch', 'scipy') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_help_names_each_default(capsys):
    assert main(["evaluate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default: 10000)", "seed of every metric's draws (default: 0)", "(default: last)", "(default: auto)"):
        assert shown in text


def test_config_prints_the_whole_configuration_train_would_use(capsys, tmp_path):
    from avae import config

    assert main(["config", "--dataset", "mnist", "--model", "vae", "--epochs", "3", "--set", "model.latent_dim=8"]) == 0
    printed = capsys.readouterr().out
    cfg = config.load_yaml(printed)
    resolved = config.resolve(None, ["data.name=mnist", "model.name=vae", "train.epochs=3", "model.latent_dim=8"])
    assert cfg == resolved.to_dict()
    assert cfg["train"]["lr"] == 5e-4 and cfg["train"]["checkpoint_minutes"] == 5.0  # defaults written out
    (tmp_path / "c.yaml").write_text(printed)  # a round trip: the printed file resolves to itself
    assert config.resolve(str(tmp_path / "c.yaml")) == resolved


def test_a_finished_run_names_the_next_step(capsys, tmp_path):
    from avae.cli import _finished

    assert _finished(tmp_path) == 0
    assert f"next: `avae evaluate {tmp_path}` scores it" in capsys.readouterr().out


@pytest.mark.parametrize("busy", [0.2, 1.6])
def test_the_demo_warns_when_other_work_makes_its_minute_longer(capsys, tmp_path, monkeypatch, busy):
    from avae import hardware, trainer

    monkeypatch.setattr(hardware, "busy_cores", lambda: busy)
    monkeypatch.setattr(hardware, "available_cores", lambda: 2)
    monkeypatch.setattr(trainer, "start", lambda cfg, out: out)  # the warning comes before any training
    assert main(["demo", "--out", str(tmp_path)]) == 0
    warned = "note: other work keeps 1.6 of this machine's 2 cores busy, so the demo's minute will be longer"
    assert (warned in capsys.readouterr().err) == (busy > 1)


def test_bandwidth_says_when_it_has_to_estimate(capsys):
    assert main(["bandwidth", "-l", "3", "-m", "57"]) == 0
    assert "estimating h_opt for l=3, m=57" in capsys.readouterr().err
    assert main(["bandwidth", "-l", "3", "-m", "57"]) == 0  # cached now: nothing to wait for, nothing said
    assert capsys.readouterr().err == ""


def test_ctrl_c_in_a_benchmark_names_the_command_that_continues_the_suite(capsys, tmp_path, monkeypatch):
    from avae import benchmark

    def interrupted(*args, **kwargs):
        error = KeyboardInterrupt()
        error.run_dir = tmp_path / "runs" / "mnist-avae-s0"  # as the trainer marks the run it stopped
        raise error

    monkeypatch.setattr(benchmark, "run_suite", interrupted)
    argv = ["benchmark", "--suite", "smoke", "--runs", str(tmp_path / "runs")]
    assert main(argv) == 130
    said = capsys.readouterr().err
    assert said.endswith(f"the suite continues with\navae benchmark --suite smoke --runs {tmp_path / 'runs'}\n")


def test_the_evaluation_defaults_are_declared_once():
    import dataclasses
    import inspect

    from avae.cli import _parser
    from avae.config import EVALUATE_DEFAULTS
    from avae.evaluation import evaluate

    declared = dataclasses.asdict(EVALUATE_DEFAULTS)
    signature = {k: p.default for k, p in inspect.signature(evaluate).parameters.items() if k in declared}
    assert signature == declared  # the Python API
    flags = vars(_parser().parse_args(["evaluate", "RUN"]))
    assert {k: flags[k] for k in declared if k in flags} == {k: v for k, v in declared.items() if k in flags}
    assert set(declared) - set(flags) == {"entropy_kde_size", "classifier_images", "classifier_epochs", "progress"}
