"""Datasets: IDX parsing and splits, procedural dSprites geometry and factor arithmetic."""
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from avae.data import load_dataset, to_float
from avae.data.dsprites import RADIUS, SHAPE_TESTS, SIDE, centre_of, draw_one_shape, DSpritesFile, ProceduralDSprites
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
    assert SPRITES.factor_classes(0).tolist() == [[0, 0, 0, 0, 0]]
    assert SPRITES.factor_classes(737_279).tolist() == [[2, 5, 39, 31, 31]]
    assert SPRITES.factor_classes(330_885).tolist() == [[1, 2, 3, 4, 5]]  # ((((1·6+2)·40+3)·32+4)·32+5
    idx = np.random.default_rng(1).integers(0, len(SPRITES), 1000)
    assert np.array_equal(SPRITES.index_of(SPRITES.factor_classes(idx)), idx)
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
    assert torch.equal(SPRITES.images_for_factors(SPRITES.factor_classes(idx)), first)


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
    grid = np.linspace(-1.5, 1.5, 601, dtype=np.float32)
    u, w = np.meshgrid(grid, grid, indexing="xy")
    outside_disc = u * u + w * w > 1.0
    for inside in SHAPE_TESTS:
        assert inside(u, w).any() and not (inside(u, w) & outside_disc).any()
    # ... and the disc of the largest sprite stays in the 64-pixel frame at the extreme positions.
    assert centre_of(0.0) - RADIUS >= 0 and centre_of(1.0) + RADIUS <= 64


def test_dsprites_window_rendering_equals_testing_every_pixel():
    data = ProceduralDSprites()
    random = data.sample_factors(3000, np.random.default_rng(11))
    # the largest sprites at the frame's corners and edges, in every orientation
    extremes = np.array([[s, 5, r, x, y] for s in range(3) for r in range(40) for x in (0, 1, 30, 31) for y in (0, 31)])
    classes = np.concatenate([random, extremes])
    values = np.stack([grid[classes[:, k]] for k, grid in enumerate(data.factor_grids)], axis=1)
    rendered = data.images_for_factors(classes)[:, 0].numpy()
    for shape_class in range(3):
        rows = np.flatnonzero(classes[:, 0] == shape_class)
        every_pixel = np.zeros((len(rows), SIDE, SIDE), np.uint8)
        draw_one_shape(shape_class, values[rows], every_pixel, np.arange(len(rows)), window=SIDE)
        assert every_pixel.any(axis=(1, 2)).all()
        assert np.array_equal(rendered[rows], every_pixel)


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


def test_dsprites_file_is_bit_packed_and_read_through_load_dataset(tmp_path, monkeypatch):
    monkeypatch.setattr(DSpritesFile, "factor_sizes", (3, 1, 1, 2, 2))
    imgs = fixtures.write_dsprites_npz(tmp_path / NPZ, (3, 1, 1, 2, 2))
    data = load_dataset("dsprites", root=str(tmp_path), source="file", seed=1)
    assert data.info["source"] == "file" and data.likelihood == "bernoulli"
    assert (len(data.train), len(data.val)) == (10, 2)  # val = min(20000, n // 5) on a reduced grid
    assert np.array_equal(np.union1d(data.train.indices, data.val.indices), np.arange(12))
    idx = np.array([11, 0, 5, 5])
    assert torch.equal(data.factor_grid.images(idx), torch.from_numpy(imgs[idx, None] * 255))
    assert data.factor_grid._packed.shape == (12, 64, 8)  # 8 pixels a byte: 512 bytes per image
    assert data.factor_grid.factor_classes(7).tolist() == [[1, 0, 0, 1, 1]]


