"""Sample-quality metrics on feature vectors: Fréchet distance, PRD, k-NN precision/recall,
density and coverage. Pure functions of arrays (and a seed where the method is random)."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import AvaeError
from .inputs import finite, points


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (ddof = 1), float64."""
    f = points(features, "features")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance_from_stats(mu1, cov1, mu2, cov2) -> float:
    """‖μ₁−μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^{1/2}).

    Tr (Σ₁Σ₂)^{1/2} is the sum of square roots of the eigenvalues of Σ₁Σ₂ (real and ≥ 0 for
    covariance matrices up to rounding), which avoids an explicit matrix square root.
    """
    mu1, cov1, mu2, cov2 = (finite(np.asarray(a, np.float64), "Fréchet statistics") for a in (mu1, cov1, mu2, cov2))
    eig = np.linalg.eigvals(cov1 @ cov2)
    tr_sqrt = np.sqrt(np.clip(eig.real, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_sqrt)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    return frechet_distance_from_stats(*gaussian_stats(features_a), *gaussian_stats(features_b))


# --- PRD (Sajjadi et al. 2018) -------------------------------------------------------------
def prd(eval_features, ref_features, *, seed: int, num_clusters: int = 20, num_angles: int = 1001,
        num_runs: int = 10, beta: float = 8.0) -> dict:
    """PRD curves averaged over `num_runs` k-means clusterings of the union of both sets.

    Returns the paper's summary: precision = max F_{1/β}, recall = max F_β (β = 8), and the
    averaged curves. The sets must have equal sizes (the reference protocol enforces balance).
    """
    from sklearn.cluster import MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    a, b = points(eval_features, "evaluated features"), points(ref_features, "reference features")
    if len(a) != len(b) or a.shape[1] != b.shape[1]:
        raise AvaeError(f"PRD needs equal set sizes and dimensions, got {a.shape} and {b.shape}")
    if len(a) + len(b) < num_clusters:
        raise AvaeError(f"PRD needs at least {num_clusters} points (num_clusters) in the two sets, got {len(a) + len(b)}")
    data = np.vstack([a, b])
    precisions, recalls = [], []
    for state in run_seeds(seed, num_runs):
        # One OpenMP thread: on a busy 2-core machine more threads made 20,000 points 24x slower
        with threadpool_limits(1):
            labels = MiniBatchKMeans(n_clusters=num_clusters, n_init=10, random_state=state).fit(data).labels_
        p_eval = np.bincount(labels[: len(a)], minlength=num_clusters) / len(a)
        p_ref = np.bincount(labels[len(a) :], minlength=num_clusters) / len(b)
        precision, recall = prd_curve(p_eval, p_ref, num_angles)
        precisions.append(precision)
        recalls.append(recall)
    precision, recall = np.mean(precisions, 0), np.mean(recalls, 0)
    return {
        "precision": max_f_beta(precision, recall, 1 / beta),
        "recall": max_f_beta(precision, recall, beta),
        "curve_precision": precision.tolist(),
        "curve_recall": recall.tolist(),
        "params": {"num_clusters": num_clusters, "num_angles": num_angles, "num_runs": num_runs, "beta": beta,
                   "seed": seed, "clustering": "MiniBatchKMeans(n_init=10) on the union",
                   "run_seeds": "SeedSequence(seed, spawn_key=(run,))"},
    }


def run_seeds(seed: int, num_runs: int) -> list[int]:
    """One clustering seed per run, each from its own (seed, run) stream: no two seeds share a run."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise AvaeError(f"seed must be a non-negative integer, got {seed!r}")
    return [int(np.random.SeedSequence(int(seed), spawn_key=(run,)).generate_state(1)[0]) for run in range(num_runs)]


def prd_curve(p_eval: np.ndarray, p_ref: np.ndarray, num_angles: int = 1001, epsilon: float = 1e-10):
    """precision(λ) = Σ min(λ p_ref, p_eval), recall(λ) = precision(λ)/λ, λ = tan θ on (0, π/2)."""
    slopes = np.tan(np.linspace(epsilon, np.pi / 2 - epsilon, num_angles))
    precision = np.minimum(p_ref[None, :] * slopes[:, None], p_eval[None, :]).sum(1)
    recall = precision / slopes
    return np.clip(precision, 0, 1), np.clip(recall, 0, 1)


def max_f_beta(precision, recall, beta: float) -> float:
    f = (1 + beta**2) * precision * recall / (beta**2 * precision + recall + 1e-10)
    return float(f.max())


# --- k-NN manifolds (Kynkäänniemi et al. 2019; Naeem et al. 2020) --------------------------------
CHUNK = 2048  # rows of a distance matrix held at once


def _chunks(a: torch.Tensor, b: torch.Tensor):
    """(start, Euclidean distances of a[start:start+CHUNK] to all of b), float64."""
    for start in range(0, len(a), CHUNK):
        yield start, torch.cdist(a[start : start + CHUNK], b)


class KnnBalls:
    """A feature set with each point's distance to its k-th nearest neighbour in the set (itself
    excluded) for every k ≤ k_max: computed once, so one real set serves every generated set."""

    def __init__(self, features, k_max: int, name: str = "features"):
        if isinstance(k_max, bool) or not isinstance(k_max, (int, np.integer)) or k_max < 1:
            raise AvaeError(f"k must be a positive integer, got {k_max!r}")
        need = f"(k = {k_max} needs more than {k_max} points)"
        self.points = torch.from_numpy(points(features, f"{name} {need}", min_rows=k_max + 1))
        self.k_max = int(k_max)
        # the k_max + 1 smallest distances of each row, which include the point's zero distance to itself
        self.nearest = torch.cat([d.topk(self.k_max + 1, dim=1, largest=False).values
                                  for _, d in _chunks(self.points, self.points)])

    def radii(self, k: int) -> torch.Tensor:
        return self.nearest[:, k]


def _balls(x, k: int, name: str) -> KnnBalls:
    if isinstance(x, KnnBalls):
        if k > x.k_max:
            raise AvaeError(f"{name} hold radii up to k = {x.k_max}, not {k}")
        return x
    return KnnBalls(x, k, name)


def _manifolds(real: KnnBalls, fake: KnnBalls, rules: list[tuple[int, bool]]) -> tuple[list[dict], torch.Tensor]:
    """Per rule (k, strict): coverage of each set by the other's k-NN balls, streamed over chunks of
    real rows; also each real point's distance to its nearest generated point."""
    if real.points.shape[1] != fake.points.shape[1]:
        raise AvaeError(f"real and generated features differ in dimension: {real.points.shape[1]} and "
                        f"{fake.points.shape[1]}")
    counts = [{"fake_in_real": torch.zeros(len(fake.points), dtype=torch.bool),
               "real_in_fake": torch.zeros(len(real.points), dtype=torch.bool), "density": 0} for _ in rules]
    nearest_fake = torch.empty(len(real.points), dtype=torch.float64)
    for start, d in _chunks(real.points, fake.points):
        rows = slice(start, start + len(d))
        nearest_fake[rows] = d.min(1).values
        for (k, strict), count in zip(rules, counts):
            inside = torch.lt if strict else torch.le
            in_real_ball = inside(d, real.radii(k)[rows, None])
            count["fake_in_real"] |= in_real_ball.any(0)
            count["density"] += int(torch.count_nonzero(in_real_ball))
            count["real_in_fake"][rows] = inside(d, fake.radii(k)[None, :]).any(1)
    return counts, nearest_fake


