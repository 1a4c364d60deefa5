"""Figures of a run: sample grids, reconstructions, latent scatter matrix, ‖z‖² histogram."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from scipy.stats import chi2  # noqa: E402

SCATTER_DIMS = 8  # a scatter matrix beyond 8×8 panels is unreadable


def to_uint8(images, value_range=(0.0, 1.0)) -> np.ndarray:
    """Float images in `value_range` → uint8 NCHW (rounded)."""
    x = np.asarray(images, dtype=np.float32)
    lo, hi = value_range
    return np.clip(np.rint((x - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)


def grid(images: np.ndarray, ncol: int | None = None, pad: int = 2) -> np.ndarray:
    """uint8 NCHW images → one HWC (or HW) uint8 mosaic."""
    n, c, h, w = images.shape
    ncol = ncol or int(math.ceil(math.sqrt(n)))
    nrow = int(math.ceil(n / ncol))
    canvas = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, np.uint8)
    for i, img in enumerate(images):
        r, col = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        canvas[y : y + h, x : x + w] = img.transpose(1, 2, 0)
    return canvas[..., 0] if c == 1 else canvas


def save_grid(path: Path, images: np.ndarray, ncol: int | None = None) -> None:
    Image.fromarray(grid(images, ncol)).save(path)


def save_reconstructions(path: Path, originals: np.ndarray, reconstructions: np.ndarray, ncol: int = 8) -> None:
    """Rows alternate: originals, then their reconstructions."""
    rows = []
    for i in range(0, len(originals), ncol):
        rows += [originals[i : i + ncol], reconstructions[i : i + ncol]]
    save_grid(path, np.concatenate(rows), ncol)


def save_latent_scatter(path: Path, z: np.ndarray, reference_std: float) -> None:
    """Pairwise scatter of the first dimensions, histograms on the diagonal."""
    d = min(z.shape[1], SCATTER_DIMS)
    lim = 4 * reference_std
    fig, axes = plt.subplots(d, d, figsize=(1.6 * d, 1.6 * d), squeeze=False)
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if i == j:
                ax.hist(z[:, i], bins=40, range=(-lim, lim), color="tab:blue")
            else:
                ax.scatter(z[:, j], z[:, i], s=1, alpha=0.3, color="tab:blue", rasterized=True)
                ax.set_ylim(-lim, lim)
            ax.set_xlim(-lim, lim)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"z{i}", fontsize=8)
            if i == d - 1:
                ax.set_xlabel(f"z{j}", fontsize=8)
    fig.suptitle(f"validation codes (first {d} of {z.shape[1]} dims)", fontsize=9)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def save_norm_histogram(path: Path, z: np.ndarray, variance: float, label: str) -> None:
    """Histogram of ‖z‖² against the density of variance·χ²_l."""
    l = z.shape[1]
    r2 = (z.astype(np.float64) ** 2).sum(1)
    top = max(np.quantile(r2, 0.995), chi2.ppf(0.995, l) * variance)
    grid_x = np.linspace(0, top, 400)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(r2, bins=60, range=(0, top), density=True, alpha=0.6, label="‖z‖² of validation codes")
    ax.plot(grid_x, chi2.pdf(grid_x / variance, l) / variance, "k-", label=label)
    ax.set_xlabel("‖z‖²")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
