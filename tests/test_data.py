"""Datasets: IDX parsing and splits, procedural dSprites geometry and factor arithmetic."""
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from avae.data import load_dataset, to_float
from avae.data.dsprites import RADIUS, SHAPE_TESTS, centre_of, DSpritesFile, ProceduralDSprites
from avae.errors import AvaeError
import fixtures
from fixtures import idx_bytes

N_TRAIN, N_TEST = 120, 20
FASHION = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------- IDX fixtures


def write_mnist(folder: Path, gz: bool = True) -> dict:
    return fixtures.write_mnist(folder, N_TRAIN, N_TEST, gz=gz)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_idx_pads_and_splits(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    data = load_dataset("mnist", root=str(tmp_path))
    train_digits = arrays["train-images-idx3-ubyte"]
    assert (len(data.train), len(data.val), len(data.test)) == (100, 20, 20)
    assert data.shape == (1, 32, 32) and data.likelihood == "gaussian" and data.value_range == (0.0, 1.0)

    all_train = torch.cat([data.train.images(np.arange(100)), data.val.images(np.arange(20))])
    assert all_train.dtype == torch.uint8 and all_train.shape == (120, 1, 32, 32)
    # train then val are the training file in order: consecutive, disjoint ranges.
    assert np.array_equal(all_train[:, 0, 2:30, 2:30].numpy(), train_digits)
    border = all_train.clone()
    border[:, :, 2:30, 2:30] = 0
    assert border.sum() == 0
    test = data.test.images(np.arange(N_TEST))
    assert np.array_equal(test[:, 0, 2:30, 2:30].numpy(), arrays["t10k-images-idx3-ubyte"])
    assert np.array_equal(data.val.labels, arrays["train-labels-idx1-ubyte"][100:])
    assert "last 20" in data.info["split"] and data.info["files"]["train_images"].startswith(str(tmp_path))
    assert to_float(test).max() <= 1.0


def test_mnist_accepts_dotted_names_and_dataset_subfolder(tmp_path, monkeypatch):
    arrays = write_mnist(tmp_path / "mnist", gz=False)
    for path in (tmp_path / "mnist").iterdir():
        path.rename(path.with_name(path.name.replace("-idx", ".idx")))
    monkeypatch.setenv("AVAE_DATA_ROOT", str(tmp_path))
    data = load_dataset("mnist")
    assert np.array_equal(data.test.labels, arrays["t10k-labels-idx1-ubyte"])


def corrupt_and_load(tmp_path, name, data: bytes):
    write_mnist(tmp_path)
    (tmp_path / name).write_bytes(data)
    with pytest.raises(AvaeError) as err:
        load_dataset("mnist", root=str(tmp_path))
    message = str(err.value)
    assert name in message and "\n" not in message
    return message


def test_mnist_rejects_bad_magic(tmp_path):
    images = idx_bytes(np.zeros((N_TRAIN, 28, 28), np.uint8))
    bad = (0x0801).to_bytes(4, "big") + images[4:]
    assert "magic" in corrupt_and_load(tmp_path, "train-images-idx3-ubyte.gz", gzip.compress(bad))


def test_mnist_rejects_truncated_file(tmp_path):
    images = idx_bytes(np.zeros((N_TEST, 28, 28), np.uint8))[:-10]
    message = corrupt_and_load(tmp_path, "t10k-images-idx3-ubyte.gz", gzip.compress(images))
    assert "truncated" in message and str(N_TEST * 28 * 28) in message


def test_mnist_rejects_corrupt_gzip(tmp_path):
    packed = gzip.compress(idx_bytes(np.zeros(N_TRAIN, np.uint8)))
    message = corrupt_and_load(tmp_path, "train-labels-idx1-ubyte.gz", packed[: len(packed) // 2])
    assert "gzip" in message


def test_mnist_missing_file_names_file_and_folders(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(AvaeError, match="t10k-labels-idx1-ubyte") as err:
        load_dataset("mnist", root=str(tmp_path))
    assert str(tmp_path) in str(err.value) and "download" in str(err.value)


def test_mnist_rejects_unknown_option(tmp_path):
    write_mnist(tmp_path)
    with pytest.raises(AvaeError, match="colour"):
        load_dataset("mnist", root=str(tmp_path), colour=True)


@pytest.mark.skipif(not FASHION.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_has_the_paper_splits(monkeypatch):
    monkeypatch.delenv("AVAE_DATA_ROOT", raising=False)
    data = load_dataset("fashion_mnist")
    assert (len(data.train), len(data.val), len(data.test)) == (50_000, 10_000, 10_000)
    batch = data.val.images(np.arange(0, 10_000, 997))
    assert batch.shape == (11, 1, 32, 32) and batch[:, :, :2].sum() == 0 and batch.max() > 0
    assert set(np.unique(data.test.labels)) == set(range(10))


# ---------------------------------------------------------------- dSprites

SPRITES = ProceduralDSprites()


def image_of(shape=0, scale=5, orientation=0, pos_x=16, pos_y=16) -> np.ndarray:
    return SPRITES.images_for_factors([[shape, scale, orientation, pos_x, pos_y]])[0, 0].numpy()


def test_dsprites_grid_and_index_arithmetic():
    assert len(SPRITES) == 737_280 and SPRITES.shape == (1, 64, 64)
    assert SPRITES.factor_names == ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert SPRITES.factor_sizes == (3, 6, 40, 32, 32)
    assert SPRITES.factors(0).tolist() == [[0, 0, 0, 0, 0]]
    assert SPRITES.factors(737_279).tolist() == [[2, 5, 39, 31, 31]]
    assert SPRITES.factors(330_885).tolist() == [[1, 2, 3, 4, 5]]  # ((((1·6+2)·40+3)·32+4)·32+5
    idx = np.random.default_rng(1).integers(0, len(SPRITES), 1000)
    assert np.array_equal(SPRITES.index_of(SPRITES.factors(idx)), idx)
    values = SPRITES.factor_values([737_279])[0]
    assert np.allclose(values, [3.0, 1.0, 2 * np.pi, 1.0, 1.0])
    sampled = SPRITES.sample_factors(500, np.random.default_rng(0))
    assert sampled.shape == (500, 5) and (sampled.max(0) < SPRITES.factor_sizes).all()


def test_dsprites_is_deterministic_and_binary():
    idx = np.array([5, 400_000, 737_279, 123_456])
    first, again = SPRITES.images(idx), SPRITES.images(idx[::-1].copy())
    assert first.dtype == torch.uint8 and first.shape == (4, 1, 64, 64)
    assert torch.equal(first, again.flip(0))
    assert set(torch.unique(first).tolist()) == {0, 255}
    assert torch.equal(SPRITES.images_for_factors(SPRITES.factors(idx)), first)


def test_dsprites_position_moves_the_centre_of_mass_right():
    columns = np.arange(64)
    centres = [(image_of(shape=2, orientation=7, pos_x=x).sum(0) * columns).sum() / image_of(
        shape=2, orientation=7, pos_x=x).sum() for x in range(32)]
    assert np.all(np.diff(centres) > 0)


def test_dsprites_scale_grows_pixel_count():
    for shape in range(3):
        counts = [(image_of(shape=shape, scale=s, orientation=11) > 0).sum() for s in range(6)]
        assert np.all(np.diff(counts) > 0), (shape, counts)


def test_dsprites_orientation_shapes_and_frame():
    assert not np.array_equal(image_of(orientation=0), image_of(orientation=5))  # 46°
    square, ellipse, heart = (image_of(shape=s) for s in range(3))
    assert not np.array_equal(square, ellipse) and not np.array_equal(ellipse, heart)
    assert not np.array_equal(square, heart)
    # The heart points down at orientation 0: its bottom row is a narrow tip, its top row is wide.
    widths = (heart > 0).sum(1)
    widths = widths[widths > 0]
    assert widths[-1] < widths[0] / 2 and np.argmax(widths) < len(widths) / 2


def test_dsprites_sprites_are_never_cut_by_the_frame():
    # Every shape lies in the unit disc (RADIUS·scale pixels), whatever its orientation ...
    grid = torch.linspace(-1.5, 1.5, 601)
    u, w = torch.meshgrid(grid, grid, indexing="xy")
    outside_disc = u * u + w * w > 1.0
    for inside in SHAPE_TESTS:
        assert inside(u, w).any() and not (inside(u, w) & outside_disc).any()
    # ... and the disc of the largest sprite stays in the 64-pixel frame at the extreme positions.
    assert centre_of(0.0) - RADIUS >= 0 and centre_of(1.0) + RADIUS <= 64


def test_dsprites_dataset_split(monkeypatch):
    monkeypatch.delenv("AVAE_DATA_ROOT", raising=False)
    data = load_dataset("dsprites", seed=3)
    train, val = data.train.indices, data.val.indices
    assert len(val) == len(np.unique(val)) == 20_000 and len(train) == 717_280
    assert np.all(np.diff(train) > 0)
    assert np.array_equal(np.union1d(train, val), np.arange(737_280))
    assert np.array_equal(val, load_dataset("dsprites", seed=3).val.indices)
    assert not np.array_equal(val, load_dataset("dsprites", seed=4).val.indices)
    assert data.likelihood == "bernoulli" and data.test is None and data.info["source"] == "procedural"
    assert data.val.images(np.arange(3)).shape == (3, 1, 64, 64)
    with pytest.raises(AvaeError, match="train_size"):
        load_dataset("dsprites", train_size=100)


NPZ = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"


def test_dsprites_file_is_read_in_official_layout(tmp_path, monkeypatch):
    # A miniature grid keeps the fixture small; the layout and arithmetic are the official ones.
    monkeypatch.setattr(DSpritesFile, "factor_sizes", (3, 1, 1, 2, 2))
    n = 12
    classes = np.stack(np.unravel_index(np.arange(n), (1, 3, 1, 1, 2, 2)), axis=1)  # colour first
    imgs = np.random.default_rng(0).integers(0, 2, (n, 64, 64), dtype=np.uint8)
    np.savez(tmp_path / NPZ, imgs=imgs, latents_classes=classes, latents_values=classes.astype(float))
    sprites = DSpritesFile(tmp_path / NPZ)
    assert torch.equal(sprites.images([4, 7]), torch.from_numpy(imgs[[4, 7], None] * 255))
    np.savez(tmp_path / NPZ, imgs=imgs, latents_classes=classes[::-1], latents_values=classes.astype(float))
    with pytest.raises(AvaeError, match="order"):
        DSpritesFile(tmp_path / NPZ)


def test_dsprites_file_errors(tmp_path):
    np.savez(tmp_path / NPZ, imgs=np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(AvaeError, match=f"{NPZ}.*latents_classes"):
        load_dataset("dsprites", root=str(tmp_path))
    np.savez(tmp_path / NPZ, imgs=np.zeros((2, 64, 64), np.uint8), latents_classes=np.zeros((2, 6)),
             latents_values=np.zeros((2, 6)))
    with pytest.raises(AvaeError, match=f"{NPZ}.*shape"):
        load_dataset("dsprites", root=str(tmp_path))
    with pytest.raises(AvaeError, match=NPZ):
        load_dataset("dsprites", root=str(tmp_path / "empty"), source="file")


def test_dsprites_file_that_is_not_a_zip(tmp_path):
    (tmp_path / NPZ).write_bytes(b"not a zip archive")
    with pytest.raises(AvaeError, match="not a readable .npz"):
        load_dataset("dsprites", root=str(tmp_path))
