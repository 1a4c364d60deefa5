"""benchmarks/studies.py: the planned runs, the budgets they span, and the page written from records."""
import importlib.util
import json
from pathlib import Path

import pytest

from avae import config
from avae.benchmark import load_suite, plan

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "studies.py"


@pytest.fixture(scope="module")
def studies():
    spec = importlib.util.spec_from_file_location("studies", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resolved(overrides: list[str] = (), settings: dict | None = None) -> dict:
    """A run's resolved config as its config.yaml holds it."""
    return config.load_yaml(config.dump(config.resolve(None, overrides, settings)))


def setting(settings: list[str], key: str) -> str:
    values = [s.split("=", 1)[1] for s in settings if s.startswith(key + "=")]
    assert len(values) == 1, (key, settings)
    return values[0]


def test_budget_runs_carry_their_budget_and_span_ten_times_with_paper_cpu(studies):
    planned = studies.runs("budget", [0, 1])
    assert len({name for name, _, _ in planned}) == len(planned)
    per_seed = sum(len(models) for models in studies.BUDGET_MODELS.values()) * len(studies.BUDGETS)
    assert len(planned) == 2 * per_seed
    assert {labels["seed"] for _, _, labels in planned[:per_seed]} == {0}  # whole seeds first
    units = set()
    for name, settings, labels in planned:
        epochs, images, width = studies.BUDGETS[labels["budget"]]
        assert (int(setting(settings, "train.epochs")), int(setting(settings, "data.train_size")),
                float(setting(settings, "model.width"))) == (epochs, images, width)
        assert setting(settings, "model.name") == labels["model"] and setting(settings, "data.name") == labels["dataset"]
        assert labels["budget_units"] == epochs * images * width
        assert resolved(settings)["train"]["seed"] == labels["seed"]
        units.add(labels["budget_units"])
    for job in plan(load_suite("paper-cpu")):  # the largest budget: paper-cpu's runs
        if job.dataset in studies.BUDGET_MODELS:
            units.add(studies.budget_units(resolved(settings=job.settings)))
    assert len(units) >= 3 and max(units) / min(units) >= 10


def test_fashion_studies_cover_their_axes(studies):
    latent = studies.runs("latent_size", [0])
    assert [int(setting(s, "model.latent_dim")) for _, s, _ in latent] == studies.LATENT_SIZES
    kde = studies.runs("kde_size", [0])
    assert {(int(setting(s, "model.latent_dim")), int(setting(s, "model.kde_size"))) for _, s, _ in kde} == {
        (l, m) for l in (16, 64) for m in studies.KDE_SIZES}
    for _, settings, _ in latent + kde:
        config.resolve(None, settings)
    assert max(studies.KDE_SIZES) < int(setting(studies.FASHION_BASE, "data.train_size"))  # the AVAE needs m < n
    with pytest.raises(SystemExit):
        studies.runs("width", [0])


def test_long_kde_size_runs_are_paper_cpus_fashion_avae_but_for_m(studies):
    paper = next(j for j in plan(load_suite("paper-cpu")) if (j.dataset, j.model, j.seed) == ("fashion_mnist", "avae", 0))
    reference = resolved(settings=paper.settings)
    long = studies.runs("kde_size_long", [0])
    assert [labels["m"] for _, _, labels in long] == studies.LONG_KDE_SIZES
    for _, settings, labels in long:
        cfg = resolved(settings)
        assert cfg["model"]["kde_size"] == labels["m"]
        cfg["model"]["kde_size"] = reference["model"]["kde_size"]
        assert cfg == reference


def test_paper_cpu_records_become_the_largest_budget(studies, tmp_path):
    def cfg(epochs):
        return {"train": {"epochs": epochs}, "data": {"train_size": 40000}, "model": {"width": 0.5}}

    records = [{"dataset": d, "model": m, "seed": 0, "headline": {"pca_mig": 0.1}, "config": cfg(e)}
               for d, m, e in [("dsprites", "vae", 6), ("dsprites", "aae", 6), ("fashion_mnist", "avae", 10),
                               ("shapes3d", "aae", 3)]]
    (tmp_path / "paper-cpu.json").write_text(json.dumps({"records": records}))
    kept = studies.paper_cpu_records(tmp_path)
    assert [(r["dataset"], r["model"]) for r in kept] == [("dsprites", "vae"), ("shapes3d", "aae")]
    assert [r["budget_units"] for r in kept] == [6 * 40000 * 0.5, 3 * 40000 * 0.5]
    # a re-run part written later replaces the whole suite's record of the same run
    part = [{**records[0], "headline": {"pca_mig": 0.2}}]
    (tmp_path / "paper-cpu-dsprites.json").write_text(json.dumps({"records": part, "written": "2026-11-25 10:00:00"}))
    (tmp_path / "paper-cpu.json").write_text(json.dumps({"records": records, "written": "2026-11-24 16:00:00"}))
    kept = studies.paper_cpu_records(tmp_path)
    assert [(r["model"], r["headline"]["pca_mig"]) for r in kept] == [("vae", 0.2), ("aae", 0.1)]
    assert studies.paper_cpu_records(tmp_path / "missing") == []


def test_page_reports_mean_and_population_std_per_point(studies, tmp_path):
    records = [{"dataset": "dsprites", "model": "avae", "budget_units": 5000.0, "headline": {"pca_mig": v}}
               for v in (0.1, 0.3)]
    records.append({"dataset": "dsprites", "model": "avae", "budget_units": 60000.0, "headline": {"pca_mig": 0.5}})
    records += [{"dataset": "dsprites", "model": "vae", "budget_units": x, "headline": {"pca_mig": 0.4}}
                for x in (5000.0, 60000.0)]
    page = studies.page("budget", records, tmp_path, "CMD").read_text()
    assert "| dsprites avae | 5000 | 0.2 ± 0.1 | 2 |" in page and "| dsprites avae | 60000 | 0.5 ± 0 | 1 |" in page
    assert "| dsprites | pca_mig | 2 of 2 | 1 of 2 |" in page  # behind the VAE at 5000, ahead at 60000
    assert "| dsprites | mig | – | – |" in page
    assert (tmp_path / "budget-pca_mig.png").stat().st_size > 0


def test_record_adds_the_avaes_own_figures_to_fashion_studies(studies, tmp_path):
    evaluation = {"latent_quality": {"entropy": {"entropy": 4.0, "gaussian_reference": 8.0},
                                     "collapsed_axes": {"count": 0, "variances": [0.5, 0.25]}},
                  "timings_s": {"entropy": 1.5, "fd_N": 0.5}}
    (tmp_path / "evaluate.json").write_text(json.dumps(evaluation))
    epochs = [{"epoch": i, "epoch_s": s, "images_per_s": 100.0, "val_kl": kl, "h": 0.7}
              for i, (s, kl) in enumerate([(2.0, 3.0), (4.0, 1.0)], 1)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    r = studies.record(tmp_path, {"l": 2}, "latent_size")
    assert r["headline"]["entropy_over_gaussian"] == 0.5 and r["headline"]["kde_kl"] == 1.0
    assert r["headline"]["min_axis_variance"] == 0.25 and r["evaluate_s"] == 2.0 and r["training"]["train_s"] == 6.0
