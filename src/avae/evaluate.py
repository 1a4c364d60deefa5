"""`avae evaluate`: score a trained run and write evaluate.json, figures and evaluate.html."""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__, _callable_module, pages, report, run, schema
from .bandwidth import bandwidth
from .config import TrainConfig, check_evaluate_settings
from .data import check_unchanged, to_float
from .errors import AvaeError
from .metrics import generative, latent
from .metrics.features import InceptionFeatures, RandomFeatures, classifier_features, has_targets


SPLIT_NAMES = {"val": "validation", "test": "test", "train": "training"}


def slerp_midpoints(z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Spherical midpoints of random pairs of codes (the paper's INT set)."""
    a, b = z[rng.integers(0, len(z), len(z))], z[rng.integers(0, len(z), len(z))]
    return slerp(a, b, 0.5)


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    na, nb = np.linalg.norm(a, axis=1, keepdims=True), np.linalg.norm(b, axis=1, keepdims=True)
    cos = np.clip((a * b).sum(1, keepdims=True) / np.maximum(na * nb, 1e-12), -1, 1)
    omega = np.arccos(cos)
    so = np.sin(omega)
    linear = so < 1e-6  # (anti)parallel codes: fall back to linear interpolation
    wa = np.where(linear, 1 - t, np.sin((1 - t) * omega) / np.where(linear, 1, so))
    wb = np.where(linear, t, np.sin(t * omega) / np.where(linear, 1, so))
    return wa * a + wb * b


class Evaluation:
    """Everything needed to score one run: model, data, held-out images, feature space."""

    def __init__(self, run_dir: Path, n: int, seed: int, checkpoint: str, split: str | None, trust_code: bool):
        self.run_dir, self.n, self.seed = run.as_path(run_dir, "run_dir"), n, seed
        self.cfg, self.spec = run.read(self.run_dir)
        self.model = run.open_model(self.run_dir, trust_code)
        state = run.load_weights(self.model, self.run_dir, checkpoint)
        self.model.eval().requires_grad_(False)
        # how far training got (a run may be scored before it has finished)
        self.trained = {"status": run.status(self.run_dir), "epochs_done": state["epoch"],
                        "epochs": self.cfg["train"].get("epochs", TrainConfig.epochs)}
        self.data = run.load_data(self.cfg, cut=False)
        check_unchanged(self.data, run.recorded_data(self.run_dir))
        # the layout the run trained in (`auto` chose it by measuring the run's nets on this kind of CPU)
        self.layout = torch.channels_last if self.cfg["train"].get("channels_last") else torch.contiguous_format
        self.model.to(memory_format=self.layout)
        self.split = split or ("test" if self.data.test is not None else "val")
        held_out = getattr(self.data, self.split, None)
        if held_out is None:
            raise AvaeError(f"dataset '{self.data.name}' has no {self.split} split; use --split val")
        self.n = min(n, len(held_out))
        if self.n < 10:
            raise AvaeError(f"the {self.split} split holds {self.n} images; evaluation needs at least 10 "
                            "(add images or give a larger test set)")
        if self.n <= self.model.latent_dim:
            raise AvaeError(f"evaluating with {self.n} held-out images: the Gaussian fit of {self.model.latent_dim}-dimensional "
                            f"codes needs more than {self.model.latent_dim}; raise -n")
        self.images = held_out.images(np.arange(self.n)).numpy()
        self.vr = self.spec.value_range

    @torch.inference_mode()
    def encode_images(self, images_uint8: np.ndarray) -> np.ndarray:
        return self._finite("the encoder", "codes of held-out images", np.concatenate([
            self.model.encode(to_float(torch.as_tensor(images_uint8[i : i + 500]), self.vr)
                              .contiguous(memory_format=self.layout)).double().numpy()
            for i in range(0, len(images_uint8), 500)
        ]))

    @torch.inference_mode()
    def decode(self, z: np.ndarray, what: str = "images") -> np.ndarray:
        """Float images in the data's value range."""
        return self._finite("the decoder", what, np.concatenate([
            self.model.decode(torch.as_tensor(z[i : i + 500], dtype=torch.float32)).double().numpy()
            for i in range(0, len(z), 500)
        ]))

    @torch.inference_mode()
    def samples(self) -> np.ndarray:
        gen = torch.Generator().manual_seed(self.seed)
        z = self._finite("the sampler", "codes", self.model.sample_latent(self.n, gen).double().numpy())
        return self.decode(z, "samples")

    def _finite(self, part: str, what: str, values: np.ndarray) -> np.ndarray:
        """A model that outputs NaN gets an error naming the part, not a score."""
        bad = int(values.size - np.isfinite(values).sum())
        if bad:
            raise AvaeError(f"{part} of {self.run_dir} produced {bad} non-finite values (NaN or inf) in its {what}; "
                            "the model cannot be scored (retrain it, e.g. with a lower train.lr)")
        return values


def evaluate(run_dir, *, n: int = 10000, seed: int = 0, features: str = "auto", inception_weights=None,
             checkpoint: str = "last", split: str | None = None, disentanglement: str = "fast",
             entropy_kde_size: int = 10000, classifier_images: int = 10000, classifier_epochs: int = 3,
             progress: bool = True, trust_code: bool = False) -> dict:
    """Score a run; writes RUN_DIR/evaluate.json, RUN_DIR/evaluation/*.png and evaluate.html.

    `features`: classifier, random, inception, or auto (classifier where the data have labels or
    factors, else random). `trust_code`: open a run that names its own network classes.
    """
    check_evaluate_settings({"n": n, "seed": seed, "features": features, "inception_weights": inception_weights,
                             "checkpoint": checkpoint, "split": split, "disentanglement": disentanglement,
                             "entropy_kde_size": entropy_kde_size, "classifier_images": classifier_images,
                             "classifier_epochs": classifier_epochs, "progress": progress})
    schema.check_value("trust_code", trust_code, bool, {})
    ev = Evaluation(run_dir, n, seed, checkpoint, split, trust_code)
    trained = ev.trained
    if trained["status"] != "finished":
        print(f"note: {ev.run_dir} has not finished training ({trained['status']}, {trained['epochs_done']} of "
              f"{trained['epochs']} epochs in checkpoints/{checkpoint}.pt); scoring that checkpoint", file=sys.stderr)
    if features == "auto":
        features = "classifier" if has_targets(ev.data) else "random"
    factors = ev.data.factor_grid is not None and disentanglement != "none"
    if progress:
        print(f"avae evaluate {ev.run_dir} ({checkpoint} checkpoint): {ev.n} {SPLIT_NAMES[ev.split]} images; "
              f"sample quality of reconstructions, interpolations and samples in the {features} feature space, "
              f"latent quality" + (f", disentanglement ({disentanglement})" if factors else ""), flush=True)
    timings: dict[str, float] = {}

    def timed(name, fn, *args, **kwargs):
        """fn(*args, **kwargs), its name shown while it runs and its seconds after."""
        talks = kwargs.get("progress", False)  # its own progress lines follow on lines of their own
        if progress:
            print(f"  {name} ...", end="\n" if talks else "", flush=True)
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        timings[name] = time.perf_counter() - start
        if progress:
            print(f"  {name}: {timings[name]:.1f} s" if talks else f" {timings[name]:.1f} s", flush=True)
        return out

    rng = np.random.default_rng(seed)
    codes = timed("encode", ev.encode_images, ev.images)
    x = ev.images.astype(np.float64) / 255 * (ev.vr[1] - ev.vr[0]) + ev.vr[0]
    sets = {
        "REC": timed("decode_rec", ev.decode, codes, "reconstructions"),
        "INT": timed("decode_int", ev.decode, slerp_midpoints(codes, rng), "interpolations"),
        "N": timed("sample", ev.samples),
    }
    sets_u8 = {name: report.to_uint8(images, ev.vr) for name, images in sets.items()}

    if features == "inception":
        extractor = InceptionFeatures(inception_weights)
    elif features == "random":
        extractor = RandomFeatures(ev.spec.shape, ev.vr)
    else:
        # the classifier's own seed, not the evaluation's: evaluations with any seed share one feature space
        extractor = timed("feature_classifier", classifier_features, ev.data, epochs=classifier_epochs,
                          max_train=classifier_images, progress=progress)
    real_f = timed("features_real", extractor, ev.images)
    real_balls = timed("knn_radii_real", generative.KnnBalls, real_f, 5, "real features")
    sample_quality = {}
    for name, images in sets_u8.items():
        f = timed(f"features_{name}", extractor, images)
        sample_quality[name] = {
            "frechet_distance": timed(f"fd_{name}", generative.frechet_distance, f, real_f),
            "prd": _without_curves(timed(f"prd_{name}", generative.prd, f, real_f, seed=seed)),
            **timed(f"knn_{name}", generative.manifold_scores, real_balls, f, k_precision_recall=3, k_density=5),
        }

    mean, cov = (t.numpy() for t in ev.model.sampling_distribution)
    h_entropy = bandwidth(ev.model.latent_dim, entropy_kde_size).h
    entropy = timed("entropy", latent.whitened_entropy, codes, h_entropy)
    entropy["gaussian_reference"] = timed("entropy_reference", latent.gaussian_entropy_reference,
                                          ev.model.latent_dim, len(codes), h_entropy, seed)
    latent_quality = {
        "entropy": entropy | {"kde_size_for_h": entropy_kde_size},
        # the distribution generation samples from is the target of the fit; N(0, I) beside it
        "sampling_distribution": ev.model.sampler,
        "gaussian_kl_to_prior": timed("gaussian_kl", latent.gaussian_kl, codes, 1.0),
        "gaussian_kl_to_sampling_distribution": latent.gaussian_kl(codes, cov, mean),
        "sampling_variance": ev.model.latent_variance,
        "norm_chi2_test": timed("chi2", latent.norm_chi2_test, codes, cov, mean),
        "norm_chi2_test_prior": latent.norm_chi2_test(codes, 1.0),
        "collapsed_axes": latent.collapsed_axes(codes),
        "reconstruction": latent.reconstruction_errors(x, sets["REC"]),
    }

    result = {
        "run": str(ev.run_dir), "model": ev.model.name, "dataset": ev.data.name, "checkpoint": checkpoint,
        "split": ev.split, "n": ev.n, "seed": seed, "feature_space": extractor.describe(),
        "sampler": ev.model.sampler, "sample_quality": sample_quality, "latent_quality": latent_quality,
        "trained": trained, "avae": __version__, "torch": torch.__version__,
    }
    directions = None
    if factors:
        result["factors"] = list(ev.data.factor_grid.factor_names)
        result["disentanglement"], directions = timed("disentanglement", _disentanglement, ev, disentanglement,
                                                      progress)
    result["timings_s"] = timings
    folder = run.subfolder(ev.run_dir, "evaluation")
    run.remove_stale_temporaries(ev.run_dir, folder)
    figures = _figures(ev, codes, sets_u8, folder, directions)
    result["figures"] = {path.stem: {"title": title, **pages.picture(path, ev.run_dir)}
                         for title, path in figures.items()}
    run.write_json(ev.run_dir / "evaluate.json", result)
    pages.write_evaluation_page(ev.run_dir / "evaluate.html", result)
    return result


def _without_curves(prd_result: dict) -> dict:
    return {k: v for k, v in prd_result.items() if not k.startswith("curve_")}


def _disentanglement(ev: Evaluation, preset: str, progress: bool):
    from .metrics import disentangle

    def represent(images_uint8):
        return ev.encode_images(np.asarray(images_uint8))

    return disentangle.scores_with_directions(ev.data.factor_grid, represent, seed=ev.seed, preset=preset, progress=progress)


def _figures(ev: Evaluation, codes, sets_u8, folder: Path, directions) -> dict:
    """Sample, reconstruction, latent, interpolation and traversal pictures; returns {title: path}."""
    split = SPLIT_NAMES.get(ev.split, ev.split)
    figs = {"Samples": folder / "samples.png",
            f"Reconstructions of {split} images": folder / "reconstructions.png"}
    report.save_samples(figs["Samples"], sets_u8["N"][:64], ev.model.sampler)
    report.save_reconstructions(figs[f"Reconstructions of {split} images"], ev.images[:24], sets_u8["REC"][:24], split)
    figs |= report.save_latent_figures(folder, codes, ev.model.latent_variance, split)

    def decoded(z):
        return report.to_uint8(ev.decode(z), ev.vr)

    rng = np.random.default_rng(ev.seed + 1)
    a, b = codes[rng.integers(0, len(codes), 8)], codes[rng.integers(0, len(codes), 8)]
    t = np.linspace(0, 1, 10)
    path = np.concatenate([slerp(a[i : i + 1], b[i : i + 1], s) for i in range(8) for s in t])
    figs["Spherical interpolations"] = folder / "interpolations.png"
    report.save_traversals(figs["Spherical interpolations"], decoded(path),
                           f"Spherical interpolations between pairs of {split} codes",
                           [f"pair {i + 1}" for i in range(8)], t, "fraction of the way along the great circle")
    std = math.sqrt(ev.model.latent_variance)
    values = np.linspace(-2 * std, 2 * std, 9)
    along = f"code value along the row's direction (±2 × the sampling std {std:.3g} of a code axis)"
    figs["Traversals along the latent axes"] = folder / "traversal_axes.png"
    report.save_traversals(figs["Traversals along the latent axes"], decoded(_traverse(np.eye(codes.shape[1]), values)),
                           "Traversals along the latent axes, through the origin",
                           [f"z{i}" for i in range(codes.shape[1])], values, along)
    if directions is not None:
        figs["Traversals along the PCA factor directions"] = folder / "traversal_directions.png"
        report.save_traversals(figs["Traversals along the PCA factor directions"],
                               decoded(_traverse(np.asarray(directions), values)),
                               "Traversals along the PCA-found direction of each factor",
                               list(ev.data.factor_grid.factor_names), values, along)
    return figs


def _traverse(directions: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Codes at `values` along each direction (one row per direction), through the origin."""
    return np.concatenate([values[:, None] * d[None, :] for d in directions])


_callable_module(__name__, evaluate)  # avae.evaluate(run_dir, ...)
