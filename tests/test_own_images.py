"""Your own images: the `images` (folder) and `array` (.npy/.npz) datasets and networks for any side."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from avae import nets
from avae.cli import main
from avae.data import load_dataset
from avae.errors import AvaeError
from avae.metrics.features import FeatureNet, RandomFeatures
from fixtures import pictures, write_image_folder


def all_images(data):
    return torch.cat([data.train.images(np.arange(len(data.train))), data.val.images(np.arange(len(data.val)))])


# ---------------------------------------------------------------- folders

def test_class_subfolders_are_the_labels_and_pixels_round_trip(tmp_path):
    written = write_image_folder(tmp_path / "f", 30, (28, 28), 1, classes=3)
    data = load_dataset("images", root=str(tmp_path / "f"), seed=0, val_fraction=0.2)
    assert data.shape == (1, 28, 28) and data.info["classes"] == ["class_0", "class_1", "class_2"]
    assert (len(data.train), len(data.val), data.test) == (24, 6, None)
    assert isinstance(data.train.base.array, np.memmap)  # the uint8 cache, read memory-mapped
    # PNG is lossless and no resize is needed: the cache holds the files' pixels, in sorted path order.
    names = sorted(written)
    np.testing.assert_array_equal(data.train.base.array[:, 0], np.stack([written[n][..., 0] for n in names]))
    np.testing.assert_array_equal(data.train.base.labels, [int(n[6]) for n in names])
    assert data.info["source"]["files"] == 30 and len(data.info["source"]["index_sha256"]) == 16


def test_the_split_is_drawn_with_the_split_seed(tmp_path):
    write_image_folder(tmp_path, 40, (32, 32), 3)
    first, again = (load_dataset("images", root=str(tmp_path), seed=1) for _ in range(2))
    other = load_dataset("images", root=str(tmp_path), seed=2)
    np.testing.assert_array_equal(first.val.indices, again.val.indices)
    assert list(first.val.indices) != sorted(first.val.indices)  # random order: any first n are a random sample
    assert len(first.val) == 4 and not np.array_equal(first.val.indices, other.val.indices)
    assert sorted(np.concatenate([first.train.indices, first.val.indices])) == list(range(40))


def test_crop_and_resize_match_a_plain_pillow_crop_and_resize(tmp_path):
    written = write_image_folder(tmp_path, 12, (40, 52), 3, ext="jpg")
    with pytest.raises(AvaeError, match="not square; pass --set data.options.crop=true"):
        load_dataset("images", root=str(tmp_path))
    data = load_dataset("images", root=str(tmp_path), crop=True, size=24)
    assert data.shape == (3, 24, 24)
    with Image.open(tmp_path / "img_0003.jpg") as image:
        expected = np.asarray(image.convert("RGB").crop((0, 6, 40, 46)).resize((24, 24), Image.BILINEAR))
    np.testing.assert_array_equal(data.train.base.array[3], expected.transpose(2, 0, 1))
    assert len(written) == 12


def test_grey_or_colour_from_the_files_or_the_setting(tmp_path):
    write_image_folder(tmp_path / "grey", 12, (32, 32), 1)
    write_image_folder(tmp_path / "colour", 12, (32, 32), 3)
    assert load_dataset("images", root=str(tmp_path / "grey")).shape == (1, 32, 32)
    assert load_dataset("images", root=str(tmp_path / "colour")).shape == (3, 32, 32)
    rgb = all_images(load_dataset("images", root=str(tmp_path / "grey"), channels=3))
    assert rgb.shape[1] == 3 and torch.equal(rgb[:, 0], rgb[:, 1]) and torch.equal(rgb[:, 1], rgb[:, 2])
    assert load_dataset("images", root=str(tmp_path / "colour"), channels=1).shape == (1, 32, 32)


def test_mixed_sizes_need_the_size_setting_and_odd_sides_go_to_the_nearest_network_side(tmp_path):
    write_image_folder(tmp_path / "mixed", 6, (30, 30), 1, seed=1)
    write_image_folder(tmp_path / "mixed" / "more", 6, (64, 64), 1, seed=2)
    with pytest.raises(AvaeError, match="2 different sizes.*pass --set data.options.size=64"):
        load_dataset("images", root=str(tmp_path / "mixed"))
    assert load_dataset("images", root=str(tmp_path / "mixed"), size=48).shape == (1, 48, 48)
    write_image_folder(tmp_path / "odd", 12, (30, 30), 1)
    assert load_dataset("images", root=str(tmp_path / "odd")).shape == (1, 32, 32)  # 30 is not a multiple of 4


def test_a_test_folder_keeps_the_training_classes_and_size(tmp_path):
    write_image_folder(tmp_path / "train", 20, (32, 32), 3, classes=2)
    write_image_folder(tmp_path / "test", 8, (40, 40), 3, classes=2, seed=5)
    data = load_dataset("images", root=str(tmp_path / "train"), test_root=str(tmp_path / "test"))
    assert data.test.shape == (3, 32, 32) and list(data.test.base.labels) == [0] * 4 + [1] * 4  # sorted paths
    assert sorted(data.test.indices) == list(range(8)) and list(data.test.indices) != list(range(8))
    assert data.info["source"]["test"]["files"] == 8
    write_image_folder(tmp_path / "one" / "class_1", 4, (32, 32), 3)  # a test set may hold fewer classes
    one = load_dataset("images", root=str(tmp_path / "train"), test_root=str(tmp_path / "one"))
    assert list(one.test.base.labels) == [1] * 4
    write_image_folder(tmp_path / "test" / "class_9", 1, (32, 32), 3)
    with pytest.raises(AvaeError, match="class 'class_9'"):
        load_dataset("images", root=str(tmp_path / "train"), test_root=str(tmp_path / "test"))


def test_the_cache_is_built_once_and_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("AVAE_CACHE_DIR", str(tmp_path / "cache"))
    write_image_folder(tmp_path / "f", 12, (32, 32), 1)
    first = load_dataset("images", root=str(tmp_path / "f"))
    cache = first.info["files"]["cache"]
    calls = []
    monkeypatch.setattr("avae.data.images.FolderSource.image", lambda self, i: calls.append(i))
    assert load_dataset("images", root=str(tmp_path / "f")).info["files"]["cache"] == cache and not calls
    monkeypatch.undo()
    monkeypatch.setenv("AVAE_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "f" / "img_0000.png"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    changed = load_dataset("images", root=str(tmp_path / "f"))
    assert changed.info["fingerprint"] != first.info["fingerprint"]
    assert [p.name for p in (tmp_path / "cache" / "images").iterdir()] == [os.path.basename(changed.info["files"]["cache"])]


@pytest.mark.parametrize("make,says", [
    (lambda root: None, "no image files"),
    (lambda root: (root / "notes.txt").write_text("x"), "no image files"),
    (lambda root: (root / "bad.png").write_bytes(b"not a png"), "bad.png is not a readable image"),
    (lambda root: write_image_folder(root, 4) and (root / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0broken"),
     "x.jpg is not a readable image"),
])
def test_bad_folders_are_one_error_naming_the_problem(tmp_path, make, says):
    make(tmp_path)
    with pytest.raises(AvaeError, match=says):
        load_dataset("images", root=str(tmp_path))


@pytest.mark.parametrize("options,says", [
    ({"size": 30}, "size must be auto or a multiple of 4 from 16 to 256"),
    ({"size": 512}, "size must be auto"),
    ({"channels": 2}, "data.options.channels must be one of auto, 1, 3, got 2"),
    ({"val_fraction": 1.5}, "data.options.val_fraction must be a number > 0 and < 1, got 1.5"),
    ({"crop": "yes"}, "data.options.crop must be true or false"),
    ({"labels": "files"}, "data.options.labels must be one of auto, folders, none"),
    ({"labels": "folders"}, "labels: folders needs one subfolder per class"),
    ({"colour": True}, "has no option data.options.colour"),
    ({"val_fraction": 0.99}, "too few to split off validation images"),
])
def test_bad_folder_options(tmp_path, options, says):
    write_image_folder(tmp_path, 12, (32, 32), 1)
    with pytest.raises(AvaeError, match=says):
        load_dataset("images", root=str(tmp_path), **options)


def test_a_missing_folder_or_none_at_all(tmp_path, monkeypatch):
    monkeypatch.delenv("AVAE_DATA_ROOT", raising=False)
    with pytest.raises(AvaeError, match="needs a folder of images: pass --data-root"):
        load_dataset("images")
    with pytest.raises(AvaeError, match="is not a folder"):
        load_dataset("images", root=str(tmp_path / "missing"))


# ---------------------------------------------------------------- arrays

@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw"])
def test_uint8_arrays_in_every_layout_round_trip(tmp_path, layout):
    rng = np.random.default_rng(0)
    grey = layout == "nhw"
    images = pictures(20, 32, 32, 1 if grey else 3, rng)  # (n, h, w, c)
    stored = {"nhw": images[..., 0], "nhwc": images, "nchw": images.transpose(0, 3, 1, 2)}[layout]
    np.save(tmp_path / "x.npy", stored)
    data = load_dataset("array", root=str(tmp_path / "x.npy"))
    assert data.shape == ((1, 32, 32) if grey else (3, 32, 32)) and data.info["classes"] is None
    np.testing.assert_array_equal(data.train.base.array, images.transpose(0, 3, 1, 2))
    assert data.info["source"]["shape"] == list(stored.shape) and data.info["source"]["dtype"] == "uint8"


def test_float_npz_with_labels_test_file_and_resize(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.random((30, 28, 28, 3)).astype(np.float32)
    np.savez(tmp_path / "train.npz", images=images, labels=rng.integers(5, 8, 30))
    np.savez(tmp_path / "test.npz", images=rng.random((10, 28, 28, 3)), labels=np.array([5, 7] * 5))
    data = load_dataset("array", root=str(tmp_path / "train.npz"), test_root=str(tmp_path / "test.npz"))
    assert data.shape == (3, 28, 28) and data.info["classes"] == [5, 6, 7]
    np.testing.assert_array_equal(data.train.base.array, np.rint(images * 255).astype(np.uint8).transpose(0, 3, 1, 2))
    assert list(data.test.base.labels) == [0, 2] * 5 and len(data.test) == 10
    small = load_dataset("array", root=str(tmp_path / "train.npz"), size=16, channels=1, labels="none")
    assert small.shape == (1, 16, 16) and small.info["classes"] is None


@pytest.mark.parametrize("array,options,says", [
    (np.zeros((10, 32), np.uint8), {}, "shape \\(10, 32\\)"),
    (np.zeros((10, 32, 32), np.int64), {}, "holds int64 values"),
    (np.zeros((10, 3, 32, 3), np.uint8), {}, "fits both.*layout"),
    (np.zeros((10, 2, 32, 32), np.uint8), {}, "no axis of 1 or 3 channels"),
    (np.zeros((10, 32, 32, 3), np.uint8), {"layout": "nchw"}, "not nchw"),
    (np.full((10, 32, 32), np.nan, np.float32), {}, "image 0 holds the value nan"),
    (np.concatenate([np.zeros((5, 32, 32)), np.full((5, 32, 32), 2.0)]), {}, "image 5 holds the value 2.0"),
    (np.zeros((3, 32, 32), np.uint8), {"val_fraction": 0.5}, "too few to split off validation"),
    (np.zeros((10, 32, 32), np.uint8), {"labels": "y"}, "no labels key 'y'"),
    (np.zeros((10, 30, 30), np.uint8), {"size": 30}, "size must be auto or a multiple of 4"),
])
def test_bad_npy_arrays(tmp_path, array, options, says):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(AvaeError, match=says):
        load_dataset("array", root=str(tmp_path / "x.npy"), **options)


@pytest.mark.parametrize("contents,options,says", [
    ({"a": np.zeros((10, 32, 32), np.uint8), "b": np.zeros(3)}, {}, "no array 'images' \\(it has a, b\\)"),
    ({"images": np.zeros((10, 32, 32), np.uint8), "labels": np.zeros(9, int)}, {}, "must be 10 integers"),
    ({"images": np.zeros((10, 32, 32), np.uint8), "labels": np.zeros(10)}, {}, "must be 10 integers"),
    ({"images": np.zeros((10, 32, 32), np.uint8), "labels": np.zeros(10, int)}, {}, "single class"),
    ({"images": np.zeros((10, 32, 32), np.uint8)}, {"labels": "y"}, "no array 'y'"),
])
def test_bad_npz_files(tmp_path, contents, options, says):
    np.savez(tmp_path / "x.npz", **contents)
    with pytest.raises(AvaeError, match=says):
        load_dataset("array", root=str(tmp_path / "x.npz"), **options)


def test_files_that_are_not_arrays(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    (tmp_path / "x.png").write_bytes(b"junk")
    for name, says in [("objects.npy", "not a readable .npy"), ("junk.npz", "not a readable .npz"),
                       ("x.png", "not a .npy or .npz file"), ("missing.npy", "not a .npy or .npz file")]:
        with pytest.raises(AvaeError, match=says):
            load_dataset("array", root=str(tmp_path / name))


def test_an_npz_with_one_array_needs_no_key(tmp_path):
    np.savez(tmp_path / "x.npz", np.zeros((10, 32, 32), np.uint8))
    assert load_dataset("array", root=str(tmp_path / "x.npz")).info["source"]["key"] == "arr_0"


# ---------------------------------------------------------------- networks and features for any side

@pytest.mark.parametrize("name", sorted(nets.ARCHS))
def test_native_sizes_keep_the_paper_networks(name):
    arch = nets.ARCHS[name]
    assert nets.for_side(arch, arch.image_size) is arch


@pytest.mark.parametrize("side", [16, 20, 28, 36, 48, 96, 128, 256])
@pytest.mark.parametrize("channels", [1, 3])
def test_networks_for_any_supported_side(side, channels):
    shape = (channels, side, side)
    arch = nets.default_arch(shape)
    assert arch == ("mnist" if channels == 1 else "cifar10") if side < 46 else ("disentangle" if channels == 1 else "celeba")
    encoder, decoder = nets.build(arch, shape, 4, 8, 0.0625, (0.0, 1.0))
    x = torch.rand(2, *shape)
    assert encoder(x).shape == (2, 8) and decoder(torch.randn(2, 4)).shape == (2, *shape)


def test_stage_rules():
    mnist = nets.ARCHS["mnist"]
    at28 = nets.for_side(mnist, 28)  # 28 = 7·2²: two stages, the widest two removed
    assert (at28.encoder_channels, at28.decoder_start, at28.decoder_channels) == ((64, 128), 7, (128, 64))
    at128 = nets.for_side(mnist, 128)  # two doublings over 32: two more stages at the widest width
    assert at128.encoder_channels == (64, 128, 256, 512, 512, 512) and at128.decoder_start == 2
    with pytest.raises(AvaeError, match="square images with a side of a multiple of 4 from 16 to 256"):
        nets.default_arch((1, 30, 30))
    with pytest.raises(AvaeError, match="the data are 28×32"):
        nets.build("mnist", (1, 28, 32), 4, 4, 1.0, (0.0, 1.0))


def test_random_features_are_fixed_and_leave_the_global_generator_alone():
    images = np.random.default_rng(0).integers(0, 256, (6, 3, 28, 28), dtype=np.uint8)
    state = torch.get_rng_state()
    a = RandomFeatures((3, 28, 28), (0.0, 1.0))(images)
    b = RandomFeatures((3, 28, 28), (0.0, 1.0))(images)
    assert torch.equal(state, torch.get_rng_state())
    np.testing.assert_array_equal(a, b)
    assert a.shape == (6, 128) and np.abs(a - a.mean(0)).max() > 0  # images are told apart
    assert FeatureNet(1, 28, [2])(torch.rand(2, 1, 28, 28))[0].shape == (2, 128)


# ---------------------------------------------------------------- through the command line

TINY = ["model.width=0.0625", "model.latent_dim=4", "model.kde_size=16", "model.kde_refresh_every=2",
        "train.batch_size=8", "train.progress=false", "train.figures_every=0", "data.options.val_fraction=0.25"]


def cli(*args):
    """`python -m avae ...` in a new process (the data are found again from the run directory alone)."""
    return subprocess.run([sys.executable, "-m", "avae", *map(str, args)], capture_output=True, text=True)


def interrupted_run(tmp_path, monkeypatch, dataset, root, *settings):
    """A two-epoch run stopped by Ctrl-C in its second epoch."""
    from avae.models.avae import AVAE

    def after_step(self, ctx, x, losses):
        if ctx.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(AVAE, "after_step", after_step)
    out = tmp_path / "run"
    args = ["train", "--dataset", dataset, "--data-root", str(root), "--epochs", "2", "--out", str(out)]
    for item in (*TINY, *settings):
        args += ["--set", item]
    assert main(args) == 130
    monkeypatch.undo()
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    return out


def resume_evaluate_sample(run_dir, features, new_process=False):
    if new_process:
        for args in (["train", "--resume", run_dir], ["evaluate", run_dir, "-n", "10"], ["sample", run_dir, "-n", "5"]):
            done = cli(*args)
            assert done.returncode == 0, done.stderr
    else:
        assert main(["train", "--resume", str(run_dir)]) == 0
        assert main(["evaluate", str(run_dir), "-n", "10"]) == 0
        assert main(["sample", str(run_dir), "-n", "5"]) == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert (info["status"], info["epochs_done"]) == ("finished", 2)
    result = json.loads((run_dir / "evaluate.json").read_text())
    assert result["feature_space"]["name"] == features and result["n"] == 10
    assert all(np.isfinite(q["frechet_distance"]) for q in result["sample_quality"].values())
    samples = np.load(run_dir / "samples.npy")
    assert samples.shape == (5, *info["data_spec"]["shape"]) and samples.dtype == np.uint8
    return info


@pytest.mark.parametrize("side,channels,classes,ext", [(28, 1, 2, "png"), (48, 3, 0, "jpg")])
def test_a_folder_trains_resumes_evaluates_and_samples(tmp_path, monkeypatch, side, channels, classes, ext):
    root = tmp_path / "pictures"
    write_image_folder(root, 64, (side, side), channels, classes=classes, ext=ext)
    run_dir = interrupted_run(tmp_path, monkeypatch, "images", root)
    info = resume_evaluate_sample(run_dir, "classifier" if classes else "random", new_process=classes > 0)
    assert info["data_spec"]["shape"] == [channels, side, side]
    assert info["dataset_info"]["source"] == {"path": str(root.resolve()), "files": 64,
                                              "index_sha256": info["dataset_info"]["source"]["index_sha256"]}


@pytest.mark.parametrize("shape,labelled", [((64, 32, 32, 3), True), ((64, 64, 64), False)])
def test_an_array_trains_resumes_evaluates_and_samples(tmp_path, monkeypatch, shape, labelled):
    rng = np.random.default_rng(3)
    images = pictures(shape[0], shape[1], shape[2], shape[3] if len(shape) == 4 else 1, rng)
    path = tmp_path / "images.npz"
    if labelled:
        np.savez(path, images=images / 255.0, labels=rng.integers(0, 3, shape[0]))
    else:
        np.savez(path, images=images[..., 0])
    run_dir = interrupted_run(tmp_path, monkeypatch, "array", path)
    info = resume_evaluate_sample(run_dir, "classifier" if labelled else "random")
    assert info["dataset_info"]["source"]["shape"] == list(shape)


def test_a_run_refuses_data_that_changed_underneath(tmp_path, monkeypatch, capsys):
    root = tmp_path / "pictures"
    write_image_folder(root, 40, (32, 32), 1)
    run_dir = interrupted_run(tmp_path, monkeypatch, "images", root)
    capsys.readouterr()
    write_image_folder(root / "new", 1, (32, 32), 1)
    for args in (["train", "--resume", str(run_dir)], ["evaluate", str(run_dir)]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "changed since" in err and "40 files then, 41 files now" in err, err
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert not (run_dir / "evaluate.json").exists()
    assert main(["sample", str(run_dir), "-n", "2"]) == 0  # sampling needs the run alone


@pytest.mark.parametrize("settings,says", [
    (["train.batch_size=64"], "fewer than train.batch_size 64"),
    (["model.kde_size=40"], "smaller than the training set"),
])
def test_too_few_images_for_the_batch_or_the_kde_set(tmp_path, capsys, settings, says):
    write_image_folder(tmp_path / "pictures", 40, (32, 32), 1)
    args = ["train", "--dataset", "images", "--data-root", str(tmp_path / "pictures"), "--out", str(tmp_path / "r")]
    for item in (*TINY, *settings):
        args += ["--set", item]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err
    assert not (tmp_path / "r").exists()
