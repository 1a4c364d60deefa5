"""The configuration: resolved once into a frozen Config whose YAML form reads back to an equal object."""
import dataclasses

import pytest

from avae import config, hardware, trainer
from avae.data import DATASETS, load_data
from avae.models import MODELS, seeded_model


@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_config_yaml_reads_back_to_an_equal_config(dataset, model):
    cfg = config.resolve(None, settings={"data.name": dataset, "model.name": model})
    assert isinstance(cfg.params, MODELS[model].Params)
    assert config.Config.from_dict(config.load_yaml(config.dump(cfg))) == cfg


def test_a_config_cannot_be_changed_in_place():
    cfg = config.resolve(None, ["data.name=mnist"])
    for section, name in ((cfg, "train"), (cfg.train, "lr"), (cfg.model, "latent_dim"), (cfg.params, "kde_size"),
                          (cfg.data, "root")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(section, name, None)


def test_settings_as_values_keep_their_types():
    """Values are not read back through YAML: a string that YAML would read as a number or a mapping stays a string."""
    cfg = config.resolve(None, ["data.name=mnist"], {"data.root": "1e3", "model.encoder": {"class": "m:E", "hidden": 8},
                                                     "train.threads": None, "model.name": "aae"})
    assert cfg.data.root == "1e3" and cfg.model.encoder == {"class": "m:E", "hidden": 8} and cfg.train.threads is None


def test_auto_settings_resolve_into_a_new_config(mnist_root, tmp_path):
    cfg = config.resolve(None, ["data.name=mnist", f"data.root={mnist_root}", "model.latent_dim=4", "model.width=0.125",
                                "model.kde_size=100", "train.batch_size=50", "train.progress=false"])
    before = config.dump(cfg)
    loop = trainer.Trainer(cfg, tmp_path / "r", load_data(cfg), seeded_model(cfg, load_data(cfg)), callbacks=[])
    assert config.dump(cfg) == before and cfg.train.precision == "auto" and cfg.params.kde_batch is None
    assert loop.cfg.train.precision in ("float32", "bfloat16") and loop.cfg.params.kde_batch in hardware.INFERENCE_BATCHES
    assert loop.model.params == loop.cfg.params and loop.settings == loop.cfg.train
