"""`avae evaluate`: score a trained run and write evaluate.json, figures and evaluate.html."""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__, atomic, pages, report, run, schema
from .callbacks import log_evaluation
from .config import EVALUATE_DEFAULTS, check_evaluate_settings
from .data import check_unchanged, load_data, to_float
from .data.given import GivenData
from .errors import AvaeError
from .kde_bandwidth import bandwidth
from .samplers import load_for_run, parse_names, sliced_ks
from .metrics import generative, latent, marginal_likelihood
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

    def __init__(self, run_dir: Path, n: int, seed: int, checkpoint: str, split: str | None, trust_code: bool,
                 given: GivenData | None = None):
        self.run_dir, self.n, self.seed = run.as_path(run_dir, "run_dir"), n, seed
        record = run.read_record(self.run_dir)
        self.cfg, self.spec = record.cfg, record.spec
        self.model = run.open_model(record, trust_code)
        state = run.load_weights(self.model, self.run_dir, checkpoint)
        self.model.eval().requires_grad_(False)
        # how far training got (a run may be scored before it has finished)
        self.trained = {"status": record.status, "epochs_done": state["epoch"],
                        "epochs": self.cfg.train.epochs}
        self.data = load_data(self.cfg, cut=False, given=given)
        check_unchanged(self.data, record.data)
        # the layout the run trained in (`auto` chose it by measuring the run's nets on this kind of CPU)
        self.layout = torch.channels_last if self.cfg.train.channels_last else torch.contiguous_format
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
    def sampler_codes(self, sampler) -> np.ndarray:
        """The N set's codes drawn by `sampler`, seeded as the model's own (for `prior`, the very same)."""
        gen = torch.Generator().manual_seed(self.seed)
        return self._finite(f"the {sampler.name} sampler", "codes", sampler.sample(self.n, gen).double().numpy())

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


D = EVALUATE_DEFAULTS  # each default declared once, in config.EvaluationSettings


def evaluate(run_dir, *, n: int = D.n, seed: int = D.seed, features: str = D.features,
             inception_weights: str | None = D.inception_weights, checkpoint: str = D.checkpoint,
             split: str | None = D.split, disentanglement: str = D.disentanglement,
             entropy_kde_size: int = D.entropy_kde_size, classifier_images: int = D.classifier_images,
             classifier_epochs: int = D.classifier_epochs, samplers: str = D.samplers,
             likelihood_samples: int = D.likelihood_samples, likelihood_images: int = D.likelihood_images,
             progress: bool = D.progress, trust_code: bool = False, data=None, val_data=None) -> dict:
    """Score a run; writes RUN_DIR/evaluate.json, RUN_DIR/evaluation/*.png and evaluate.html.

    `features`: classifier, random, inception, or auto (classifier where the data have labels or
    factors, else random). `samplers`: 'prior' (the model's own), or names separated by commas
    ('prior,gmm,flow'): the samples are scored once per sampler, each fitted beforehand by `avae
    fit-sampler`. `likelihood_samples`: K of the importance-sampled log-likelihood of the first
    `likelihood_images` held-out images, for models with a Gaussian encoder and a prior density (0: not
    computed; avae.metrics.marginal_likelihood). `trust_code`: open a run that names its own network classes.
    `data`, `val_data`: the images of a run trained on Python objects (`avae.train(data=...)`), as given then.
    Until it ends, the evaluation keeps each finished phase in RUN_DIR/evaluation/partial/: one stopped
    by Ctrl-C or an error says so on stderr, and the same call again continues where it stopped.
    """
    given = {"n": n, "seed": seed, "features": features, "inception_weights": inception_weights,
             "checkpoint": checkpoint, "split": split, "disentanglement": disentanglement,
             "entropy_kde_size": entropy_kde_size, "classifier_images": classifier_images,
             "classifier_epochs": classifier_epochs, "samplers": samplers, "likelihood_samples": likelihood_samples,
             "likelihood_images": likelihood_images, "progress": progress}
    check_evaluate_settings(given)
    schema.check_value("trust_code", trust_code, bool, {})
    names = parse_names(samplers)
    ev = Evaluation(run_dir, n, seed, checkpoint, split, trust_code, GivenData(data, val_data) if data is not None else None)
    # every sampler found (and fitted for this checkpoint) before anything is computed or written;
    # the checkpoint file hashed once for all of them
    sha256 = run.checkpoint_sha256(ev.run_dir, checkpoint) if names != ["prior"] else None
    fitted = {name: load_for_run(ev.run_dir, name, ev.model, checkpoint, sha256=sha256) for name in names}
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
    settings = {"features": features, "inception_weights": inception_weights, "entropy_kde_size": entropy_kde_size,
                "classifier_images": classifier_images, "classifier_epochs": classifier_epochs,
                "disentanglement": disentanglement if factors else None,
                "samplers": {name: _sampler_digest(s) for name, s in fitted.items()},
                "likelihood_samples": likelihood_samples, "likelihood_images": min(likelihood_images, ev.n)}
    phases = Phases(ev.run_dir, _phase_key(ev, settings))
    if phases.found and progress:
        print(f"  continuing an interrupted evaluation: {len(phases.found)} finished phases kept in {phases.folder}/",
              flush=True)
    steps = _Steps(phases, progress)
    try:
        result = _scores(ev, steps, checkpoint, settings, fitted)
    except BaseException as error:  # Ctrl-C, or an error: say what is kept and the command that continues
        phases.report_stop(error, _same_command(run_dir, {**given, "trust_code": trust_code}), steps.line_open)
        raise
    run.write_json(ev.run_dir / run.EVALUATION, result)
    pages.write_evaluation_page(ev.run_dir / run.EVALUATION_PAGE, result)
    phases.remove()
    log_evaluation(ev.run_dir, ev.cfg, result)  # to the run's trackers
    return result


