"""The HTML pages: numbers rounded to what they mean, labels from the catalogue, the committed results page."""
import json
import shutil
from pathlib import Path

from avae import benchmark, pages
from avae.cli import main
from avae.metrics.catalogue import describe
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
    assert benchmark.LOWER_IS_BETTER >= {"fd_N", "gaussian_kl", "collapsed_axes", "mse_per_pixel", "epoch_s"}
    assert not benchmark.LOWER_IS_BETTER & {"prd_precision_N", "entropy", "entropy_reference", "mig"}


def test_heat_table_names_rows_and_columns():
    html = pages.heat_table([[0.0, 1.0], [-2.0, 0.5]], ["z0", "z1"], ["shape", "scale"], "mutual information")
    assert "<th>z0</th>" in html and "<th></th><th>shape</th><th>scale</th>" in html
    assert "rgba(214,96,77,1.00)" in html  # the largest |value| is the darkest; negative values in red
    assert "rgba(49,130,189,0.50)" in html and ">0.50<" in html


def test_committed_results_page_renders_from_its_json_with_its_runs_pictures(tmp_path):
    """Every dataset and model of the committed suite gets its table, claims, headings and first-seed
    pictures, from the JSON and the pictures beside it alone: the very files its records hash."""
    payload = json.loads(RESULTS.read_text())
    (tmp_path / "paper-cpu.json").write_text(RESULTS.read_text())
    shutil.copytree(RESULTS.parent / "paper-cpu-pictures", tmp_path / "paper-cpu-pictures")
    assert main(["benchmark", "--suite", "paper-cpu", "--results", str(tmp_path), "--pages-only"]) == 0
    page = check_page(tmp_path / "paper-cpu.html")  # every <img> opens
    datasets = list(payload["summary"])
    assert datasets == ["fashion_mnist", "dsprites", "shapes3d"]
    assert [h for h in page.headings if h in datasets][:3] == datasets  # then again under Performance
    models = {r["model"] for r in payload["records"]}
    assert len(models) == 6 and models <= set(page.header_cells)
    assert page.tags["table"] == 3 * 3  # results, claims and performance per dataset
    assert sum(h.startswith("The paper's claims") for h in page.headings) == 3
    assert len(page.images) == 3 * len(datasets) * len(models)  # samples, reconstructions, latents
    for r in payload["records"]:
        for entry in r.get("pictures", {}).values():
            assert pages.picture_intact(entry, tmp_path) and entry["file"] in page.images
    text = (tmp_path / "paper-cpu.html").read_text()
    assert text.count('class="num best"') >= 3 * 10 and "Paper: its MNIST values" in text
    md = (tmp_path / "paper-cpu.md").read_text()
    assert "| fd_N ↓ | 72.5 ± 4.5 [19.51] | 40.4 ± 5.6 [13.27] |" in md


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
