"""The HTML pages: numbers rounded to what they mean, labels from the catalogue, the committed results page."""
import json
import math
import shlex
import shutil
from pathlib import Path

import pytest

from avae import benchmark, config, pages
from avae.cli import main
from avae.metrics.catalogue import LOWER_IS_BETTER, describe, headlines
from pagecheck import check_page

RESULTS = Path(__file__).parents[1] / "benchmarks" / "results" / "paper-cpu.json"


def test_numbers_keep_meaningful_digits():
    assert pages.number(0.91174932658) == "0.912" and pages.number(1421.37) == "1421"
    assert pages.number(3.2e-7) == "3.20e-07" and pages.number(8.0) == "8" and pages.number(3) == "3"
    assert pages.number(True) == "yes" and pages.number("a<b") == "a&lt;b"
    # a mean to the precision of its spread: two significant digits of the std
    assert pages.mean_std(51.19157, 3.4972) == "51.2 ± 3.5"
    assert pages.mean_std(0.913812, 0.0015321) == "0.9138 ± 0.0015"
    assert pages.mean_std(1772.4, 1130.2) == "1772 ± 1130"
    assert pages.mean_std(8.0, 0.0) == "8"


def test_catalogue_labels_and_directions():
    fd = describe("sample_quality.N.frechet_distance")
    assert fd.label == "Fréchet distance, N" and fd.arrow == "↓"
    assert describe("sample_quality.*.prd.recall").arrow == "↑"
    assert describe("latent_quality.entropy.reference").arrow == ""  # a reference, neither way better
    assert describe("sample_quality.N.prd.params.beta") is None
    assert LOWER_IS_BETTER >= {"fd_N", "gaussian_kl", "collapsed_axes", "mse_per_pixel", "epoch_s"}
    assert not LOWER_IS_BETTER & {"prd_precision_N", "entropy", "entropy_reference", "mig"}


def test_heat_table_names_rows_and_columns():
    html = pages.heat_table([[0.0, 1.0], [-2.0, 0.5]], ["z0", "z1"], ["shape", "scale"], "mutual information")
    assert "<th>z0</th>" in html and "<th></th><th>shape</th><th>scale</th>" in html
    assert "rgba(214,96,77,1.00)" in html  # the largest |value| is the darkest; negative values in red
    assert "rgba(49,130,189,0.50)" in html and ">0.50<" in html


def close(a, b):
    """Equal trees of JSON values, numbers to float rounding (a summary's tuples are lists in JSON)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        return isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def recorded_settings(settings) -> dict:
    """A record's settings as the mapping a Job holds (records written before suites passed settings as
    values hold them as `--set` strings, section.key=YAML value)."""
    if isinstance(settings, dict):
        return settings
    return {key: config.load_yaml(value) for key, _, value in (item.partition("=") for item in settings)}


def planned_by(command: str) -> tuple[dict, list[str]]:
    """The suite (or part of it) that a results file's `avae benchmark` command plans today, and its samplers."""
    argv = shlex.split(command)
    flags = dict(zip(argv[4::2], argv[5::2]))
    assert argv[:3] == ["avae", "benchmark", "--suite"] and len(argv) % 2 == 0
    assert set(flags) <= {"--datasets", "--seeds", "--samplers"}
    suite = benchmark.load_suite(argv[3])
    if "--datasets" in flags:
        suite = benchmark.only_datasets(suite, flags["--datasets"].split(","))
    if "--seeds" in flags:
        suite = benchmark.only_seeds(suite, [int(s) for s in flags["--seeds"].split(",")])
    return suite, flags.get("--samplers", "prior").split(",")