def _scores(ev: Evaluation, steps: _Steps, checkpoint: str, settings: dict, fitted: dict) -> dict:
    """Every number and picture of the evaluation: what evaluate.json holds. `fitted`: {name: Sampler}
    whose samples are scored besides the model's own."""
    timed, phase, seed = steps.timed, steps.phase, ev.seed
    rng = np.random.default_rng(seed)
    codes = timed("encode", ev.encode_images, ev.images)
    x = ev.images.astype(np.float64) / 255 * (ev.vr[1] - ev.vr[0]) + ev.vr[0]
    sets = {  # not kept: decoding is quick and deterministic, and INT's pairs are drawn from `rng` every time
        "REC": timed("decode_rec", ev.decode, codes, "reconstructions"),
        "INT": timed("decode_int", ev.decode, slerp_midpoints(codes, rng), "interpolations"),
        "N": timed("sample", ev.samples),
    }
    sets_u8 = {name: report.to_uint8(images, ev.vr) for name, images in sets.items()}

    features = settings["features"]
    if features == "inception":
        extractor = InceptionFeatures(settings["inception_weights"])
    elif features == "random":
        extractor = RandomFeatures(ev.spec.shape, ev.vr)
    else:
        # the classifier's own seed, not the evaluation's: evaluations with any seed share one feature space
        # (cached on disk once trained, so a continued evaluation loads it)
        extractor = timed("feature_classifier", classifier_features, ev.data, epochs=settings["classifier_epochs"],
                          max_train=settings["classifier_images"], progress=steps.progress)
    real_f = phase("features_real", extractor, ev.images)
    others = [name for name, sampler in fitted.items() if sampler.fitted]  # `prior` is the N set itself
    real_balls = None  # the real set's k-NN radii: computed unless every set's k-NN scores are kept
    if not all(steps.kept(f"knn_{name}") for name in [*sets_u8, *(f"N_{s}" for s in others)]):
        real_balls = timed("knn_radii_real", generative.KnnBalls, real_f, 5, "real features")

    def quality(name: str, images: np.ndarray) -> dict:
        f = phase(f"features_{name}", extractor, images)
        return {
            "frechet_distance": phase(f"fd_{name}", generative.frechet_distance, f, real_f),
            "prd": phase(f"prd_{name}", _prd, f, real_f, seed),
            **phase(f"knn_{name}", generative.manifold_scores, real_balls, f, k_precision_recall=3, k_density=5),
        }

    sample_quality = {name: quality(name, images) for name, images in sets_u8.items()}
    by_sampler = _by_sampler(ev, steps, fitted, codes, quality, sample_quality["N"])
    result = {
        "run": str(ev.run_dir), "model": ev.model.name, "dataset": ev.data.name, "checkpoint": checkpoint,
        "split": ev.split, "n": ev.n, "seed": seed, "feature_space": extractor.describe(),
        "sampler": ev.model.sampler, "sample_quality": sample_quality,
        "latent_quality": _latent_quality(ev, steps, codes, x, sets["REC"], settings["entropy_kde_size"]),
        "likelihood": _likelihood(ev, steps, settings["likelihood_samples"], settings["likelihood_images"]),
        "trained": ev.trained, "avae": __version__, "torch": torch.__version__,
    }
    if list(by_sampler) != ["prior"]:  # side by side only when asked for more than the default
        result["samplers"] = by_sampler
    directions = None
    if settings["disentanglement"]:
        result["factors"] = list(ev.data.factor_grid.factor_names)
        result["disentanglement"], directions = timed("disentanglement", _disentanglement, ev,
                                                      settings["disentanglement"], steps, talks=steps.progress)
    result["timings_s"] = steps.timings
    folder = run.subfolder(ev.run_dir, run.EVALUATION_FOLDER)
    atomic.remove_stale_temporaries(ev.run_dir, folder)
    figures = _figures(ev, codes, sets_u8, folder, directions)
    result["figures"] = {path.stem: {"title": title, **pages.picture(path, ev.run_dir)}
                         for title, path in figures.items()}
    return result


