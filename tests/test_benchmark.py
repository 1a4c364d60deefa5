"""`avae benchmark` on a tiny suite: plan, run, skip what is done, resume, and write the results."""
import json

import yaml

from avae import config
from avae.benchmark import load_suite, only_seeds, plan
from avae.cli import main
from fixtures import write_mnist
from pagecheck import check_page

SUITE = {
    "description": "tiny",
    "seeds": [0, 1],
    "evaluate": {"n": 60, "disentanglement": "none", "classifier_images": 300, "classifier_epochs": 1},
    "experiments": [{
        "dataset": "mnist", "models": ["avae", "ae"],
        "settings": {"model.latent_dim": 4, "model.width": 0.125, "train.epochs": 1, "train.batch_size": 50,
                     "train.figures_every": 1},
        "model_settings": {"avae": {"model.kde_size": 100}},
    }],
}


def test_plan_expands_models_seeds_and_settings(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(SUITE))
    jobs = plan(load_suite(str(path)))
    assert [j.name for j in jobs] == ["mnist-avae-s0", "mnist-avae-s1", "mnist-ae-s0", "mnist-ae-s1"]
    assert jobs[0].settings["model.kde_size"] == 100 and "model.kde_size" not in jobs[2].settings
    assert len(plan(load_suite("paper-cpu"))) == 57  # (7 + 6 + 6 models) × 3 seeds: vamp on Fashion-MNIST only


def sections(cfg) -> dict:
    """A resolved config as its run's config.yaml holds it."""
    return config.load_yaml(config.dump(cfg))


def test_a_null_suite_setting_reaches_the_run_as_null(tmp_path):
    suite = {**SUITE, "experiments": [{**SUITE["experiments"][0], "settings": {"data.train_size": None,
                                                                             "model.arch": None}}]}
    path = tmp_path / "nulls.yaml"
    path.write_text(yaml.safe_dump(suite))
    job = plan(load_suite(str(path)))[0]
    cfg = sections(config.resolve(None, settings=job.settings))
    assert cfg["data"]["train_size"] is None and job.settings["data.train_size"] is None


def test_suite_settings_reach_the_config_as_the_values_the_file_holds(tmp_path):
    """Null, a list and a nested mapping arrive as themselves, not as text read back (a string that reads
    as another type in YAML stays a string)."""
    encoder = {"class": "mynets:Encoder", "hidden": 8, "note": "yes"}
    decoder = {"class": "mynets:Decoder", "sizes": [8, 16], "extra": {"depth": 2, "skip": None}}
    suite = {**SUITE, "experiments": [{"dataset": "mnist", "models": ["aae"],
                                       "settings": {"train.threads": None, "data.root": "on",
                                                    "model.encoder": encoder, "model.decoder": decoder},
                                       "model_settings": {"aae": {"model.disc_hidden": [16, 8]}}}]}
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))  # the settings in the file's order
    job = plan(load_suite(str(path)))[0]
    assert list(job.settings) == ["data.name", "model.name", "train.seed", "train.progress", "train.threads",
                                  "data.root", "model.encoder", "model.decoder", "model.disc_hidden"]
    assert job.settings["train.progress"] is False and job.settings["train.seed"] == 0
    cfg = sections(config.resolve(None, settings=job.settings))
    assert cfg["train"]["threads"] is None and cfg["data"]["root"] == "on"
    assert cfg["model"]["encoder"] == encoder and cfg["model"]["decoder"] == decoder
    assert cfg["model"]["disc_hidden"] == [16, 8] and cfg["train"]["progress"] is False


