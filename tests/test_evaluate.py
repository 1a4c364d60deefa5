"""`avae evaluate` end to end on a tiny run, and the interpolation helper."""
import json
import math

import numpy as np
import pytest

from avae import config, pages, run, trainer
from avae.cli import main
from avae.evaluation import slerp
from avae.metrics import disentangle
from avae.metrics.features import classifier_path
from avae.data import load_data
from fixtures import write_mnist
from pagecheck import check_page


def test_slerp_stays_on_the_sphere_between_its_endpoints():
    a, b = np.array([[2.0, 0.0]]), np.array([[0.0, 2.0]])
    np.testing.assert_allclose(slerp(a, b, 0.0), a)
    np.testing.assert_allclose(slerp(a, b, 1.0), b, atol=1e-12)
    mid = slerp(a, b, 0.5)[0]
    assert math.atan2(mid[1], mid[0]) == pytest.approx(math.pi / 4)
    assert np.linalg.norm(mid) == pytest.approx(2.0)  # a linear midpoint would have norm √2
    np.testing.assert_allclose(slerp(a, a, 0.5), a)  # parallel codes fall back to linear


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_mnist(root, n_train=600, n_test=60)
    cfg = config.resolve(None, ["data.name=mnist", f"data.root={root}", "model.latent_dim=4", "model.width=0.125",
                                "model.kde_size=100", "train.batch_size=50", "train.epochs=1", "train.progress=false",
                                "train.figures_every=0"])
    return trainer.start(cfg, tmp_path_factory.mktemp("runs") / "r")


def test_evaluate_writes_json_figures_and_html(trained_run, capsys):
    assert main(["evaluate", str(trained_run), "-n", "60", "--seed", "1"]) == 0
    assert "FD" in capsys.readouterr().out
    result = json.loads((trained_run / "evaluate.json").read_text())
    assert result["split"] == "test" and result["n"] == 60 and result["seed"] == 1
    assert set(result["sample_quality"]) == {"REC", "INT", "N"}
    for q in result["sample_quality"].values():
        assert q["frechet_distance"] > 0
        assert 0 <= q["prd"]["precision"] <= 1 and q["prd"]["params"]["num_runs"] == 10
        assert set(q["density_coverage"]) >= {"density", "coverage"}
    fs = result["feature_space"]
    assert fs["name"] == "classifier" and 0 <= fs["test_accuracy"][0] <= 1
    data = load_data(run.read(trained_run)[0], cut=False)
    assert fs["weights"] == str(classifier_path(data, seed=0))  # seed 1's evaluation scores in seed 0's space
    lq = result["latent_quality"]
    assert lq["entropy"]["reference"] == 2.0
    assert lq["sampling_variance"] < 1  # the AVAE samples from N(0, (1−h²)I)
    assert lq["sampling_distribution"].startswith("N(0, (1−h²)I)")
    assert lq["norm_chi2_test"]["variance"] == pytest.approx(lq["sampling_variance"])
    assert lq["norm_chi2_test_prior"]["variance"] == 1.0
    assert lq["entropy"]["gaussian_reference"] > 0
    assert lq["reconstruction"]["sse_per_image"] == pytest.approx(lq["reconstruction"]["mse_per_pixel"] * 1024)
    assert "fd_N" in result["timings_s"]
    files = {"samples", "reconstructions", "latents", "norms", "interpolations", "traversal_axes"}
    assert {p.stem for p in (trained_run / "evaluation").iterdir()} == files
    assert set(result["figures"]) == files  # each with the hash of the file the page embeds
    assert all(pages.picture_intact(e, trained_run) for e in result["figures"].values())
    assert "test images" in result["figures"]["reconstructions"]["title"]  # the split actually plotted
    page = check_page(trained_run / "evaluate.html")
    assert len(page.images) == 6 and page.headings[:4] == ["avae on mnist", "Sample quality", "Latent quality",
                                                           "Pictures"]
    first = page.header_cells.index("metric")
    assert page.header_cells[first : first + 4] == ["metric", "RECreconstructions of held-out images",
                                     "INTdecoded spherical midpoints of pairs of held-out codes",
                                     "Nsamples from the model's sampler"]  # REC, INT, N side by side
    text = (trained_run / "evaluate.html").read_text()
    assert "Fréchet distance ↓" in text and "PRD precision (F₁/₈) ↑" in text
    params = text.index("<details><summary>Parameters of the sample-quality metrics")
    assert text.index("num_clusters") > params  # parameters sit in their collapsible block, after the results
    first = result["sample_quality"]

    assert main(["evaluate", str(trained_run), "-n", "60", "--seed", "1"]) == 0  # same seed, same numbers
    assert json.loads((trained_run / "evaluate.json").read_text())["sample_quality"] == first


def test_evaluate_bad_input(trained_run, tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert main(["evaluate", str(trained_run), "-n", "3"]) == 2
    assert main(["evaluate", str(trained_run), "--features", "inception", "--inception-weights",
                 str(tmp_path / "none.pth")]) == 2
    err = capsys.readouterr().err
    assert err.count("avae: error:") == 3 and "Traceback" not in err


def test_evaluation_page_names_matrix_rows_and_columns(trained_run, tmp_path):
    """Disentanglement matrices are tables with latent axes and factor names, even where l equals K."""
    assert main(["evaluate", str(trained_run), "-n", "60"]) == 0
    result = json.loads((trained_run / "evaluate.json").read_text())
    factors = disentangle.SyntheticFactors((3, 4, 5, 6), ("shape", "scale", "pos_x", "pos_y"))
    sizes = {"mig": {"num_train": 500}, "pca_factor_vae": {"images_per_vote": 32, "num_train": 40, "num_eval": 20}}
    result["factors"] = list(factors.factor_names)
    result["disentanglement"] = disentangle.scores(factors, lambda x: factors.read_factors(x) @ np.eye(4)[::-1],
                                                   0, ["mig", "pca_factor_vae"], **sizes)
    pages.write_evaluation_page(trained_run / "evaluate.html", result)
    page = check_page(trained_run / "evaluate.html")
    assert "Disentanglement" in page.headings
    text = (trained_run / "evaluate.html").read_text()
    mutual_info = text[text.index("MIG: mutual info") - 2000 : text.index("MIG: mutual info")]
    mutual_info = mutual_info[mutual_info.rindex("<table"):]
    # rows: latent axes z0–z3; columns: the factors, by name
    assert mutual_info.count("<th>z") == 4 and "<th>shape</th><th>scale</th><th>pos_x</th><th>pos_y</th>" in mutual_info
    angles = text[: text.index("angles deg")]
    assert "<th>pos_y</th>" in angles[angles.rindex("<table"):]  # factor × factor
