"""An `avae evaluate` stopped by Ctrl-C or an error keeps its finished phases; the same command
continues from them and writes what an uninterrupted evaluation writes; other settings never reuse them."""
import json
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from avae import config, evaluation, run, trainer
from avae.cli import main
from avae.errors import AvaeError
from avae.evaluation import evaluate
from avae.metrics import disentangle, generative, latent
from avae.metrics.features import RandomFeatures

# the disentanglement metrics at sizes that take a second
TINY = {"beta_vae": {"batch_size": 8, "num_train": 30, "num_eval": 20},
        "factor_vae": {"batch_size": 8, "num_train": 30, "num_eval": 20, "num_variance_estimate": 100,
                       "prune_threshold": 0.05},
        "mig": {"num_train": 100, "num_bins": 5}, "dci": {"num_train": 100, "num_test": 50},
        "sap": {"num_train": 100, "num_test": 50, "continuous_factors": False},
        "pca_factor_vae": {"images_per_vote": 8, "num_train": 20, "num_eval": 20},
        "pca_mig": {"images_per_vote": 8, "num_votes": 20, "num_train": 100, "num_bins": 5}}


class Squares:
    """Ground-truth factors on the run's 32×32 images: one white square, its column and row the factors."""

    factor_sizes, factor_names = (3, 4), ("column", "row")

    def sample_factors(self, n, generator):
        return np.stack([generator.integers(0, s, n) for s in self.factor_sizes], axis=1)

    def images_for_factors(self, classes):
        images = np.zeros((len(classes), 1, 32, 32), np.uint8)
        for i, (column, row) in enumerate(np.atleast_2d(classes)):
            images[i, 0, 4 + 7 * row : 10 + 7 * row, 4 + 9 * column : 12 + 9 * column] = 255
        return torch.from_numpy(images)


def with_factors(monkeypatch):
    """The run's MNIST with the Squares factors beside it, and the disentanglement metrics at TINY sizes."""
    load_data = evaluation.load_data

    def load(cfg, **kwargs):
        data = load_data(cfg, **kwargs)
        data.factor_grid = Squares()
        return data

    monkeypatch.setattr(evaluation, "load_data", load)
    monkeypatch.setitem(disentangle.PRESETS, "fast", TINY)


# entropy_kde_size 100: the bandwidth that training cached (estimating the one for 10,000 takes seconds)
SETTINGS = {"n": 60, "seed": 1, "features": "random", "entropy_kde_size": 100}