def _by_sampler(ev: Evaluation, steps: _Steps, fitted: dict, codes: np.ndarray, quality, own: dict) -> dict:
    """{sampler: its N set's scores (`quality`), its fit to the held-out codes, its own fit report};
    `prior`'s N set is the model's own, scored already (`own`)."""
    by_sampler = {}
    for name, sampler in fitted.items():
        z = steps.timed(f"sample_{name}", ev.sampler_codes, sampler)
        scores = (quality(f"N_{name}", report.to_uint8(ev.decode(z, f"samples of the {name} sampler"), ev.vr))
                  if sampler.fitted else own)
        by_sampler[name] = {"description": sampler.description, "sample_quality": scores,
                            "latent_fit": _latent_fit(sampler, codes, z, ev.seed),
                            "fit": sampler.report.as_dict() if sampler.report else None}
    return by_sampler


def _latent_quality(ev: Evaluation, steps: _Steps, codes: np.ndarray, x: np.ndarray, reconstructions: np.ndarray,
                    entropy_kde_size: int) -> dict:
    """The codes' entropy, their fit to the distribution generation samples from (the target) and
    to N(0, I), collapsed axes, and the reconstruction errors."""
    phase, seed = steps.phase, ev.seed
    mean, cov = (t.numpy() for t in ev.model.sampling_distribution)
    h_entropy = bandwidth(ev.model.latent_dim, entropy_kde_size).h
    entropy = phase("entropy", latent.whitened_entropy, codes, h_entropy)
    entropy["gaussian_reference"] = phase("entropy_reference", latent.gaussian_entropy_reference,
                                          ev.model.latent_dim, len(codes), h_entropy, seed)
    return {
        "entropy": entropy | {"kde_size_for_h": entropy_kde_size},
        "sampling_distribution": ev.model.sampler,
        "gaussian_kl_to_prior": phase("gaussian_kl", latent.gaussian_kl, codes, 1.0),
        "gaussian_kl_to_sampling_distribution": latent.gaussian_kl(codes, cov, mean),
        "sampling_variance": ev.model.latent_variance,
        "norm_chi2_test": phase("chi2", latent.norm_chi2_test, codes, cov, mean),
        "norm_chi2_test_prior": latent.norm_chi2_test(codes, 1.0),
        "collapsed_axes": latent.collapsed_axes(codes),
        "reconstruction": latent.reconstruction_errors(x, reconstructions),
    }


