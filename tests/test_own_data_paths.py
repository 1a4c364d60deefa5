"""Paths of the `images` and `array` datasets: symlink loops, broken links, the test_root option and
an empty data root (refused, not read as the current folder)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from avae.cli import main
from avae.data import load_dataset
from avae.data.images import FolderSource
from avae.errors import AvaeError
from fixtures import write_image_folder

QUICK = ["--set", "model.width=0.125", "--set", "model.kde_size=100", "--set", "train.progress=false",
         "--set", "train.figures_every=0", "--epochs", "1"]


def fails(capsys, argv, says):
    """Runs the command; asserts exit 2 and one error line (no traceback) that contains `says`."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avae: error:") and err.count("\n") == 1, err
    assert "Traceback" not in err and says in err, err
    return err


@pytest.fixture
def six(tmp_path):
    """A folder of six images, in the folder itself and one subfolder."""
    root = tmp_path / "six"
    write_image_folder(root, 4, (32, 32), 1)
    write_image_folder(root / "sub", 2, (32, 32), 1, seed=1)
    return root


# --- symlink loops and duplicated links --------------------------------------------------------------
def test_a_link_to_an_ancestor_repeats_no_image(six):
    (six / "sub" / "loop").symlink_to("..")
    source = FolderSource(six, "none")
    assert source.files == ["img_0000.png", "img_0001.png", "img_0002.png", "img_0003.png",
                            "sub/img_0000.png", "sub/img_0001.png"]
    data = load_dataset("images", root=str(six), val_fraction=0.2)
    assert data.info["source"]["files"] == 6 and len(data.train) + len(data.val) == 6


def test_two_loops_end_quickly_with_the_same_images(six):
    (six / "sub" / "loop").symlink_to("..")
    (six / "sub" / "back").symlink_to(six)
    (six / "sub" / "self").symlink_to(".")
    # In a child process with a time limit: walking every path of two loops would never end.
    count = "from pathlib import Path; from avae.data.images import FolderSource; " \
            f"print(len(FolderSource(Path({str(six)!r}), 'none').files))"
    done = subprocess.run([sys.executable, "-c", count], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "6", done.stderr[-2000:]


def test_linked_folders_are_followed_and_each_real_image_is_indexed_once(tmp_path, six):
    root = tmp_path / "links"
    root.mkdir()
    (root / "b").symlink_to(six / "sub")  # a dataset built from links is legitimate
    (root / "a").symlink_to(six / "sub")  # a second link to the same folder: first path wins
    (root / "c.png").symlink_to(six / "img_0000.png")
    (root / "d.png").symlink_to(six / "img_0000.png")  # the same file twice
    assert FolderSource(root, "none").files == ["a/img_0000.png", "a/img_0001.png", "c.png"]


# --- broken links -----------------------------------------------------------------------------------
def test_a_broken_link_among_the_images_is_named(capsys, tmp_path, six):
    (six / "sub" / "gone.png").symlink_to(six / "nowhere.png")
    err = fails(capsys, ["train", "--dataset", "images", "--data-root", six, "--out", tmp_path / "r", *QUICK],
                f"{six / 'sub' / 'gone.png'} is a broken link")
    assert "point it at an image" in err and "free it" not in err
    assert not (tmp_path / "r").exists()


# --- test_root ------------------------------------------------------------------------------------------
def test_a_missing_test_folder_names_the_option(capsys, tmp_path, six):
    err = fails(capsys, ["train", "--dataset", "images", "--data-root", six, "--out", tmp_path / "r", *QUICK,
                         "--set", f"data.options={{test_root: {tmp_path / 'nope'}}}"], "test_root")
    assert "--data-root" not in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    err = fails(capsys, ["train", "--dataset", "images", "--data-root", six, "--out", tmp_path / "r", *QUICK,
                         "--set", f"data.options={{test_root: {tmp_path / 'empty'}}}"], "test_root")
    assert "no image files" in err and "--data-root" not in err


def test_a_missing_test_array_names_the_option(capsys, tmp_path):
    np.save(tmp_path / "train.npy", np.zeros((20, 32, 32), np.uint8))
    err = fails(capsys, ["train", "--dataset", "array", "--data-root", tmp_path / "train.npy", "--out",
                         tmp_path / "r", *QUICK, "--set", f"data.options={{test_root: {tmp_path / 'nope.npy'}}}"],
                "test_root")
    assert "--data-root" not in err


@pytest.mark.parametrize("dataset", ["images", "array"])
def test_an_empty_test_root_is_refused(six, dataset):
    root = six if dataset == "images" else six / "x.npy"
    np.save(six / "x.npy", np.zeros((20, 32, 32), np.uint8))
    with pytest.raises(AvaeError, match="test_root is empty"):
        load_dataset(dataset, root=str(root), test_root="")


# --- an empty data root -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dataset", ["images", "array", "mnist"])
def test_an_empty_data_root_flag_is_refused(capsys, tmp_path, six, monkeypatch, dataset):
    monkeypatch.chdir(six)  # the current folder holds images: "" must not quietly mean it
    fails(capsys, ["train", "--dataset", dataset, "--data-root", "", "--out", tmp_path / "r", *QUICK],
          "--data-root is empty")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("dataset", ["images", "array", "mnist"])
def test_an_empty_data_root_setting_is_refused(capsys, tmp_path, six, monkeypatch, dataset):
    monkeypatch.chdir(six)
    fails(capsys, ["train", "--dataset", dataset, "--set", 'data.root=""', "--out", tmp_path / "r", *QUICK],
          "the data root (--data-root, data.root) is empty")
    assert not os.path.exists(tmp_path / "r")
