"""Experiment trackers (TensorBoard, W&B, MLflow): what training and `avae evaluate` leave in them,
read back from their own files; and config.yaml, the configuration they are given, for every kind of dataset."""
import dataclasses
import json
import shutil
import struct

import numpy as np
import pytest

import avae
from avae import callbacks, config, run
from avae.callbacks import evaluation_metrics, installed, tracker_params
from avae.cli import main
from avae.config import DataSettings, TrainSettings
from avae.models import MODELS, ModelSettings
from fixtures import pictures, write_image_folder

TRACKERS = ("tensorboard", "wandb", "mlflow")


def tiny_config(root, **train):
    return {"data": {"name": "mnist", "root": str(root)},
            "model": {"name": "avae", "latent_dim": 4, "width": 0.125, "kde_size": 100},
            "train": {"batch_size": 50, "epochs": 1, "progress": False, **train}}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def tracked_run(mnist_root, tmp_path_factory, monkeypatch_module):
    """One run with every installed tracker enabled (W&B offline, MLflow a file store), then evaluated."""
    monkeypatch_module.setenv("WANDB_MODE", "offline")
    monkeypatch_module.setenv("WANDB_SILENT", "true")
    monkeypatch_module.delenv("MLFLOW_TRACKING_URI", raising=False)
    trackers = {name: installed(name) for name in TRACKERS}
    if not any(trackers.values()):
        pytest.skip("none of tensorboard, wandb, mlflow is installed (pip install 'avae[tensorboard,wandb,mlflow]')")
    cfg = tiny_config(mnist_root, epochs=2, figures_every=1, **trackers)
    run_dir = avae.train(cfg, out=tmp_path_factory.mktemp("tracked") / "r")
    result = avae.evaluate(run_dir, n=50, classifier_images=200, classifier_epochs=1, progress=False)
    return run_dir, trackers, result


def needs(trackers, name):
    if not trackers[name]:
        pytest.skip(f"{name} is not installed (pip install 'avae[{name}]')")


def expected_params(run_dir):
    """What every tracker should hold: config.yaml, flattened."""
    return tracker_params(run.read(run_dir)[0])


# ---------------------------------------------------------------- config.yaml: the whole configuration

def declared(model_name):
    """Every setting the config's dataclasses declare, by section."""
    def names(cls):
        return {f.name for f in dataclasses.fields(cls)}

    return {"data": names(DataSettings), "model": names(ModelSettings) | names(MODELS[model_name].Params),
            "train": names(TrainSettings)}


def own_images(tmp_path):
    write_image_folder(tmp_path / "pictures", 40, (32, 32), 1)
    return "images", tmp_path / "pictures"


def own_array(tmp_path):
    np.save(tmp_path / "images.npy", pictures(40, 32, 32, 1, np.random.default_rng(0))[..., 0])
    return "array", tmp_path / "images.npy"


@pytest.mark.parametrize("make", [own_images, own_array])
def test_config_yaml_holds_every_setting_for_own_images_and_arrays(tmp_path, make):
    dataset, root = make(tmp_path)
    settings = ["model.width=0.0625", "model.latent_dim=4", "model.kde_size=16", "train.batch_size=8",
                "train.progress=false", "train.figures_every=0", "data.options.val_fraction=0.25"]
    args = ["train", "--dataset", dataset, "--data-root", str(root), "--epochs", "1", "--out", str(tmp_path / "r")]
    assert main(args + [a for s in settings for a in ("--set", s)]) == 0
    cfg = config.load_yaml((tmp_path / "r" / "config.yaml").read_text())
    assert {section: set(values) for section, values in cfg.items()} == declared("avae")
    assert {k: v for k, v in cfg["data"].items() if k != "options"} == {
        "name": dataset, "root": str(root), "split_seed": 0, "train_size": None, "val_size": None}
    assert cfg["data"]["options"] == {"size": "auto", "crop": False, "channels": "auto", "val_fraction": 0.25,
                                      "labels": "auto", "test_root": None,
                                      **({"key": None, "layout": "auto"} if dataset == "array" else {})}
    # the defaults written out, with no dataset preset behind them: lr, batch size, σ0², refresh interval, ...
    assert (cfg["train"]["lr"], cfg["train"]["batch_size"], cfg["train"]["epochs"]) == (5e-4, 8, 1)
    assert (cfg["model"]["sigma0_sq"], cfg["model"]["kde_refresh_every"], cfg["model"]["kde_size"]) == (200.0, 10, 16)
    # `auto` settings made concrete for the machine at hand
    assert cfg["train"]["precision"] in ("float32", "bfloat16") and isinstance(cfg["train"]["channels_last"], bool)
    assert cfg["model"]["kde_precision"] in ("float32", "bfloat16")
    assert config.resolve(cfg).to_dict() == cfg  # it resolves to itself: nothing left implicit for a preset to change