class _Steps:
    """The steps of one evaluation: each named while it runs (with `progress`) and timed; a phase's
    result is also kept in the phase store, or taken from it where an earlier evaluation finished it."""

    def __init__(self, phases: Phases, progress: bool):
        self.phases, self.progress = phases, progress
        self.timings: dict[str, float] = {}
        self.depth = 1  # indentation of the progress lines: the steps inside a step are indented further
        self.line_open = False  # a step's name is printed and its seconds are not yet

    def timed(self, name, fn, *args, talks=None, **kwargs):
        """fn(*args, **kwargs), its name shown while it runs and its seconds after. The lines of a step
        that `talks` (by default one called with progress=True) follow on lines of their own."""
        talks = kwargs.get("progress", False) if talks is None else talks
        indent = "  " * self.depth
        if self.progress:
            print(f"{indent}{name} ...", end="\n" if talks else "", flush=True)
            self.line_open = not talks
        start = time.perf_counter()
        self.depth += 1
        try:
            out = fn(*args, **kwargs)
        finally:
            self.depth -= 1
        self.timings[name] = time.perf_counter() - start
        if self.progress:
            seconds = f"{self.timings[name]:.1f} s"
            print(f"{indent}{name}: {seconds}" if talks else f" {seconds}", flush=True)
            self.line_open = False
        return out

    def kept(self, name: str) -> bool:
        return self.phases.get(name) is not None

    def phase(self, name, fn, *args, **kwargs):
        """`timed`, its result kept (an array as .npy, anything else as JSON); a phase already kept is read
        back instead. A JSON value is returned as read back either way, so a continued evaluation computes
        with exactly what an uninterrupted one does."""
        kept = self.phases.get(name)
        if kept is not None:
            value, self.timings[name] = kept  # with the seconds it took when it ran
            if self.progress:
                print(f"{'  ' * self.depth}{name}: kept from an interrupted evaluation", flush=True)
            return value
        value = self.timed(name, fn, *args, **kwargs)
        if not isinstance(value, np.ndarray):
            value = json.loads(json.dumps(value))
        self.phases.save(name, value, self.timings[name])
        return value


PARTIAL = "partial"  # RUN_DIR/evaluation/partial/KEY/: the finished phases of an evaluation in progress