def _precision_recall(count: dict, k: int) -> dict:
    return {"precision": float(count["fake_in_real"].double().mean()),
            "recall": float(count["real_in_fake"].double().mean()), "params": {"k": k}}


def _density_coverage(count: dict, k: int, real: KnnBalls, nearest_fake: torch.Tensor) -> dict:
    return {**_precision_recall(count, k), "density": count["density"] / (k * len(count["fake_in_real"])),
            "coverage": float((nearest_fake < real.radii(k)).double().mean())}


def knn_precision_recall(real, fake, k: int = 3) -> dict:
    """Improved precision/recall: a point is covered when within (≤) a k-NN ball of the other set.

    `real` and `fake`: feature arrays (n, d), or `KnnBalls` of them (reused radii)."""
    real, fake = _balls(real, k, "real features"), _balls(fake, k, "generated features")
    (count,), _ = _manifolds(real, fake, [(k, False)])
    return _precision_recall(count, k)


def density_coverage(real, fake, k: int = 5) -> dict:
    """prdc's precision, recall, density and coverage (strict <, real-set radii for density/coverage)."""
    real, fake = _balls(real, k, "real features"), _balls(fake, k, "generated features")
    (count,), nearest_fake = _manifolds(real, fake, [(k, True)])
    return _density_coverage(count, k, real, nearest_fake)


def manifold_scores(real, fake, k_precision_recall: int = 3, k_density: int = 5) -> dict:
    """`knn_precision_recall` (k = 3) and `density_coverage` (k = 5) from one pass over the distances."""
    k_max = max(k_precision_recall, k_density)
    real, fake = _balls(real, k_max, "real features"), _balls(fake, k_max, "generated features")
    counts, nearest_fake = _manifolds(real, fake, [(k_precision_recall, False), (k_density, True)])
    return {"knn_precision_recall": _precision_recall(counts[0], k_precision_recall),
            "density_coverage": _density_coverage(counts[1], k_density, real, nearest_fake)}
