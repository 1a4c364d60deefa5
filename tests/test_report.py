"""Figures: pictures of images keep their pixel grid; latent plots choose their limits from the data."""
import numpy as np
import pytest
from PIL import Image

from avae import report


def _find(picture: np.ndarray, block: np.ndarray) -> list[tuple[int, int]]:
    """Where `block` sits, pixel for pixel, inside `picture`."""
    h, w = block.shape[:2]
    return [(y, x) for y in range(picture.shape[0] - h + 1) for x in range(picture.shape[1] - w + 1)
            if (picture[y, x] == block[0, 0]).all() and (picture[y : y + h, x : x + w] == block).all()]


@pytest.mark.parametrize("side, ncol, label", [(48, 4, "ae"), (32, 8, "ae"), (64, 2, "avae"), (28, 8, "vae")])
def test_no_title_or_label_is_cut_off(tmp_path, side, ncol, label):
    from avae.models import MODELS

    images = np.zeros((2 * ncol, 3, side, side), np.uint8)
    report.save_samples(tmp_path / "samples.png", images, MODELS[label].sampler, ncol)
    report.save_reconstructions(tmp_path / "recon.png", images, images, "validation", ncol)
    for name in ("samples.png", "recon.png"):
        picture = np.asarray(Image.open(tmp_path / name).convert("L"))
        text = picture[:, :] < 128  # the images are black too: only their margins must stay white
        assert not text[:, :4].any() and not text[:, -4:].any() and not text[:4].any(), name


@pytest.mark.parametrize("channels", [1, 3])
def test_labelled_grid_keeps_every_pixel(tmp_path, channels):
    images = np.random.default_rng(channels).integers(0, 256, (6, channels, 20, 20), dtype=np.uint8)
    report.save_labelled_grid(tmp_path / "grid.png", images, 3, "title", row_labels=["first row", "second"],
                              col_labels=["a", "b", "c"], col_title="columns")
    picture = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB"))
    mosaic = report.grid(images, 3).repeat(3, 0).repeat(3, 1)  # 20-pixel images are scaled by 3, nearest
    if channels == 1:
        mosaic = np.repeat(mosaic[..., None], 3, axis=2)
    assert len(_find(picture, mosaic)) == 1
    assert picture.shape[1] > mosaic.shape[1] + 7 * len("first row")  # room for the row labels


def test_latent_limits_follow_the_data_not_its_outliers():
    values = np.linspace(-1, 1, 2001)
    assert report._limit(values) == pytest.approx(1.0)
    assert report._limit(3 * values) == pytest.approx(3.0)
    with_outliers = np.concatenate([values, np.full(4, 1000.0)])  # 0.2 % of the points
    assert report._limit(with_outliers) == pytest.approx(1.0)
    assert report._limit(0.037 * values) == pytest.approx(0.04)  # rounded up to a half step of its decade


@pytest.mark.parametrize("n, shown", [(32, 30), (4, 4), (12, 12)])
def test_reconstruction_rows_hold_one_kind_of_image_each(monkeypatch, tmp_path, n, shown):
    drawn = {}
    monkeypatch.setattr(report, "save_labelled_grid", lambda path, images, ncol, title, row_labels=(), **kw:
                        drawn.update(images=images, ncol=ncol, title=title, labels=row_labels))
    originals = np.zeros((n, 1, 8, 8), np.uint8)
    report.save_reconstructions(tmp_path / "r.png", originals, originals + 255, "validation")
    rows = [drawn["images"][i : i + drawn["ncol"]] for i in range(0, len(drawn["images"]), drawn["ncol"])]
    assert len(rows) == len(drawn["labels"]) and all(len(r) == drawn["ncol"] for r in rows)
    for row, label in zip(rows, drawn["labels"]):  # originals are black, reconstructions white here
        assert (row == 0).all() if label == "validation image" else (row == 255).all()
    assert drawn["title"] == f"Reconstructions of {shown} validation images"