class Phases:
    """The finished phases of an evaluation in progress, kept until it ends so that one stopped by
    Ctrl-C or an error continues where it stopped.

    They live in RUN_DIR/evaluation/partial/KEY/, KEY a digest of everything that determines the
    numbers (`_phase_key`, also written there as key.json): NAME.json holds a phase's value and seconds;
    an array's value is NAME.npy, written before it (float32 where that holds the float64 values
    exactly, as features do). Every file is written atomically, so a phase is whole or absent; one
    that cannot be read back is computed again. Phases kept under another key are never read: the
    first phase this evaluation finishes replaces them. The finished evaluation removes the folder. A
    phase that cannot be written (a full disk) is not kept, and the evaluation goes on."""

    def __init__(self, run_dir: Path, key: dict):
        self.key = json.loads(json.dumps(key, default=str))  # as key.json holds it
        self.run_dir, self.parent = run_dir, run_dir / run.EVALUATION_FOLDER / PARTIAL
        self.folder = self.parent / hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:16]
        for path in (self.parent.parent, self.parent, self.folder):
            if path.is_symlink():
                raise AvaeError(f"{path} is a symbolic link; {atomic.LINK_ADVICE}")
        self.writable = True
        self.found: list[str] = []  # the phases that a stopped evaluation with this key kept
        self.done: list[str] = []  # the phases of this evaluation finished so far (run, or read back)
        self._read: dict[str, tuple | None] = {}
        self.stale = [p for p in self.parent.iterdir() if p.name != self.folder.name] if self.parent.is_dir() else []
        if self.folder.is_dir() and self._key(self.folder) == self.key:
            atomic.remove_stale_temporaries(self.folder)
            self.found = sorted(p.stem for p in self.folder.glob("*.json") if p.name != "key.json")
        elif self.folder.is_dir():
            self.stale.append(self.folder)  # its key.json is damaged: never read
        if self.stale:
            print(f"note: {self.parent}/ holds the phases of an interrupted evaluation with other settings "
                  f"({self._difference()}); this evaluation replaces them", file=sys.stderr)

    def get(self, name: str) -> tuple | None:
        """(value, seconds) of a kept phase, or None."""
        if name not in self._read:
            self._read[name] = self._load(name) if name in self.found else None
            if self._read[name] is not None:
                self.done.append(name)
        return self._read[name]

    def _load(self, name: str) -> tuple | None:
        path = self.folder / f"{name}.json"
        try:
            if path.is_symlink():
                return None
            record = json.loads(path.read_text())
            value = record["value"]
            if record.get("array"):
                array = self.folder / f"{name}.npy"
                value = None if array.is_symlink() else np.load(array, allow_pickle=False).astype(record["array"])
            seconds = float(record["seconds"])
        except Exception:  # noqa: BLE001 -- a phase that cannot be read back, whatever the damage, is run again
            return None
        return None if value is None else (value, seconds)

    def save(self, name: str, value, seconds: float) -> None:
        for path in self.stale:  # this evaluation's first phase replaces the phases kept with other settings
            _remove(path)
        self.stale = []
        if not self.writable:
            return
        try:
            folder = run.subfolder(run.subfolder(run.subfolder(self.run_dir, run.EVALUATION_FOLDER), PARTIAL), self.folder.name)
            if not (folder / "key.json").is_file():
                run.write_json(folder / "key.json", self.key)
            record = {"seconds": seconds, "value": value}
            if isinstance(value, np.ndarray):
                with np.errstate(over="ignore"):  # a value beyond float32's range: kept as float64
                    narrow = value.astype(np.float32) if value.dtype == np.float64 else value
                stored = narrow if np.array_equal(narrow.astype(value.dtype), value) else value
                atomic.save_file(lambda tmp: np.save(tmp, stored, allow_pickle=False), folder / f"{name}.npy")
                record = {"seconds": seconds, "value": True, "array": value.dtype.str}
            run.write_json(folder / f"{name}.json", record)
        except OSError as e:
            self.writable = False
            print(f"note: the finished phases of this evaluation cannot be kept in {self.folder}/ ({e.strerror or e}); "
                  "it goes on without keeping them", file=sys.stderr)
            return
        self.done.append(name)

    def remove(self) -> None:
        """The evaluation has finished: none of its phases is kept any longer."""
        _remove(self.parent)

    def report_stop(self, error: BaseException, command: str, line_open: bool) -> None:
        """One line on stderr: what is kept, and the command that continues."""
        kept = self.done + [name for name in self.found if name not in self.done]
        if isinstance(error, KeyboardInterrupt):
            what, then = "interrupted", ""
        elif kept:
            what, then = f"stopped by an error ({type(error).__name__})", "once it is fixed, "
        else:
            return  # the error's own message says it all
        if kept:
            advice = (f"its {len(kept)} finished phases ({_listed(kept)}) are kept in {self.folder}/ and "
                      f"{then}`{command}` continues from them")
        else:
            advice = f"no phase had finished; `{command}` starts it again"
        print(f"{chr(10) if line_open else ''}avae evaluate: {what}; evaluate.json was not written; {advice}",
              file=sys.stderr, flush=True)

    def _key(self, folder: Path) -> dict | None:
        path = folder / "key.json"
        try:
            return None if path.is_symlink() else json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def _difference(self) -> str:
        """The settings in which the stale phases differ from this evaluation's, e.g. 'seed 1, not 2'."""
        for folder in self.stale:
            old = self._key(folder)
            if isinstance(old, dict):
                differ = [k for k in self.key if old.get(k) != self.key[k]]
                short = [k for k in differ if len(repr(old.get(k)) + repr(self.key[k])) < 40]  # shown with values
                return ", ".join(f"{k} {old.get(k)}, not {self.key[k]}" if k in short else k for k in differ) \
                    or "another version"
        return "settings unknown"


def _listed(names: list[str]) -> str:
    """Phase names for a person: 'features (real, REC), fd (REC), entropy, disentanglement (mig)'."""
    groups: dict[str, list[str]] = {}
    for name in names:
        head, _, tail = name.partition("_")
        grouped = head in ("features", "fd", "prd", "knn", "disentanglement")
        groups.setdefault(head if grouped else name, []).extend([tail] if grouped else [])
    return ", ".join(f"{head} ({', '.join(tails)})" if tails else head for head, tails in groups.items())