def test_config_yaml_of_a_built_in_dataset_holds_every_setting(tracked_run):
    run_dir, _, _ = tracked_run
    cfg = config.load_yaml((run_dir / "config.yaml").read_text())
    assert {section: set(values) for section, values in cfg.items()} == declared("avae")
    assert cfg["model"]["sigma0_sq"] == 200.0 and cfg["model"]["arch"] == "mnist"  # the mnist preset's
    assert config.resolve(cfg).to_dict() == cfg


# ---------------------------------------------------------------- the parameters every tracker gets

def test_tracker_params_are_the_flattened_config_as_scalars():
    cfg = config.resolve(None, ["data.name=mnist", "model.name=aae", "data.root=" + "x" * 600])
    params = tracker_params(cfg)
    assert set(params) == set(config.flatten(cfg.to_dict()))
    assert params["train.lr"] == 5e-4 and params["model.adv_weight"] == cfg.params.adv_weight
    assert params["model.disc_hidden"] == json.dumps(cfg.params.disc_hidden) and params["data.train_size"] == "null"
    assert params["data.options.download"] is False and params["train.progress"] is True
    assert len(params["data.root"]) == 500 and params["data.root"].endswith("…")  # MLflow's limit; config.yaml keeps it
    assert all(isinstance(v, (bool, int, float, str)) for v in params.values())


def test_evaluation_metrics_are_the_scores_by_their_place_in_evaluate_json():
    result = {"n": 50, "seed": 0, "trained": {"epochs_done": 2}, "timings_s": {"encode": 0.1},
              "sample_quality": {"N": {"frechet_distance": 1.5, "prd": {"precision": 0.25, "params": {"beta": 8.0}}}},
              "latent_quality": {"entropy": {"entropy": 2.0, "kde_size_for_h": 10000, "params": {"h": 0.3}},
                                 "sampling_distribution": "N(0, I)", "collapsed_axes": {"count": 1, "variances": [0.5]},
                                 "norm_chi2_test": {"p_value": float("nan")}},
              "disentanglement": {"mig": {"mig": 0.125, "mig_per_factor": [0.1, 0.2]}, "beta_vae": {"ok": True}}}
    assert evaluation_metrics(result) == {"eval/N/frechet_distance": 1.5, "eval/N/prd/precision": 0.25,
                                          "eval/latent/entropy/entropy": 2.0, "eval/latent/collapsed_axes/count": 1.0,
                                          "eval/disentanglement/mig/mig": 0.125}


def test_every_tracker_gets_the_same_parameters(tracked_run):
    run_dir, trackers, _ = tracked_run
    expected = expected_params(run_dir)
    assert {"train.lr", "train.batch_size", "model.sigma0_sq", "model.kde_refresh_every", "data.split_seed",
            "data.root"} <= set(expected)
    if trackers["tensorboard"]:
        assert tensorboard_hparams(run_dir) == expected
    if trackers["mlflow"]:
        assert mlflow_run(run_dir).data.params == {k: str(v) for k, v in expected.items()}
    if trackers["wandb"]:
        training, evaluation = wandb_runs(run_dir)
        assert training["config"] == expected and evaluation["config"] == expected


# ---------------------------------------------------------------- TensorBoard

def tensorboard_events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0}).Reload()


def tensorboard_hparams(run_dir):
    from tensorboard.plugins.hparams import metadata

    content = tensorboard_events(run_dir).PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    return {name: getattr(value, value.WhichOneof("kind")) for name, value in start.hparams.items()}