def test_benchmark_runs_skips_and_resumes(tmp_path, capsys):
    data = tmp_path / "data"
    write_mnist(data, n_train=600, n_test=60)
    suite = tmp_path / "tiny.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    args = ["benchmark", "--suite", str(suite), "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res"),
            "--data-root", str(data)]
    assert main(args) == 0
    results = json.loads((tmp_path / "res" / "tiny.json").read_text())
    assert len(results["records"]) == 4
    record = results["records"][0]
    assert record["headline"]["fd_N"] > 0 and record["settings"] and record["training"]["epoch_times_s"]
    assert set(results["summary"]["mnist"]["fd_N"]) == {"avae", "ae"}
    table = (tmp_path / "res" / "tiny.md").read_text()
    assert "| fd_N ↓ |" in table and "[13.27]" in table  # the paper's MNIST value beside ours
    page = check_page(tmp_path / "res" / "tiny.html")
    assert {"mnist", "mnist: pictures", "Performance"} <= set(page.headings)
    assert {"avae", "ae"} <= set(page.header_cells)  # one column per model
    # each model's first-seed pictures, copied beside the page, byte for byte those its evaluation wrote
    assert len(page.images) == 6 and all(src.startswith("tiny-pictures/") for src in page.images)
    first = results["records"][0]
    assert set(first["pictures"]) == {"samples", "reconstructions", "latents"} and "pictures" not in results["records"][1]
    for kind, entry in first["pictures"].items():
        assert entry["sha256"] == first["evaluation"]["figures"][kind]["sha256"]
    assert "Command: `avae benchmark --suite tiny`" in table and "- fd_N: AVAE " in table
    perf = results["performance"]
    assert perf["gemm_peak_gflops"]["float32"] > 0
    assert set(results["machine"]) == {"platform", "cpus", "torch_threads", "gpu"}  # as the committed results'
    mnist = perf["datasets"]["mnist"]
    assert 0 < mnist["models"]["avae"]["kde_refresh_share"] < 1 and mnist["bandwidth_estimation_s"] > 0
    assert mnist["models"]["ae"]["gflops_per_s"] > 0 and "## Performance" in table
    threads = {t for r in results["records"] if r["model"] == "avae" for t in r["training"]["threads"]}
    assert threads and all(isinstance(t, int) for t in threads)  # each epoch's, under `auto`
    assert mnist["models"]["avae"]["threads"] == "–".join(str(t) for t in sorted(threads))

    # the pages are rewritten from the results alone; a changed picture is left out, not shown as the record's
    (tmp_path / "res" / "tiny.md").unlink()
    picture = tmp_path / "res" / first["pictures"]["samples"]["file"]
    picture.write_bytes(picture.read_bytes() + b"changed")
    assert main(["benchmark", "--suite", str(suite), "--results", str(tmp_path / "res"), "--pages-only"]) == 0
    assert (tmp_path / "res" / "tiny.md").read_text() == table
    assert len(check_page(tmp_path / "res" / "tiny.html").images) == 5

    # a second call skips finished runs; an interrupted one is resumed and evaluated
    done = tmp_path / "runs" / "tiny" / "mnist-avae-s0"
    stamp = (done / "checkpoints" / "last.pt").stat().st_mtime_ns
    broken = tmp_path / "runs" / "tiny" / "mnist-ae-s1"
    (broken / "evaluate.json").unlink()
    info = json.loads((broken / "run.json").read_text())
    (broken / "run.json").write_text(json.dumps({**info, "status": "running"}))
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "4 runs, 3 finished before, 1 to run (local, one at a time in this process)" in out
    assert "[4/4 finished, 0 running, 0 failed] mnist-ae-s1 finished in " in out and "mnist-avae-s0" not in out
    assert (done / "checkpoints" / "last.pt").stat().st_mtime_ns == stamp
    assert (broken / "evaluate.json").is_file()
    assert json.loads((broken / "run.json").read_text())["status"] == "finished"

    # a part of the suite reuses its runs and writes results of its own
    assert main(args + ["--datasets", "mnist"]) == 0
    part = json.loads((tmp_path / "res" / "tiny-mnist.json").read_text())
    assert len(part["records"]) == 4 and part["command"] == "avae benchmark --suite tiny --datasets mnist"
    assert (done / "checkpoints" / "last.pt").stat().st_mtime_ns == stamp
    # and so does a part of its seeds
    assert main(args + ["--datasets", "mnist", "--seeds", "1"]) == 0
    part = json.loads((tmp_path / "res" / "tiny-mnist-s1.json").read_text())
    assert [(r["model"], r["seed"]) for r in part["records"]] == [("avae", 1), ("ae", 1)]
    assert part["command"] == "avae benchmark --suite tiny --datasets mnist --seeds 1"
    assert {n for by_model in part["summary"]["mnist"].values() for _, _, n in by_model.values()} == {1}
    assert (tmp_path / "res" / "tiny-mnist-s1.md").read_text().startswith("# Benchmark suite `tiny` (mnist; seeds 1)")
    assert (done / "checkpoints" / "last.pt").stat().st_mtime_ns == stamp
    capsys.readouterr()
    assert main(args + ["--datasets", "cifar10"]) == 2
    assert "suite tiny has no dataset cifar10; it has: mnist" in capsys.readouterr().err
    for seeds, says in (("2", "suite tiny has no seed 2; its seeds are: 0, 1"), ("one", "--seeds takes seeds separated")):
        assert main(args + ["--seeds", seeds]) == 2
        assert says in capsys.readouterr().err


def test_a_part_of_the_seeds_leaves_out_experiments_with_none_of_them():
    suite = {"name": "s", "seeds": [0, 1], "experiments": [
        {"dataset": "mnist", "models": ["ae"]}, {"dataset": "dsprites", "models": ["ae"], "seeds": [5, 6]}]}
    assert [j.name for j in plan(only_seeds(suite, [1]))] == ["mnist-ae-s1"]
    assert [j.name for j in plan(only_seeds(suite, [6, 0]))] == ["mnist-ae-s0", "dsprites-ae-s6"]
    assert [j.name for j in plan(only_seeds({**suite, "seeds": [0]}, [5]))] == ["dsprites-ae-s5"]


def test_unknown_suite_is_a_user_error(capsys):
    assert main(["benchmark", "--suite", "nope"]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err


def test_the_bfloat16_peak_is_measured_only_where_the_hardware_computes_it(monkeypatch):
    """Emulated (an AVX2 CPU), one 2048² bfloat16 product takes about a minute: a results file there
    records the float32 peak alone, and its pages say why bfloat16 is missing."""
    from avae import hardware, pages, performance

    measured = []
    monkeypatch.setattr(performance, "gemm_peak", lambda dtype, device="cpu": measured.append(dtype) or 100.0)
    for native, dtypes, says in ((False, ["float32"], "bfloat16 not measured (emulated on this hardware)"),
                                 (True, ["float32", "bfloat16"], "100 GFLOP/s in bfloat16")):
        monkeypatch.setattr(hardware, "native_bf16", lambda device, facts=None: native)
        measured.clear()
        peaks = performance.measure([])["gemm_peak_gflops"]
        assert [str(d).removeprefix("torch.") for d in measured] == dtypes == list(peaks)
        assert pages.peaks_text(peaks) == f"100 GFLOP/s in float32, {says}"