def _remove(path: Path) -> None:
    """Delete a file or folder of the phase store; a link is removed, never followed."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _phase_key(ev: Evaluation, settings: dict) -> dict:
    """Everything that determines an evaluation's numbers, so that phases kept under another key are
    never used: the weights loaded, the model's and data's settings, split, n, seed, feature space,
    metric sizes and the versions that compute them."""
    from importlib.metadata import PackageNotFoundError, version

    sections = ev.cfg.to_dict()
    key = {"weights": _weights_digest(ev.model.state_dict()), "model": sections["model"], "data": sections["data"],
           "data_info": ev.data.info, "split": ev.split, "n": ev.n, "seed": ev.seed, **settings}
    weights = settings["inception_weights"]
    if settings["features"] != "inception":
        key["inception_weights"] = None
    elif weights is not None and Path(weights).is_file():
        stat = Path(weights).stat()
        key["inception_weights"] = [str(Path(weights).resolve()), stat.st_size, stat.st_mtime_ns]
    if settings["disentanglement"]:
        from .metrics.disentangle import PRESETS

        key["disentanglement_sizes"] = PRESETS[settings["disentanglement"]]
    versions = {"avae": __version__, "torch": torch.__version__, "numpy": np.__version__}
    for package in ("scipy", "scikit-learn"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return key | {"versions": versions}


def _weights_digest(state_dict: dict) -> str:
    """SHA-256 of the weights a model holds (each tensor's name, dtype, shape and bytes): what its
    evaluation is keyed by, whatever happens to the checkpoint file after it was read."""
    digest = hashlib.sha256()
    for name, value in state_dict.items():
        digest.update(name.encode())
        if torch.is_tensor(value):
            t = value.detach().cpu().contiguous()
            digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


def _same_command(run_dir, given: dict) -> str:
    """The command that evaluates again with these settings: `avae evaluate` with its flags, or the
    Python call where a setting has no flag."""
    defaults = {name: p.default for name, p in inspect.signature(evaluate).parameters.items()
                if p.default is not inspect.Parameter.empty}
    changed = {k: v for k, v in given.items() if k != "progress" and v != defaults[k]}
    flags = {"n": "-n", "seed": "--seed", "features": "--features", "inception_weights": "--inception-weights",
             "checkpoint": "--checkpoint", "split": "--split", "disentanglement": "--disentanglement",
             "samplers": "--samplers", "likelihood_samples": "--likelihood-samples",
             "likelihood_images": "--likelihood-images", "trust_code": "--trust-code"}
    if set(changed) <= set(flags):
        words = ["avae", "evaluate", shlex.quote(str(run_dir))]
        for k, v in changed.items():
            words += [flags[k]] if v is True else [flags[k], shlex.quote(str(v))]
        return " ".join(words)
    return "avae.evaluate(" + ", ".join([repr(str(run_dir))] + [f"{k}={v!r}" for k, v in changed.items()]) + ")"


def _likelihood(ev: Evaluation, steps: _Steps, samples: int, images: int) -> dict:
    """The importance-sampled negative log-likelihood of the first `images` held-out images (a phase of
    its own), or {"absent": why} where it is not computed or not defined."""
    if samples == 0:
        return {"absent": "not computed: likelihood_samples is 0 (--likelihood-samples 0)"}
    held_out = ev.images[:images]
    why = marginal_likelihood.absent_reason(ev.model, held_out)
    if why is not None:
        return {"absent": why}
    return steps.phase("likelihood", marginal_likelihood.estimate, ev.model, held_out, samples, ev.seed,
                       layout=ev.layout, progress=steps.progress)


def _latent_fit(sampler, codes: np.ndarray, samples: np.ndarray, seed: int) -> dict:
    """How well a sampler's distribution fits the held-out codes: their mean log density per
    dimension (nats; where the sampler has a density) and the sliced KS distance of its samples."""
    log_density = None
    if sampler.has_density:
        log_density = float(sampler.log_prob(torch.as_tensor(codes)).mean()) / codes.shape[1]
    return {"log_likelihood_per_dim": log_density,
            "sliced_ks": sliced_ks(samples, codes, np.random.default_rng([seed, 23]))}


def _sampler_digest(sampler) -> str:
    """What identifies a sampler's fit in the phase key: its settings and fitted state."""
    return _weights_digest({"settings": sampler.settings, **sampler.state_dict()})


def _prd(features: np.ndarray, real: np.ndarray, seed: int) -> dict:
    """PRD without its curves (the numbers evaluate.json keeps)."""
    return _without_curves(generative.prd(features, real, seed=seed))


def _without_curves(prd_result: dict) -> dict:
    return {k: v for k, v in prd_result.items() if not k.startswith("curve_")}


def _disentanglement(ev: Evaluation, preset: str, steps: _Steps):
    """The disentanglement metrics, each one a phase of its own."""
    from .metrics import disentangle

    def represent(images_uint8):
        return ev.encode_images(np.asarray(images_uint8))

    return disentangle.scores_with_directions(
        ev.data.factor_grid, represent, seed=ev.seed, preset=preset,
        run_metric=lambda name, compute: steps.phase(f"disentanglement_{name}", compute))


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