def test_tensorboard_gets_scalars_per_epoch_and_the_figures(tracked_run):
    run_dir, trackers, _ = tracked_run
    needs(trackers, "tensorboard")
    events = tensorboard_events(run_dir)
    metrics = run.read_metrics(run_dir)
    recon = events.Scalars("val_recon")
    assert [e.step for e in recon] == [1, 2]
    assert [e.value for e in recon] == pytest.approx([r["val_recon"] for r in metrics], rel=1e-6)
    assert {"samples", "reconstructions"} <= set(events.Tags()["images"])


def test_tensorboard_hparams_session_and_the_evaluation_as_its_metrics(tracked_run):
    from tensorboard.plugins.hparams import api_pb2, metadata

    run_dir, trackers, result = tracked_run
    needs(trackers, "tensorboard")
    events = tensorboard_events(run_dir)
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    assert set(content) == {metadata.SESSION_START_INFO_TAG, metadata.SESSION_END_INFO_TAG}  # no fixed metric list:
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])  # every scalar is one
    assert end.status == api_pb2.STATUS_SUCCESS
    scores = evaluation_metrics(result)
    assert scores["eval/N/frechet_distance"] == result["sample_quality"]["N"]["frechet_distance"]
    assert scores["eval/latent/entropy/entropy"] == result["latent_quality"]["entropy"]["entropy"]
    assert set(scores) <= set(events.Tags()["scalars"])
    for name, value in scores.items():  # at the evaluated checkpoint's epoch, beside that epoch's scalars
        (event,) = events.Scalars(name)
        assert (event.step, event.value) == (2, pytest.approx(value, rel=1e-6, abs=1e-30))


# ---------------------------------------------------------------- MLflow

def mlflow_run(run_dir):
    from mlflow.tracking import MlflowClient

    client = MlflowClient((run_dir / "mlruns").resolve().as_uri())
    (found,) = client.search_runs([client.get_experiment_by_name("avae").experiment_id])
    return found


def test_mlflow_file_store_holds_params_metrics_and_figures(tracked_run):
    from mlflow.tracking import MlflowClient

    run_dir, trackers, _ = tracked_run
    needs(trackers, "mlflow")
    client = MlflowClient((run_dir / "mlruns").resolve().as_uri())
    found = mlflow_run(run_dir)
    assert found.data.params["model.kde_size"] == "100"
    history = client.get_metric_history(found.info.run_id, "val_recon")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx([r["val_recon"] for r in run.read_metrics(run_dir)])
    assert {a.path for a in client.list_artifacts(found.info.run_id, "figures/epoch_002")} >= {
        "figures/epoch_002/samples.png"}


def test_mlflow_run_gets_the_evaluation(tracked_run):
    from mlflow.tracking import MlflowClient

    run_dir, trackers, result = tracked_run
    needs(trackers, "mlflow")
    found = mlflow_run(run_dir)  # the one run: the evaluation went into the training's
    assert json.loads((run_dir / "trackers.json").read_text())["mlflow"]["run_id"] == found.info.run_id
    scores = evaluation_metrics(result)
    assert found.data.metrics == pytest.approx({**found.data.metrics, **scores})
    history = MlflowClient((run_dir / "mlruns").resolve().as_uri()).get_metric_history(found.info.run_id,
                                                                                      "eval/N/frechet_distance")
    assert [(m.step, m.value) for m in history] == [(2, result["sample_quality"]["N"]["frechet_distance"])]


def test_a_resumed_run_continues_its_mlflow_run(mnist_root, tmp_path, monkeypatch):
    if not installed("mlflow"):
        pytest.skip("mlflow is not installed (pip install 'avae[mlflow]')")
    from avae.models.avae import AVAE

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def after_step(self, ctx, x, losses):
        if ctx.epoch == 1:
            raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(AVAE, "after_step", after_step)
        with pytest.raises(KeyboardInterrupt):
            avae.train(tiny_config(mnist_root, epochs=2, figures_every=0, mlflow=True), out=tmp_path / "r")
    avae.trainer.resume(tmp_path / "r")
    found = mlflow_run(tmp_path / "r")
    assert found.info.status == "FINISHED" and found.data.params == {
        k: str(v) for k, v in expected_params(tmp_path / "r").items()}
    from mlflow.tracking import MlflowClient

    history = MlflowClient((tmp_path / "r" / "mlruns").resolve().as_uri()).get_metric_history(found.info.run_id,
                                                                                            "val_recon")
    assert [m.step for m in history] == [1, 2]


