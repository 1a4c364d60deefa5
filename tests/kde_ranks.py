"""Run under torchrun: each rank refreshes the AVAE's KDE codes and saves what it holds."""
import sys
from pathlib import Path

import numpy as np
import torch

from avae import config, run, trainer
from avae.distributed import from_environment
from avae.data import load_data
from avae.models import seeded_model

out, overrides = Path(sys.argv[1]), sys.argv[2:]
dist = from_environment()
cfg = config.resolve(None, overrides)
data = load_data(cfg)
model = seeded_model(cfg, data)
loop = trainer.Trainer(cfg, out, data, model, dist)
model.on_epoch_start(loop.context, np.random.default_rng([0, 0]).permutation(len(data.train)))
model.refresh_kde_codes(loop.context)
torch.save(model.kde_codes, out / f"kde_codes_rank{dist.rank}_of{dist.world}.pt")
dist.close()
