"""`avae benchmark --samplers`: each run scored once per sampler, finished runs re-scored without training."""
import json

import pytest
import yaml

from avae.benchmark import load_suite
from avae.metrics.catalogue import SAMPLER_HEADLINES
from avae.cli import main
from avae.errors import AvaeError
from fixtures import write_mnist
from pagecheck import check_page

SUITE = {
    "description": "tiny",
    "seeds": [0, 1],
    "evaluate": {"n": 60, "disentanglement": "none", "classifier_images": 300, "classifier_epochs": 1},
    "experiments": [{
        "dataset": "mnist", "models": ["ae"],
        "settings": {"model.latent_dim": 4, "model.width": 0.125, "train.epochs": 1, "train.batch_size": 50},
    }],
}


def _suite(tmp_path, **evaluate):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**SUITE, "evaluate": {**SUITE["evaluate"], **evaluate}}))
    return path


def test_suite_file_declares_samplers_once_and_unknown_ones_are_refused(tmp_path):
    assert load_suite(str(_suite(tmp_path, samplers="prior,gaussian")))["evaluate"]["samplers"] == "prior,gaussian"
    with pytest.raises(AvaeError, match="evaluate.samplers: unknown sampler 'nope'"):
        load_suite(str(_suite(tmp_path, samplers="prior,nope")))


def test_unknown_sampler_is_refused_before_anything_runs(tmp_path, capsys):
    suite = _suite(tmp_path)
    runs = tmp_path / "runs"
    assert main(["benchmark", "--suite", str(suite), "--runs", str(runs), "--results", str(tmp_path / "res"),
                 "--samplers", "prior,nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown sampler 'nope'" in err and len(err.splitlines()) == 1
    assert not runs.exists() and not (tmp_path / "res").exists()


def test_benchmark_scores_each_sampler_and_rescores_without_training(tmp_path, capsys):
    data = tmp_path / "data"
    write_mnist(data, n_train=600, n_test=60)
    suite = _suite(tmp_path)
    res = tmp_path / "res"
    args = ["benchmark", "--suite", str(suite), "--runs", str(tmp_path / "runs"), "--results", str(res),
            "--data-root", str(data)]
    assert main(args + ["--samplers", "prior,gaussian"]) == 0
    results = json.loads((res / "tiny.json").read_text())
    assert results["command"] == "avae benchmark --suite tiny --samplers prior,gaussian"
    assert results["suite"]["evaluate"]["samplers"] == "prior,gaussian"
    for record in results["records"]:  # each sampler's numbers are its run's evaluate.json's
        scored = json.loads((tmp_path / "runs" / "tiny" / f"mnist-ae-s{record['seed']}" / "evaluate.json").read_text())
        assert list(record["samplers"]) == ["prior", "gaussian"]
        for name, values in record["samplers"].items():
            entry = scored["samplers"][name]
            assert values["fd_N"] == entry["sample_quality"]["frechet_distance"] > 0
            assert values["prd_precision_N"] == entry["sample_quality"]["prd"]["precision"]
            assert values["prd_recall_N"] == entry["sample_quality"]["prd"]["recall"]
            assert values["sliced_ks"] == entry["latent_fit"]["sliced_ks"]
        assert record["samplers"]["prior"]["fd_N"] == record["headline"]["fd_N"]  # prior is the model's own N set
        assert record["samplers"]["gaussian"]["codes_log_likelihood"] == (
            scored["samplers"]["gaussian"]["latent_fit"]["log_likelihood_per_dim"])
    # the summary over seeds per (dataset, metric, model, sampler)
    by_sampler = results["sampler_summary"]["mnist"]["fd_N"]["ae"]
    values = [r["samplers"]["gaussian"]["fd_N"] for r in results["records"]]
    mean, std, n = by_sampler["gaussian"]
    assert set(by_sampler) == {"prior", "gaussian"} and n == 2 and mean == pytest.approx(sum(values) / 2)
    assert std == pytest.approx(abs(values[0] - values[1]) / 2)
    table = (res / "tiny.md").read_text()
    assert "### mnist: samplers" in table and "| model | sampler | fd_N ↓ |" in table
    assert "| ae | prior |" in table and "| ae | gaussian |" in table
    page = check_page(res / "tiny.html")
    assert "mnist: samplers" in page.headings and "sampler" in page.header_cells
    assert (tmp_path / "res" / "tiny.html").read_text().count("<td>ae</td><td>gaussian</td>") == 1

    # more samplers: the finished runs are re-scored, neither trained again nor their gaussian fitted again
    run = tmp_path / "runs" / "tiny" / "mnist-ae-s0"
    kept = [*(run / "checkpoints").iterdir(), run / "samplers" / "gaussian-last.pt"]
    stamps = {p: p.stat().st_mtime_ns for p in kept}
    capsys.readouterr()
    assert main(args + ["--samplers", "prior,gaussian,gmm"]) == 0
    assert "2 runs, 0 finished before, 2 to run" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (run / "samplers" / "gmm-last.pt").is_file()
    results = json.loads((res / "tiny.json").read_text())
    assert all(list(r["samplers"]) == ["prior", "gaussian", "gmm"] for r in results["records"])
    assert set(results["sampler_summary"]["mnist"]["sliced_ks"]["ae"]) == {"prior", "gaussian", "gmm"}
    assert "| ae | gmm |" in (res / "tiny.md").read_text()
    # the job commands of runs not scored with the samplers asked name them
    capsys.readouterr()
    assert main(args + ["--jobs", "--samplers", "gaussian,flow"]) == 0
    commands = capsys.readouterr().out.splitlines()
    assert len(commands) == 2 and all(c.endswith("--samplers gaussian,flow --only " + c.split()[-1]) for c in commands)
    assert main(args + ["--jobs", "--samplers", "gmm"]) == 0
    assert capsys.readouterr().out == ""

    # a sampler file that cannot be used for the checkpoint is fitted again before the run is re-scored
    (run / "samplers" / "gaussian-last.pt").write_bytes(b"damaged")
    (run / "evaluate.json").unlink()
    assert main(args + ["--samplers", "prior,gaussian,gmm"]) == 0
    assert "fitting the gaussian sampler again: " in (run / "benchmark.log").read_text()
    assert {p: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()} == {
        p: t for p, t in stamps.items() if p.parent.name == "checkpoints"}
    assert (run / "samplers" / "gaussian-last.pt").read_bytes()[:7] != b"damaged"
    assert "gaussian" in json.loads((run / "evaluate.json").read_text())["samplers"]

    # without --samplers: nothing runs again and the results are those of the model's own sampler alone
    evaluated = (run / "evaluate.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (run / "evaluate.json").stat().st_mtime_ns == evaluated
    results = json.loads((res / "tiny.json").read_text())
    assert "sampler_summary" not in results and all("samplers" not in r for r in results["records"])
    assert results["command"] == "avae benchmark --suite tiny" and "samplers" not in results["suite"]["evaluate"]
    assert "### mnist: samplers" not in (res / "tiny.md").read_text()
    assert "mnist: samplers" not in check_page(res / "tiny.html").headings
    assert set(SAMPLER_HEADLINES) >= {"fd_N", "prd_precision_N", "prd_recall_N", "sliced_ks", "codes_log_likelihood"}