def test_dsprites_file_with_non_binary_or_truncated_images(tmp_path, monkeypatch):
    monkeypatch.setattr(DSpritesFile, "factor_sizes", (3, 1, 1, 2, 2))
    classes = np.stack(np.unravel_index(np.arange(12), (1, 3, 1, 1, 2, 2)), axis=1)
    imgs = np.full((12, 64, 64), 7, np.uint8)
    np.savez(tmp_path / NPZ, imgs=imgs, latents_classes=classes, latents_values=classes.astype(float))
    with pytest.raises(AvaeError, match=f"{NPZ}.*other than 0 and 1"):
        load_dataset("dsprites", root=str(tmp_path))
    fixtures.write_dsprites_npz(tmp_path / NPZ, (3, 1, 1, 2, 2))
    raw = (tmp_path / NPZ).read_bytes()
    (tmp_path / NPZ).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(AvaeError, match=NPZ):
        load_dataset("dsprites", root=str(tmp_path))
    # A well-formed archive whose imgs member holds fewer images than its header says.
    import zipfile

    with zipfile.ZipFile(tmp_path / NPZ, "w") as archive:
        with archive.open("imgs.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (12, 64, 64)})
            f.write(np.zeros((5, 64, 64), np.uint8).tobytes())
        for key, array in (("latents_classes", classes), ("latents_values", classes.astype(float))):
            with archive.open(f"{key}.npy", "w") as f:
                np.lib.format.write_array(f, array)
    with pytest.raises(AvaeError, match=f"{NPZ}: 'imgs' is truncated"):
        load_dataset("dsprites", root=str(tmp_path))


def test_dsprites_source_option(tmp_path, monkeypatch):
    monkeypatch.delenv("AVAE_DATA_ROOT", raising=False)
    with pytest.raises(AvaeError, match="data.options.source must be one of auto, file, procedural, got 'disk'"):
        load_dataset("dsprites", source="disk")
    with pytest.raises(AvaeError, match="procedural"):
        load_dataset("dsprites", source="procedural", download=True)
    with pytest.raises(AvaeError, match="data.options.download must be true or false"):
        load_dataset("dsprites", download="yes")
    # A file in a folder the user did not name is not picked up by 'auto'.
    monkeypatch.setattr("avae.data.files.USER_DATA", tmp_path)
    monkeypatch.setattr("avae.data.factors.USER_DATA", tmp_path)
    (tmp_path / NPZ).write_bytes(b"garbage")
    assert load_dataset("dsprites").info["source"] == "procedural"
    with pytest.raises(AvaeError, match="not a readable .npz"):
        load_dataset("dsprites", source="file")


# ---------------------------------------------------------------- downloads

from avae.data import files  # noqa: E402


def serve(monkeypatch, tmp_path, dataset, contents: dict, md5=None):
    """Point the download table of `dataset` at file:// URLs holding `contents` (name → bytes)."""
    import hashlib

    web = tmp_path / "web"
    web.mkdir(exist_ok=True)
    table = []
    for name, data in contents.items():
        (web / name).write_bytes(data)
        digest = md5 if md5 is not None else hashlib.md5(data).hexdigest()
        table.append(files.Remote(name, ((web / name).as_uri(),), digest))
    monkeypatch.setitem(files.DOWNLOADS, dataset, tuple(table))


def test_download_fetches_verifies_and_loads(tmp_path, monkeypatch):
    source = tmp_path / "official"
    write_mnist(source)
    serve(monkeypatch, tmp_path, "mnist", {p.name: p.read_bytes() for p in source.iterdir()})
    root = tmp_path / "root"
    with pytest.raises(AvaeError, match="--set data.options.download=true"):
        load_dataset("mnist", root=str(root))
    data = load_dataset("mnist", root=str(root), download=True)
    assert len(data.train) == 100 and (root / "train-images-idx3-ubyte.gz").is_file()
    assert sorted(p.name for p in root.iterdir()) == sorted(p.name for p in source.iterdir())  # no temp files


def test_download_with_a_wrong_checksum_keeps_nothing(tmp_path, monkeypatch):
    arrays = fixtures.write_cifar10(tmp_path / "official")
    archive = (tmp_path / "official" / "cifar-10-python.tar.gz").read_bytes()
    # the archive itself is sound: served with its own checksum it downloads and loads what was written
    serve(monkeypatch, tmp_path, "cifar10", {"cifar-10-python.tar.gz": archive})
    good = load_dataset("cifar10", root=str(tmp_path / "good"), download=True)
    assert (len(good.train), len(good.val), len(good.test)) == (80, 20, 20)
    assert np.array_equal(good.test.images(np.arange(20)).numpy().reshape(20, 3072), arrays["test_batch"][0])
    assert np.array_equal(good.test.labels, arrays["test_batch"][1])
    # the same archive under a checksum it does not match
    serve(monkeypatch, tmp_path, "cifar10", {"cifar-10-python.tar.gz": archive}, md5="0" * 32)
    root = tmp_path / "root"
    with pytest.raises(AvaeError, match="checksum mismatch.*no file was kept"):
        load_dataset("cifar10", root=str(root), download=True)
    assert list(root.iterdir()) == []


def test_download_failure_is_an_avae_error(tmp_path, monkeypatch):
    import urllib.error

    def offline(url, out, progress=""):
        out.write(b"partial")
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(files, "fetch", offline)
    with pytest.raises(AvaeError, match="dsprites_ndarray.*no network"):
        load_dataset("dsprites", root=str(tmp_path), download=True)
    assert list(tmp_path.iterdir()) == []


def test_checksum_table_is_complete():
    for dataset in ("mnist", "fashion_mnist", "cifar10", "dsprites", "shapes3d"):
        for remote in files.DOWNLOADS[dataset]:
            assert remote.md5 is None or len(remote.md5) == 32 and int(remote.md5, 16) >= 0
            assert remote.urls and all(url.startswith("http") for url in remote.urls)


# ---------------------------------------------------------------- CIFAR-10

from avae.data import cifar  # noqa: E402


@pytest.mark.parametrize("archive", [True, False])
def test_cifar10_reads_python_batches_and_splits(tmp_path, archive):
    arrays = fixtures.write_cifar10(tmp_path, n_per_batch=20, archive=archive)
    data = load_dataset("cifar10", root=str(tmp_path))
    assert (len(data.train), len(data.val), len(data.test)) == (80, 20, 20)
    assert data.shape == (3, 32, 32) and data.likelihood == "gaussian" and data.value_range == (0.0, 1.0)
    rows = np.concatenate([arrays[f"data_batch_{i}"][0] for i in range(1, 6)])
    train = data.train.images(np.arange(80))
    assert train.dtype == torch.uint8
    # Row r of a batch holds the red, green and blue 32×32 planes in turn, each row-major.
    assert np.array_equal(train.numpy().reshape(80, 3072), rows[:80])
    assert np.array_equal(data.val.images(np.arange(20)).numpy().reshape(20, 3072), rows[80:])
    assert np.array_equal(data.test.images(np.arange(20)).numpy().reshape(20, 3072), arrays["test_batch"][0])
    assert np.array_equal(data.val.labels, np.concatenate([arrays[f"data_batch_{i}"][1] for i in range(1, 6)])[80:])
    assert "last 20" in data.info["split"]
    assert cifar.split_sizes(50_000) == (40_000, 10_000)
    if not archive:  # the extracted folder itself may be the data root
        same = load_dataset("cifar10", root=str(tmp_path / "cifar-10-batches-py"))
        assert torch.equal(same.test.images([3]), data.test.images([3]))


def cifar_error(tmp_path, batch_bytes=None, name="data_batch_3"):
    fixtures.write_cifar10(tmp_path, archive=False)
    if batch_bytes is not None:
        (tmp_path / "cifar-10-batches-py" / name).write_bytes(batch_bytes)
    with pytest.raises(AvaeError) as err:
        load_dataset("cifar10", root=str(tmp_path))
    assert "\n" not in str(err.value)
    return str(err.value)


def test_cifar10_rejects_damaged_batches(tmp_path):
    good = fixtures.cifar_batch_bytes(np.zeros((4, 3072), np.uint8), [0, 1, 2, 3])
    assert "data_batch_3" in cifar_error(tmp_path / "a", good[: len(good) // 2])
    message = cifar_error(tmp_path / "b", fixtures.cifar_batch_bytes(np.zeros((4, 3000), np.uint8), [0] * 4))
    assert "data_batch_3" in message and "3072" in message
    import pickle

    no_data = pickle.dumps({b"labels": [1]}, protocol=2)
    assert "'data'" in cifar_error(tmp_path / "c", no_data)
    bad_labels = fixtures.cifar_batch_bytes(np.zeros((2, 3072), np.uint8), [3, 12])
    assert "labels" in cifar_error(tmp_path / "d", bad_labels)


class Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_cifar10_unpickler_refuses_code(tmp_path):
    import pickle

    message = cifar_error(tmp_path, pickle.dumps({b"data": Exploit()}, protocol=2), name="test_batch")
    assert "test_batch" in message and "not allowed" in message


def test_cifar10_archive_errors(tmp_path):
    fixtures.write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-python.tar.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(AvaeError, match="cifar-10-python.tar.gz.*(truncated|corrupt)"):
        load_dataset("cifar10", root=str(tmp_path))
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(AvaeError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", root=str(tmp_path))
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(AvaeError, match="cifar-10-python.tar.gz has no member .*data_batch_2"):
        load_dataset("cifar10", root=str(tmp_path))


def test_cifar10_missing_files(tmp_path):
    with pytest.raises(AvaeError, match="cifar-10-python.tar.gz .*not found in") as err:
        load_dataset("cifar10", root=str(tmp_path))
    assert str(tmp_path) in str(err.value) and "download" in str(err.value)
    with pytest.raises(AvaeError, match="colour"):
        load_dataset("cifar10", root=str(tmp_path), colour=1)


# ---------------------------------------------------------------- CelebA

from avae.data import cache, celeba  # noqa: E402

PARTS = (0, 2, 0, 1, 0, 0, 1, 0, 2, 0, 0, 0, 1, 0, 2, 0, 0, 1, 2, 0)


@pytest.mark.parametrize("archive", [False, True])
def test_celeba_crops_resizes_caches_and_splits(tmp_path, archive, monkeypatch):
    fixtures.write_celeba(tmp_path, PARTS, archive=archive)
    data = load_dataset("celeba", root=str(tmp_path))
    assert (len(data.train), len(data.val), len(data.test)) == (12, 4, 4)
    assert data.shape == (3, 64, 64) and data.value_range == (-1.0, 1.0) and data.likelihood == "gaussian"
    assert np.array_equal(data.val.indices, np.flatnonzero(np.array(PARTS) == 1))  # file order kept
    images = data.train.images(np.arange(12)).numpy().astype(int)
    # The red border lies outside the 140×140 centre crop: none of it may show.
    assert (images[:, 0] < 60).all() and images[:, 1].mean() > 90
    x = to_float(data.train.images([0]), data.value_range)
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() < 0
    cache = Path(data.info["files"]["cache"])
    assert cache.parent == tmp_path and cache.name.startswith("celeba_64x64_")
    assert not list(tmp_path.glob("*.tmp*"))  # no temporary file left behind
    # The second load reads the memory-mapped cache and decodes nothing.
    monkeypatch.setattr(celeba, "decode", lambda *a: pytest.fail("the cache was not used"))
    again = load_dataset("celeba", root=str(tmp_path))
    assert isinstance(again.train.base.array, np.memmap)
    assert torch.equal(again.test.images([3, 0]), data.test.images([3, 0]))


def test_celeba_preprocessing_matches_a_plain_crop_and_resize(tmp_path):
    from PIL import Image

    names = fixtures.write_celeba(tmp_path, (0, 0, 0, 0, 0, 1))
    data = load_dataset("celeba", root=str(tmp_path))
    with Image.open(tmp_path / "img_align_celeba" / names[2]) as image:
        expected = np.asarray(image.convert("RGB").crop((19, 39, 159, 179)).resize((64, 64), Image.BILINEAR))
    assert np.array_equal(data.train.images([2])[0].numpy().transpose(1, 2, 0), expected)


def test_celeba_rebuilds_the_cache_when_the_folder_changes(tmp_path):
    names = fixtures.write_celeba(tmp_path, (0, 0, 0, 1))
    first = load_dataset("celeba", root=str(tmp_path))
    old = Path(first.info["files"]["cache"])
    fixtures.celeba_image(np.random.default_rng(9)).save(tmp_path / "img_align_celeba" / names[1], quality=50)
    second = load_dataset("celeba", root=str(tmp_path))
    new = Path(second.info["files"]["cache"])
    assert new != old and new.is_file() and not old.exists()
    assert not torch.equal(first.train.images([1]), second.train.images([1]))


def test_celeba_cache_goes_to_the_cache_dir_when_the_data_are_read_only(tmp_path, monkeypatch):
    data_dir, cache_dir = tmp_path / "data", tmp_path / "cache"
    fixtures.write_celeba(data_dir, (0, 0, 1))
    monkeypatch.setenv("AVAE_CACHE_DIR", str(cache_dir))
    monkeypatch.setattr(cache, "writable", lambda folder: folder != data_dir)
    data = load_dataset("celeba", root=str(data_dir))
    assert Path(data.info["files"]["cache"]).parent == cache_dir / "celeba"
    assert not list(data_dir.glob("*.npy"))


def test_celeba_errors_name_the_file(tmp_path):
    names = fixtures.write_celeba(tmp_path, (0, 0, 1, 2))
    (tmp_path / "img_align_celeba" / names[2]).write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(AvaeError, match=f"{names[2]} is not a readable image"):
        load_dataset("celeba", root=str(tmp_path))
    assert not list(tmp_path.glob("*.npy")) and not list(tmp_path.glob(".*part"))
    (tmp_path / "img_align_celeba" / names[2]).unlink()
    with pytest.raises(AvaeError, match=f"image {names[2]} .*not found"):
        load_dataset("celeba", root=str(tmp_path))
    (tmp_path / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg train\n")
    with pytest.raises(AvaeError, match="list_eval_partition.txt line 2"):
        load_dataset("celeba", root=str(tmp_path))
    (tmp_path / "list_eval_partition.txt").unlink()
    with pytest.raises(AvaeError, match="list_eval_partition.txt not found") as err:
        load_dataset("celeba", root=str(tmp_path))
    assert "mmlab" in str(err.value)


def test_celeba_small_or_bad_zip(tmp_path):
    from PIL import Image

    names = fixtures.write_celeba(tmp_path, (0, 0, 1))
    Image.new("RGB", (100, 120)).save(tmp_path / "img_align_celeba" / names[0])
    with pytest.raises(AvaeError, match=f"{names[0]} is 100x120 pixels"):
        load_dataset("celeba", root=str(tmp_path / "."))
    zipped = tmp_path / "z"
    fixtures.write_celeba(zipped, (0, 1), archive=True)
    raw = (zipped / "img_align_celeba.zip").read_bytes()
    (zipped / "img_align_celeba.zip").write_bytes(raw[:100])
    with pytest.raises(AvaeError, match="img_align_celeba.zip is not a readable zip"):
        load_dataset("celeba", root=str(zipped))


# ---------------------------------------------------------------- 3D Shapes

from avae.data.shapes3d import FLOOR, OBJECT, WALL, ProceduralShapes3D, Shapes3DFile  # noqa: E402

SHAPES = ProceduralShapes3D()
H5 = "3dshapes.h5"


def test_shapes3d_grid_and_index_arithmetic():
    assert len(SHAPES) == 480_000 and SHAPES.shape == (3, 64, 64)
    assert SHAPES.factor_names == ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    assert SHAPES.factor_sizes == (10, 10, 10, 8, 4, 15)
    assert SHAPES.factor_classes(479_999).tolist() == [[9, 9, 9, 7, 3, 14]]
    assert SHAPES.factor_classes(1_234).tolist() == [[0, 0, 2, 4, 2, 4]]  # (2·8+4)·60 + 2·15 + 4
    idx = np.random.default_rng(2).integers(0, len(SHAPES), 1000)
    assert np.array_equal(SHAPES.index_of(SHAPES.factor_classes(idx)), idx)
    assert np.allclose(SHAPES.factor_values([479_999])[0], [0.9, 0.9, 0.9, 1.25, 3.0, 30.0])
    assert np.allclose(SHAPES.factor_values([0])[0], [0.0, 0.0, 0.0, 0.75, 0.0, -30.0])
    sampled = SHAPES.sample_factors(300, np.random.default_rng(0))
    assert sampled.shape == (300, 6) and (sampled.max(0) < SHAPES.factor_sizes).all()
    assert np.array_equal(sampled, SHAPES.sample_factors(300, np.random.default_rng(0)))


def test_shapes3d_procedural_is_deterministic(monkeypatch):
    idx = np.array([0, 479_999, 123_456, 7, 123_456])
    first = SHAPES.images(idx)
    assert first.dtype == torch.uint8 and first.shape == (5, 3, 64, 64) and first.is_contiguous()
    assert torch.equal(first[2], first[4])
    assert torch.equal(SHAPES.images(idx[::-1].copy()), first.flip(0))
    assert torch.equal(SHAPES.images_for_factors(SHAPES.factor_classes(idx)), first)
    monkeypatch.setattr(ProceduralShapes3D, "_tables", None)  # render the geometry afresh
    assert torch.equal(ProceduralShapes3D().images(idx), first)
    with pytest.raises(ValueError):
        SHAPES.images_for_factors([[10, 0, 0, 0, 0, 0]])


def change(classes, factor, value):
    other = np.array(classes)
    other[factor] = value
    return other


@pytest.mark.parametrize("factor,surface", [(0, FLOOR), (1, WALL), (2, OBJECT)])
def test_shapes3d_a_hue_changes_only_its_own_surface(factor, surface):
    rng = np.random.default_rng(factor)
    for classes in SHAPES.sample_factors(20, rng):
        other = change(classes, factor, (classes[factor] + rng.integers(1, 10)) % 10)
        a, b = SHAPES.images_for_factors(np.stack([classes, other]))
        changed = (a != b).any(0).numpy()
        mask = SHAPES.segments(classes)[0].numpy() == surface
        assert mask.any() and not changed[~mask].any()
        assert changed[mask].mean() > 0.95
        assert torch.equal(SHAPES.segments(other), SHAPES.segments(classes))


def test_shapes3d_scale_grows_the_object_and_shape_changes_its_silhouette():
    for shape in range(4):
        for orientation in (0, 7, 14):
            sizes = [(SHAPES.segments([[0, 0, 0, s, shape, orientation]])[0] == OBJECT).sum().item() for s in range(8)]
            assert np.all(np.diff(sizes) > 0), (shape, orientation, sizes)
    silhouettes = [SHAPES.segments([[1, 2, 3, 4, s, 5]])[0] == OBJECT for s in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert (silhouettes[i] != silhouettes[j]).sum() > 20


def test_shapes3d_orientation_turns_the_room():
    for shape in range(4):
        segs = SHAPES.segments([[0, 0, 0, 3, shape, o] for o in range(15)]).numpy()
        for a, b in zip(segs[:-1], segs[1:]):
            assert (a != b).sum() > 10  # the wall/floor boundary (and the cube) move every step
        # The floor/wall boundary is level at 0° and tilts one way at −30°, the other way at +30°.
        wall_rows = (segs == WALL).sum(1)  # per column: how many rows show the wall
        assert abs(wall_rows[7, 0] - wall_rows[7, -1]) <= 1
        assert wall_rows[0, -1] - wall_rows[0, 0] > 3 and wall_rows[14, 0] - wall_rows[14, -1] > 3
        images = SHAPES.images_for_factors([[0, 0, 0, 3, shape, o] for o in (6, 8)])
        assert not torch.equal(images[0], images[1])


def test_shapes3d_dataset_split(monkeypatch):
    monkeypatch.delenv("AVAE_DATA_ROOT", raising=False)
    data = load_dataset("shapes3d", seed=5)
    assert (len(data.train), len(data.val)) == (460_000, 20_000) and data.test is None
    assert np.array_equal(np.union1d(data.train.indices, data.val.indices), np.arange(480_000))
    assert data.info["source"] == "procedural" and isinstance(data.factor_grid, ProceduralShapes3D)
    assert data.likelihood == "gaussian" and data.value_range == (0.0, 1.0) and data.shape == (3, 64, 64)
    assert np.array_equal(data.val.indices, load_dataset("shapes3d", seed=5).val.indices)
    with pytest.raises(AvaeError, match="colour"):
        load_dataset("shapes3d", colour=1)


REDUCED = (2, 1, 2, 1, 4, 3)


def test_shapes3d_file_reads_lazily_in_official_layout(tmp_path, monkeypatch):
    pytest.importorskip("h5py")
    monkeypatch.setattr(Shapes3DFile, "factor_sizes", REDUCED)
    images = fixtures.write_shapes3d_h5(tmp_path / H5, REDUCED)
    data = load_dataset("shapes3d", root=str(tmp_path), seed=0)
    assert data.info["source"] == "file" and isinstance(data.factor_grid, Shapes3DFile)
    assert (len(data.train), len(data.val)) == (39, 9)
    idx = np.array([40, 3, 3, 17, 0, 4, 5, 41, 47])  # unsorted, repeats, runs: read sorted, put back in order
    got = data.factor_grid.images(idx)
    assert got.shape == (9, 3, 64, 64) and got.dtype == torch.uint8
    assert np.array_equal(got.numpy(), images[idx].transpose(0, 3, 1, 2))
    assert np.array_equal(data.factor_grid.images(np.arange(48)).numpy(), images.transpose(0, 3, 1, 2))
    assert data.factor_grid.images([]).shape == (0, 3, 64, 64)
    assert data.factor_grid.factor_classes(47).tolist() == [[1, 0, 1, 0, 3, 2]]
    assert np.allclose(data.factor_grid.factor_values([47, 5]), fixtures.shapes3d_values(REDUCED)[[47, 5]])
    assert torch.equal(data.val.images([0]), data.factor_grid.images(data.val.indices[:1]))


def test_shapes3d_file_errors(tmp_path, monkeypatch):
    h5py = pytest.importorskip("h5py")

    monkeypatch.setattr(Shapes3DFile, "factor_sizes", REDUCED)
    path = tmp_path / H5
    values = fixtures.shapes3d_values(REDUCED)
    fixtures.write_shapes3d_h5(path, REDUCED, labels=values[::-1])
    with pytest.raises(AvaeError, match=f"{H5}.*row-major"):
        load_dataset("shapes3d", root=str(tmp_path))
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((48, 64, 64, 3), np.uint8))
    with pytest.raises(AvaeError, match=f"{H5} has no dataset 'labels'"):
        load_dataset("shapes3d", root=str(tmp_path))
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((48, 32, 32, 3), np.uint8))
        f.create_dataset("labels", data=values)
    with pytest.raises(AvaeError, match=f"{H5}: dataset 'images' has shape"):
        load_dataset("shapes3d", root=str(tmp_path))
    path.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(AvaeError, match=f"{H5} is not a readable HDF5"):
        load_dataset("shapes3d", root=str(tmp_path))
    fixtures.write_shapes3d_h5(path, REDUCED)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(AvaeError, match=H5):
        load_dataset("shapes3d", root=str(tmp_path)).factor_grid.images(np.arange(48))
    with pytest.raises(AvaeError, match=f"{H5} not found"):
        load_dataset("shapes3d", root=str(tmp_path / "none"), source="file")


def test_shapes3d_without_h5py_says_how_to_install(tmp_path, monkeypatch):
    pytest.importorskip("h5py")
    fixtures.write_shapes3d_h5(tmp_path / H5, REDUCED)
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    with pytest.raises(AvaeError, match=r"pip install h5py.*avae\[shapes3d\]"):
        load_dataset("shapes3d", root=str(tmp_path))
    assert load_dataset("shapes3d", root=str(tmp_path), source="procedural").info["source"] == "procedural"


# ---------------------------------------------------------------- every dataset trains through the CLI

def prepare_root(name, root, monkeypatch):
    """Write `name`'s fixture under `root`; returns extra --set overrides."""
    if name in ("mnist", "fashion_mnist"):
        fixtures.write_mnist(root, n_train=120, n_test=20)
    elif name == "cifar10":
        fixtures.write_cifar10(root, n_per_batch=20)
    elif name == "celeba":
        fixtures.write_celeba(root, (0,) * 48 + (1,) * 8 + (2,) * 4)
    elif name == "dsprites-file":
        monkeypatch.setattr(DSpritesFile, "factor_sizes", (3, 2, 2, 4, 4))
        fixtures.write_dsprites_npz(root / NPZ, (3, 2, 2, 4, 4))
        return ["data.options={source: file}"]
    elif name == "shapes3d-file":
        pytest.importorskip("h5py")
        monkeypatch.setattr(Shapes3DFile, "factor_sizes", (2, 2, 2, 2, 4, 3))
        fixtures.write_shapes3d_h5(root / H5, (2, 2, 2, 2, 4, 3))
        return ["data.options={source: file}"]
    else:
        return ["data.options={source: procedural}"]
    return []


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "celeba", "dsprites", "dsprites-file",
                                  "shapes3d", "shapes3d-file"])
def test_avae_train_runs_one_tiny_epoch_on_every_dataset(name, tmp_path, monkeypatch):
    from avae.cli import main

    root = tmp_path / "data"
    root.mkdir()
    extra = prepare_root(name, root, monkeypatch)
    out = tmp_path / "run"
    settings = ["model.width=0.125", "model.latent_dim=4", "model.kde_size=16", "model.kde_refresh_every=2",
                "train.batch_size=16", "train.progress=false", "train.figures_every=0",
                "data.train_size=48", "data.val_size=8", *extra]
    args = ["train", "--dataset", name.split("-")[0], "--data-root", str(root), "--epochs", "1", "--out", str(out)]
    for item in settings:
        args += ["--set", item]
    assert main(args) == 0
    import json

    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished"
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and np.isfinite(metrics[0]["val_loss"])
