"""Feature spaces for the Fréchet distance and precision/recall.

- `classifier`: a small CNN that avae trains on the dataset's labels (or on every ground-truth
  factor) from a fixed seed, cached per dataset; its penultimate layer (128-d) is the feature. This
  is what runs offline; numbers in it are comparable only with numbers in the same feature space
  (one per dataset and classifier size, whatever the evaluation's seed).
- `random`: the same CNN untrained, its weights drawn from a fixed seed, for data without labels
  or factors. It responds to low-level statistics (intensity, colour, edges, blur, texture),
  not to what the images show; numbers in it are comparable only between runs on images of one
  size and channel count, with the same avae version.
- `inception`: Inception-v3 pool3 (2048-d), the standard FID space, through the optional
  `torch-fidelity` package and its 2015-12-05 weights (a file path, or its own download when
  online).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..kde_bandwidth import cache_path
from ..data import Dataset, Subset, to_float
from ..errors import AvaeError
from ..hardware import one_thread
from ..atomic import save_file

CLASSIFIER_VERSION = 2  # 2: weights from the seed alone, trained on one thread
FEATURE_DIM = 128


RANDOM_SEED = 0
# the feature nets' memory layout: channels-last convolutions ran faster here (benchmarks/BENCHMARKS.md)
LAYOUT = torch.channels_last


def _targets(images, data: Dataset) -> np.ndarray | None:
    if getattr(images, "labels", None) is not None:
        return np.asarray(images.labels, np.int64).reshape(-1, 1)
    if isinstance(images, Subset):
        targets = _targets(images.base, data)
        return None if targets is None else targets[images.indices]
    if images is data.factor_grid:
        return data.factor_grid.factor_classes(np.arange(len(images)))
    return None


def targets_of(images, data: Dataset) -> np.ndarray:
    """Class targets (n, k) of an image set: its labels, or the factor classes of its images."""
    targets = _targets(images, data)
    if targets is None:
        raise AvaeError(f"dataset '{data.name}' has neither labels nor factors to train a feature classifier on; "
                        "use --features random (needs no labels) or inception")
    return targets


def has_targets(data: Dataset) -> bool:
    """Whether the dataset has labels or factors a feature classifier can learn."""
    return data.factor_grid is not None or _targets(data.train, data) is not None


class FeatureNet(nn.Module):
    """Conv 32-64-128 (stride 2) → dense 128 → one linear head per target column."""

    def __init__(self, channels: int, size: int, classes: list[int]):
        super().__init__()
        layers, c = [], channels
        for out in (32, 64, 128):
            layers += [nn.Conv2d(c, out, 3, 2, 1), nn.BatchNorm2d(out), nn.ReLU()]
            c = out
        side = size
        for _ in range(3):
            side = (side + 1) // 2  # a 3×3 stride-2 convolution with padding 1
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * side * side, FEATURE_DIM), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(FEATURE_DIM, k) for k in classes)

    def forward(self, x):
        f = self.body(x)
        return f, [head(f) for head in self.heads]


def _net_input(images_uint8: torch.Tensor, value_range) -> torch.Tensor:
    return to_float(images_uint8, value_range).contiguous(memory_format=LAYOUT)


class NetFeatures:
    """The body of a FeatureNet as a feature extractor on uint8 images."""

    def __init__(self, net: FeatureNet, value_range):
        self.net, self.value_range = net.eval().to(memory_format=LAYOUT), value_range

    @torch.inference_mode()
    def __call__(self, images_uint8: np.ndarray, batch: int = 256) -> np.ndarray:  # cache-sized calls run faster
        out = []
        for i in range(0, len(images_uint8), batch):
            out.append(self.net(_net_input(torch.as_tensor(images_uint8[i : i + batch]), self.value_range))[0].numpy())
        return np.concatenate(out).astype(np.float64)


class ClassifierFeatures(NetFeatures):
    name = "classifier"

    def __init__(self, net: FeatureNet, value_range, accuracy: list[float], path: Path):
        super().__init__(net, value_range)
        self.accuracy, self.path = accuracy, path

    def describe(self) -> dict:
        return {"name": "classifier", "dim": FEATURE_DIM, "test_accuracy": self.accuracy, "weights": str(self.path),
                "note": "avae's own classifier on the dataset's labels/factors; not comparable with Inception FID"}


class RandomFeatures(NetFeatures):
    """An untrained FeatureNet with He-normal weights drawn from RANDOM_SEED (no labels needed)."""

    name = "random"

    def __init__(self, shape: tuple[int, int, int], value_range):
        with torch.random.fork_rng(devices=[]):  # the default initialisation is overwritten below
            net = FeatureNet(shape[0], shape[1], [])
        gen = torch.Generator().manual_seed(RANDOM_SEED)
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)
                    nn.init.zeros_(m.bias)
        super().__init__(net, value_range)

    def describe(self) -> dict:
        return {"name": "random", "dim": FEATURE_DIM, "seed": RANDOM_SEED,
                "note": "an untrained CNN with fixed random weights (no labels needed): it sees low-level statistics "
                        "(intensity, colour, edges, blur), not content; comparable only between runs on images of "
                        "one size and channel count; not comparable with Inception FID"}


def classifier_features(data: Dataset, seed: int = 0, epochs: int = 3, max_train: int = 10000,
                        progress: bool = True) -> ClassifierFeatures:
    """The cached feature classifier of a dataset, trained on first use."""
    path = classifier_path(data, seed, epochs, max_train)
    train_targets = targets_of(data.train, data)
    net = initial_net(data, train_targets, seed)
    if path.is_file():
        state = torch.load(path, weights_only=True)
        net.load_state_dict(state["weights"])
        return ClassifierFeatures(net, data.value_range, state["accuracy"], path)
    with one_thread():
        _fit(net, data, train_targets, seed, epochs, max_train, progress)
    held_out = data.test if data.test is not None else data.val
    accuracy = _accuracy(net, data, held_out)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(lambda tmp: torch.save({"weights": net.state_dict(), "accuracy": accuracy}, tmp), path)
    return ClassifierFeatures(net, data.value_range, accuracy, path)


def initial_net(data: Dataset, targets: np.ndarray, seed: int) -> FeatureNet:
    """An untrained FeatureNet with one head per target column, its initial weights drawn from
    `seed` alone (not from what ran before in the process)."""
    classes = [int(targets[:, k].max()) + 1 for k in range(targets.shape[1])]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FeatureNet(data.shape[0], data.shape[1], classes)


def classifier_path(data: Dataset, seed: int = 0, epochs: int = 3, max_train: int = 10000) -> Path:
    """Where the classifier of these settings is cached: keyed by everything that shapes its weights."""
    key = hashlib.sha256(json.dumps(
        [CLASSIFIER_VERSION, data.name, data.info, len(data.train), seed, epochs, max_train], sort_keys=True, default=str
    ).encode()).hexdigest()[:16]
    return cache_path().parent / "classifiers" / f"{data.name}-{key}.pt"


def _fit(net, data, targets, seed, epochs, max_train, progress):
    from tqdm import tqdm

    rng = np.random.default_rng([seed, 7])
    pool = rng.choice(len(data.train), min(max_train, len(data.train)), replace=False)
    stored = np.sort(pool)  # the pool's images, read (or rendered) once for all epochs
    images = torch.cat([data.train.images(stored[i : i + 1000]) for i in tqdm(
        range(0, len(stored), 1000), desc="feature classifier images", disable=not progress, leave=False)])
    net.to(memory_format=LAYOUT)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    net.train()
    for epoch in range(epochs):
        order = rng.permutation(pool)
        for i in tqdm(range(0, len(order), 100), desc=f"feature classifier {epoch + 1}/{epochs}", disable=not progress,
                      leave=False):
            idx = np.sort(order[i : i + 100])
            x = _net_input(images[np.searchsorted(stored, idx)], data.value_range)
            y = torch.as_tensor(targets[idx])
            _, logits = net(x)
            loss = sum(loss_fn(out, y[:, k]) for k, out in enumerate(logits))
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()


@torch.inference_mode()
def _accuracy(net, data, images, n: int = 10000) -> list[float]:
    idx = np.arange(min(n, len(images)))
    targets = targets_of(images, data)[idx]
    correct = np.zeros(targets.shape[1])
    for i in range(0, len(idx), 1000):
        _, logits = net(_net_input(images.images(idx[i : i + 1000]), data.value_range))
        for k, out in enumerate(logits):
            correct[k] += (out.argmax(1).numpy() == targets[i : i + 1000, k]).sum()
    return (correct / len(idx)).tolist()


class InceptionFeatures:
    """Inception-v3 pool3 through torch-fidelity (optional dependency)."""

    name = "inception"

    def __init__(self, weights_path: str | None = None):
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError:
            raise AvaeError("the Inception feature space needs torch-fidelity: pip install 'avae[fid]'") from None
        if weights_path is not None and not Path(weights_path).is_file():
            raise AvaeError(f"Inception weights {weights_path} do not exist; give the path of "
                            "weights-inception-2015-12-05-6726825d.pth")
        try:
            self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                   feature_extractor_weights_path=weights_path)
        except Exception as e:  # no network and no weights file
            raise AvaeError(f"could not load Inception weights ({type(e).__name__}); pass --inception-weights PATH") from None
        self.net.eval()
        self.weights_path = weights_path

    @torch.no_grad()
    def __call__(self, images_uint8: np.ndarray, batch: int = 100) -> np.ndarray:
        out = []
        for i in range(0, len(images_uint8), batch):
            x = torch.as_tensor(images_uint8[i : i + batch])
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)  # grayscale is replicated to RGB, as the FID references do
            out.append(self.net(x)[0].double().numpy())
        return np.concatenate(out)

    def describe(self) -> dict:
        return {"name": "inception", "dim": 2048, "weights": self.weights_path or "torch-fidelity download",
                "implementation": "torch-fidelity inception-v3-compat, feature 2048 (pool3)"}