@pytest.mark.parametrize("results", [RESULTS, RESULTS.with_name("paper-cpu-fashion_mnist-s0-1.json")], ids=lambda p: p.stem)
def test_committed_results_agree_with_their_records_and_the_command_they_name(results):
    """The committed JSON is consistent in itself, whatever values a re-run gives: the command it
    records still plans each of its runs with the same settings, and every number it reports
    follows from its records."""
    payload = json.loads(results.read_text())
    suite, records = payload["suite"], payload["records"]
    assert {"suite", "records", "summary", "performance", "machine", "compute_hours", "written", "command"} <= set(payload)
    current, samplers = planned_by(payload["command"])
    assert current["name"] == suite["name"] and results.name == f"{benchmark.results_stem(suite)}.json"
    # a suite may gain runs after a results file was written (paper-cpu's Fashion-MNIST part gained vamp after
    # the full run): every recorded run is still planned, with the settings it ran with, in the same order
    planned = [(j.dataset, j.model, j.seed, list(j.settings.items())) for j in benchmark.plan(current)]
    recorded = [(r["dataset"], r["model"], r["seed"], list(recorded_settings(r["settings"]).items())) for r in records]
    assert [run for run in planned if run in recorded] == recorded
    assert [(j.dataset, j.model, j.seed) for j in benchmark.plan(suite)] == [
        (r["dataset"], r["model"], r["seed"]) for r in records]
    if samplers != ["prior"]:  # each record scored with every sampler the command names, summarised over seeds
        assert all(list(r["samplers"]) == samplers for r in records)
        assert close(benchmark.summarise_samplers(records), payload["sampler_summary"])
    for r in records:  # each record is its own run's: config, evaluation and training agree
        cfg, t = r["config"], r["training"]
        assert (cfg["data"]["name"], cfg["model"]["name"], cfg["train"]["seed"]) == (r["dataset"], r["model"], r["seed"])
        assert (r["evaluation"]["dataset"], r["evaluation"]["model"], r["evaluation"]["run"]) == (
            r["dataset"], r["model"], r["run_dir"])
        assert len(t["epoch_times_s"]) == len(t["steps"]) == cfg["train"]["epochs"] == t["final"]["epoch"]
        assert t["epoch_s"] == pytest.approx(sum(t["epoch_times_s"]) / len(t["epoch_times_s"]))
        assert close(headlines(r["evaluation"], t), r["headline"]), r["run_dir"]
    # the summary is the records' mean, population std and count over the suite's seeds
    assert close(benchmark.summarise(records), payload["summary"])
    assert list(payload["summary"]) == [exp["dataset"] for exp in suite["experiments"]]
    for exp in suite["experiments"]:
        summary = payload["summary"][exp["dataset"]]
        assert set(summary["fd_N"]) == set(exp["models"])  # a metric every model has (the NLL: the VAE family)
        for by_model in summary.values():
            assert set(by_model) <= set(exp["models"]) and {n for _, _, n in by_model.values()} == {len(suite["seeds"])}
    hours = {"train": sum(sum(r["training"]["epoch_times_s"]) for r in records) / 3600,
             "evaluate": sum(sum(r["evaluation"]["timings_s"].values()) for r in records) / 3600}
    assert close(hours, payload["compute_hours"])
    # the performance section: every dataset and model, speeds that are the records' means
    perf = payload["performance"]
    assert set(perf["datasets"]) == set(payload["summary"])
    for dataset, ds in perf["datasets"].items():
        for model, entry in ds["models"].items():
            runs = [r for r in records if (r["dataset"], r["model"]) == (dataset, model)]
            assert runs and entry["epoch_s"] == pytest.approx(sum(r["training"]["epoch_s"] for r in runs) / len(runs))
            assert entry["percent_of_float32_peak"] == pytest.approx(
                100 * entry["gflops_per_s"] / perf["gemm_peak_gflops"]["float32"])
        if "avae_epoch_over_vae" in ds:
            assert ds["avae_epoch_over_vae"] == pytest.approx(ds["models"]["avae"]["epoch_s"] / ds["models"]["vae"]["epoch_s"])
    # the committed page beside it was written from it, by that command
    md = results.with_suffix(".md").read_text()
    assert md.startswith(f"# Benchmark suite `{suite['name']}`") and f"Command: `{payload['command']}`." in md
    assert f"{len(records)} runs on {payload['machine']['cpus']} CPU cores" in md


def test_committed_results_page_renders_from_its_json_with_its_runs_pictures(tmp_path):
    """Every dataset and model of the committed suite gets its table, claims, headings and first-seed
    pictures, from the JSON and the pictures beside it alone: the very files its records hash."""
    payload = json.loads(RESULTS.read_text())
    (tmp_path / "paper-cpu.json").write_text(RESULTS.read_text())
    shutil.copytree(RESULTS.parent / "paper-cpu-pictures", tmp_path / "paper-cpu-pictures")
    # the pages are rewritten by the command the results record
    argv = shlex.split(payload["command"])[1:]
    assert main([*argv, "--results", str(tmp_path), "--pages-only"]) == 0
    page = check_page(tmp_path / "paper-cpu.html")  # every <img> opens
    datasets = list(payload["summary"])
    assert datasets == [exp["dataset"] for exp in payload["suite"]["experiments"]] and len(datasets) >= 2
    assert [h for h in page.headings if h in datasets][:len(datasets)] == datasets  # then again under Performance
    models = {r["model"] for r in payload["records"]}
    assert len(models) >= 2 and models <= set(page.header_cells)
    assert page.tags["table"] == 3 * len(datasets)  # results, claims and performance per dataset
    assert sum(h.startswith("The paper's claims") for h in page.headings) == len(datasets)
    assert len(page.images) == 3 * len(datasets) * len(models)  # samples, reconstructions, latents
    for r in payload["records"]:
        for entry in r.get("pictures", {}).values():
            assert pages.picture_intact(entry, tmp_path) and entry["file"] in page.images
    text = (tmp_path / "paper-cpu.html").read_text()
    assert text.count('class="num best"') >= 10 * len(datasets) and "Paper: its MNIST values" in text
    # each table shows the summary's numbers, the paper's beside them where it has one
    md = (tmp_path / "paper-cpu.md").read_text()
    with_paper = 0
    for dataset in datasets:
        by_model = payload["summary"][dataset]["fd_N"]
        paper = pages.paper_reference(dataset)["values"].get("fd_N", {})
        with_paper += bool(paper)
        cells = [pages.mean_std(*by_model[m][:2]) + (f" [{paper[m]}]" if m in paper else "") for m in sorted(by_model)]
        assert f"| fd_N ↓ | {' | '.join(cells)} |" in md, dataset
    assert with_paper  # Fashion-MNIST's row carries the paper's MNIST values


def test_rewriting_pages_needs_results(tmp_path, capsys):
    assert main(["benchmark", "--suite", "smoke", "--results", str(tmp_path), "--pages-only"]) == 2
    assert "no results" in capsys.readouterr().err


def test_changed_picture_is_detected(tmp_path):
    (tmp_path / "evaluation").mkdir()
    path = tmp_path / "evaluation" / "samples.png"
    path.write_bytes(b"one")
    entry = pages.picture(path, tmp_path)
    assert entry["file"] == "evaluation/samples.png" and pages.picture_intact(entry, tmp_path)
    path.write_bytes(b"two")
    assert not pages.picture_intact(entry, tmp_path)