# ---------------------------------------------------------------- W&B (offline files)

def wandb_records(path):
    """The records of an offline run's .wandb file: W&B's header, then blocks of 32 KiB holding
    chunks of records, each chunk after a 7-byte header (checksum, length, type: 1 whole, 2 first,
    3 middle, 4 last); a block's tail too short for a header is padding."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    position, pending = 7, b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0:  # zero padding to the end of the block
            position += left
            continue
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def wandb_runs(run_dir):
    """Each offline run in RUN_DIR/wandb, in order: its id, config and (last) summary values."""
    runs = []
    for folder in sorted((run_dir / "wandb").glob("offline-run-*")):
        (history,) = folder.glob("*.wandb")
        found = {"id": None, "config": {}, "summary": {}, "folder": folder}
        for record in wandb_records(history):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                found["id"] = record.run.run_id
                found["config"] = {u.key: json.loads(u.value_json) for u in record.run.config.update
                                   if u.key != "_wandb"}
            elif kind == "summary":
                found["summary"] |= {u.key or "/".join(u.nested_key): json.loads(u.value_json)
                                     for u in record.summary.update}
        runs.append(found)
    return runs


def test_wandb_offline_run_holds_the_history(tracked_run):
    run_dir, trackers, _ = tracked_run
    needs(trackers, "wandb")
    training = wandb_runs(run_dir)[0]["folder"]  # what `wandb sync` uploads
    (history,) = training.glob("*.wandb")
    assert history.stat().st_size > 0
    images = [p.name.split("_")[0] for p in (training / "files" / "media" / "images").iterdir()]
    assert sorted(images) == sorted(["latents", "norms", "reconstructions", "samples"] * 2)  # both epochs


def test_wandb_evaluation_resumes_the_training_run(tracked_run):
    run_dir, trackers, result = tracked_run
    needs(trackers, "wandb")
    training, evaluation = wandb_runs(run_dir)  # `wandb sync` uploads both into one run
    assert training["id"] == evaluation["id"] == json.loads((run_dir / "trackers.json").read_text())["wandb"]["id"]
    assert training["summary"]["val_recon"] == pytest.approx(run.read_metrics(run_dir)[-1]["val_recon"])
    scores = evaluation_metrics(result)
    assert {k: evaluation["summary"][k] for k in scores} == pytest.approx(scores)


# ---------------------------------------------------------------- when a tracker cannot be reached

def test_a_tracker_whose_package_is_missing_is_a_one_line_error(mnist_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("avae.callbacks.installed", lambda name: False)
    assert main(["train", "--set", "data.name=mnist", "--set", f"data.root={mnist_root}", "--set", "model.kde_size=100",
                 "--set", "train.wandb=true", "--out", str(tmp_path / "r")]) == 2
    assert "pip install 'avae[wandb]'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_an_evaluation_goes_on_without_a_tracker_package_or_record(tracked_run, tmp_path, monkeypatch, capsys):
    run_dir, trackers, result = tracked_run
    copy = tmp_path / "r"
    shutil.copytree(run_dir, copy)
    cfg, _ = run.read(copy)
    before = sorted(p.name for p in (copy / "tensorboard").iterdir()) if trackers["tensorboard"] else []
    with monkeypatch.context() as patched:
        patched.setattr(callbacks, "installed", lambda name: False)
        callbacks.log_evaluation(copy, cfg, result)
    notes = capsys.readouterr().err.splitlines()
    assert all(note.startswith("note: the evaluation is not logged to ") for note in notes)
    assert sorted(note.split("avae[")[1] for note in notes) == sorted(f"{n}]')" for n in TRACKERS if trackers[n])
    if trackers["tensorboard"]:
        assert sorted(p.name for p in (copy / "tensorboard").iterdir()) == before  # nothing written
    if trackers["mlflow"]:
        (copy / "trackers.json").unlink()  # a run trained before trackers.json recorded its MLflow run
        callbacks.log_evaluation(copy, dataclasses.replace(cfg, train=dataclasses.replace(
            cfg.train, tensorboard=False, wandb=False)), result)
        (note,) = capsys.readouterr().err.splitlines()
        assert note.startswith("note: the evaluation is not logged to MLflow:") and "records no MLflow run" in note