@pytest.fixture(scope="module")
def evaluated(mnist_root, tmp_path_factory):
    """A tiny trained run and the evaluate.json of its uninterrupted evaluation."""
    cfg = config.resolve(None, ["data.name=mnist", f"data.root={mnist_root}", "model.latent_dim=4", "model.width=0.125",
                                "model.kde_size=100", "train.batch_size=50", "train.epochs=1", "train.progress=false",
                                "train.figures_every=0"])
    with pytest.MonkeyPatch.context() as m:
        # the session's own cache (conftest's autouse fixture sets it only for each test, after this one)
        m.setenv("AVAE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        run_dir = trainer.start(cfg, tmp_path_factory.mktemp("runs") / "r")
        with_factors(m)
        evaluate(run_dir, **SETTINGS, progress=False)
    assert not (run_dir / "evaluation" / "partial").exists()  # a finished evaluation keeps no phases
    return run_dir, (run_dir / "evaluate.json").read_bytes()


@pytest.fixture
def run_dir(evaluated, monkeypatch):
    """The evaluated run as its uninterrupted evaluation left it (evaluate.json in place, no phases kept)."""
    path, uninterrupted = evaluated
    shutil.rmtree(path / "evaluation" / "partial", ignore_errors=True)
    (path / "evaluate.json").write_bytes(uninterrupted)
    with_factors(monkeypatch)
    return path


def counted(monkeypatch, owner, name, fail_on=None, error=KeyboardInterrupt):
    """Count the calls of owner.name; the call numbered `fail_on` raises `error` instead (Ctrl-C)."""
    calls = []
    real = getattr(owner, name) if not isinstance(owner, dict) else owner[name]

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == fail_on:
            raise error() if error is KeyboardInterrupt else error("a test made this step fail")
        return real(*args, **kwargs)

    (monkeypatch.setitem if isinstance(owner, dict) else monkeypatch.setattr)(owner, name, wrapper)
    return calls


def without_timings(data: bytes) -> dict:
    result = json.loads(data)
    del result["timings_s"]  # seconds: never equal between two evaluations
    return result


def test_ctrl_c_keeps_the_finished_phases_and_the_same_command_continues(evaluated, run_dir, monkeypatch, capsys):
    uninterrupted = evaluated[1]
    with monkeypatch.context() as m:  # Ctrl-C while PRD scores INT, the second of the three sets
        counted(m, generative, "prd", fail_on=2)
        with pytest.raises(KeyboardInterrupt):
            evaluate(run_dir, **SETTINGS)
    err = capsys.readouterr().err
    (stop,) = [line for line in err.splitlines() if line.startswith("avae evaluate: interrupted")]  # one line
    assert "its 7 finished phases (features (real, REC, INT), fd (REC, INT), prd (REC), knn (REC))" in stop
    assert (f"`avae.evaluate('{run_dir}', n=60, seed=1, features='random', entropy_kde_size=100)` "
            "continues from them") in stop  # a setting without a flag: the Python call
    assert (run_dir / "evaluate.json").read_bytes() == uninterrupted  # the finished result survives
    (store,) = (run_dir / "evaluation" / "partial").iterdir()
    (store / "fd_REC.json").write_text('{"seconds": 0.1, "val')  # a damaged phase is computed again

    features = counted(monkeypatch, RandomFeatures, "__call__")
    fd = counted(monkeypatch, generative, "frechet_distance")
    prd = counted(monkeypatch, generative, "prd")
    knn = counted(monkeypatch, generative, "manifold_scores")
    evaluate(run_dir, **SETTINGS)
    out = capsys.readouterr().out
    assert "continuing an interrupted evaluation: 7 finished phases kept" in out
    assert "features_real: kept from an interrupted evaluation" in out
    assert "prd_REC: kept from an interrupted evaluation" in out and "prd_INT ..." in out
    # only what had not finished ran: features of N; FD of N (and REC's damaged one); PRD and k-NN of INT and N
    assert (len(features), len(fd), len(prd), len(knn)) == (1, 2, 2, 2)
    resumed = (run_dir / "evaluate.json").read_bytes()
    assert without_timings(resumed) == without_timings(uninterrupted)  # every number, every picture's hash
    assert json.loads(resumed)["timings_s"].keys() == json.loads(uninterrupted)["timings_s"].keys()
    assert not (run_dir / "evaluation" / "partial").exists()


def test_other_settings_never_reuse_kept_phases(run_dir, monkeypatch, capsys):
    """An error also keeps the finished phases; an evaluation with another seed computes its own and
    replaces them."""
    with monkeypatch.context() as m:
        counted(m, generative, "prd", fail_on=1, error=AvaeError)
        assert main(["evaluate", str(run_dir), "-n", "60", "--seed", "1", "--features", "random"]) == 2
    err = capsys.readouterr().err
    assert "stopped by an error (AvaeError); evaluate.json was not written; its 3 finished phases " \
           f"(features (real, REC), fd (REC)) are kept in {run_dir}/evaluation/partial/" in err
    assert f"once it is fixed, `avae evaluate {run_dir} -n 60 --seed 1 --features random` continues" in err
    assert "avae: error: a test made this step fail" in err

    features = counted(monkeypatch, RandomFeatures, "__call__")
    fd = counted(monkeypatch, generative, "frechet_distance")
    counted(monkeypatch, generative, "prd", fail_on=1)  # Ctrl-C at the same place, with seed 2
    assert main(["evaluate", str(run_dir), "-n", "60", "--seed", "2", "--features", "random"]) == 130
    assert (len(features), len(fd)) == (2, 1)  # seed 1's features and FD of REC were not reused
    err = capsys.readouterr().err
    assert f"avae evaluate: interrupted; evaluate.json was not written; its 3 finished phases (features (real, " \
           f"REC), fd (REC)) are kept in {run_dir}/evaluation/partial/" in err
    assert f"`avae evaluate {run_dir} -n 60 --seed 2 --features random` continues from them" in err
    assert "with other settings (seed 1, not 2); this evaluation replaces them" in err
    (store,) = (run_dir / "evaluation" / "partial").iterdir()  # seed 1's phases are gone
    assert json.loads((store / "key.json").read_text())["seed"] == 2
    assert np.load(store / "features_real.npy", allow_pickle=False).shape == (60, 128)


def test_each_finished_disentanglement_metric_is_kept(evaluated, run_dir, monkeypatch, capsys):
    uninterrupted = evaluated[1]
    assert set(json.loads(uninterrupted)["disentanglement"]) == set(disentangle.METRICS)
    calls = {name: counted(monkeypatch, disentangle.METRICS, name) for name in disentangle.METRICS if name != "dci"}
    with monkeypatch.context() as m:  # Ctrl-C in DCI, the fourth metric
        counted(m, disentangle.METRICS, "dci", fail_on=1)
        with pytest.raises(KeyboardInterrupt):
            evaluate(run_dir, **SETTINGS, progress=False)
    err = capsys.readouterr().err
    assert "gaussian_kl, chi2, disentanglement (beta_vae, factor_vae, mig)" in err
    assert f"`avae.evaluate('{run_dir}', n=60, seed=1, features='random', entropy_kde_size=100)` continues" in err
    assert {name: len(c) for name, c in calls.items()} == {"beta_vae": 1, "factor_vae": 1, "mig": 1, "sap": 0,
                                                          "pca_factor_vae": 0, "pca_mig": 0}

    calls["dci"] = counted(monkeypatch, disentangle.METRICS, "dci")
    entropy = counted(monkeypatch, latent, "whitened_entropy")
    prd = counted(monkeypatch, generative, "prd")
    evaluate(run_dir, **SETTINGS, progress=False)
    # the three finished metrics (and the sample and latent quality before them) were not computed again
    assert {name: len(c) for name, c in calls.items()} == {"beta_vae": 1, "factor_vae": 1, "mig": 1, "dci": 1,
                                                          "sap": 1, "pca_factor_vae": 1, "pca_mig": 1}
    assert entropy == [] and prd == []
    assert without_timings((run_dir / "evaluate.json").read_bytes()) == without_timings(uninterrupted)


def test_sigint_to_the_command_keeps_the_phases_and_exits_130(run_dir):
    """A real Ctrl-C (SIGINT) to `avae evaluate`, sent while PRD scores INT."""
    flags = ["-n", "60", "--seed", "5", "--features", "random"]
    # SIGINT as a terminal delivers it, even where the tests run with it ignored (a shell's background job)
    proc = subprocess.Popen([sys.executable, "-m", "avae", "evaluate", str(run_dir), *flags], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    shown = ""
    while "prd_INT ..." not in shown:  # the step's name is printed before it starts, its seconds after
        char = proc.stdout.read(1)
        assert char, f"the evaluation ended before PRD of INT: {shown[-300:]} {proc.stderr.read()[-300:]}"
        shown += char
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "avae evaluate: interrupted; evaluate.json was not written; its 7 finished phases (features (real, " \
           "REC, INT), fd (REC, INT), prd (REC), knn (REC))" in err
    assert f"`avae evaluate {run_dir} -n 60 --seed 5 --features random` continues from them" in err
    (store,) = (run_dir / "evaluation" / "partial").iterdir()
    assert sorted(p.name for p in store.iterdir()) == sorted(
        ["key.json", "fd_REC.json", "fd_INT.json", "prd_REC.json", "knn_REC.json"]
        + [f"features_{name}.{kind}" for name in ("real", "REC", "INT") for kind in ("json", "npy")])
