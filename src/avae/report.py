"""Figures of a run: sample grids, reconstructions, traversals, latent scatter matrix, ‖z‖² histogram.

Pictures of images keep their pixel grid: the mosaic is drawn pixel for pixel (scaled by a whole
number, never smoothed) with its labels in a margin around it.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from scipy.stats import chi2, norm  # noqa: E402

from .atomic import save_file  # noqa: E402

SCATTER_DIMS = 8  # a scatter matrix beyond 8×8 panels is unreadable
SCATTER_POINTS = 2000  # more points only darken the panels and weigh down the HTML pages
CLIP_QUANTILE = 0.995  # limits of the latent plots: this quantile of the data, so outliers cannot squash them
DPI = 100
FONT = 9  # points


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


def _save_figure(fig, path: Path) -> None:
    try:
        save_file(lambda tmp: fig.savefig(tmp, dpi=DPI), path)
    finally:
        plt.close(fig)


def save_grid(path: Path, images: np.ndarray, ncol: int | None = None) -> None:
    """The bare mosaic, one image pixel per pixel (for image files, not for reading)."""
    save_file(Image.fromarray(grid(images, ncol)).save, path)


def save_labelled_grid(path: Path, images: np.ndarray, ncol: int, title: str, row_labels=(), col_labels=(),
                       col_title: str = "") -> None:
    """A mosaic scaled by a whole number (nearest), with a title, a label per row and per column."""
    pad, (h, w) = 2, images.shape[2:]
    scale = max(1, 64 // max(h, w))  # small images shown at least about 64 pixels wide
    mosaic = grid(images, ncol, pad).repeat(scale, 0).repeat(scale, 1)
    if mosaic.ndim == 2:  # as RGB: a colour map's lookup table would shift some grey levels by one
        mosaic = np.repeat(mosaic[..., None], 3, axis=2)
    left = 16 + max((_text_px(label) for label in row_labels), default=-6)
    top = 26 + (16 if len(col_labels) else 0) + (14 if col_title else 0)
    title_px, col_title_px = _text_px(title, FONT, "bold"), _text_px(col_title)
    width = math.ceil(max(left + mosaic.shape[1] + 10, title_px + 20, col_title_px + 20))
    height = top + mosaic.shape[0] + 8
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    fig.figimage(mosaic, xo=left, yo=8, origin="upper", resize=False)

    def text(x, y, s, **kw):  # pixel coordinates from the top left
        fig.text(x / width, 1 - y / height, s, **{"fontsize": FONT, "va": "center", **kw})

    text(width / 2, 12, title, ha="center", fontweight="bold")
    if col_title:  # over the images, moved inwards where the images are narrower than it
        centre = min(max(left + mosaic.shape[1] / 2, col_title_px / 2 + 10), width - col_title_px / 2 - 10)
        text(centre, 30, col_title, ha="center")
    for i, label in enumerate(col_labels):
        text(left + (pad + i * (w + pad) + w / 2) * scale, top - 9, label, ha="center", fontsize=FONT - 1)
    for i, label in enumerate(row_labels):
        text(left - 6, top + (pad + i * (h + pad) + h / 2) * scale, label, ha="right")
    _save_figure(fig, path)


def _text_px(s: str, size: float = FONT, weight: str = "normal") -> float:
    """The width in pixels that matplotlib gives `s` at DPI, so that no title or label is cut off."""
    from matplotlib.backends.backend_agg import RendererAgg

    width, _, _ = RendererAgg(1, 1, DPI).get_text_width_height_descent(s, FontProperties(size=size, weight=weight),
                                                                       ismath=False)
    return width


def save_samples(path: Path, images: np.ndarray, sampler: str, ncol: int = 8) -> None:
    save_labelled_grid(path, images, ncol, f"{len(images)} samples", col_title=f"codes drawn from {sampler}")


def save_reconstructions(path: Path, originals: np.ndarray, reconstructions: np.ndarray, split: str,
                         ncol: int = 6) -> None:
    """Rows alternate: held-out images, then their reconstructions; only whole rows are shown, so a
    row label never covers images of both kinds."""
    ncol = min(ncol, len(originals))
    originals = originals[: len(originals) // ncol * ncol]
    rows, labels = [], []
    for i in range(0, len(originals), ncol):
        rows += [originals[i : i + ncol], reconstructions[i : i + ncol]]
        labels += [f"{split} image", "reconstruction"]
    save_labelled_grid(path, np.concatenate(rows), ncol, f"Reconstructions of {len(originals)} {split} images",
                       row_labels=labels)


def save_traversals(path: Path, images: np.ndarray, title: str, row_labels, values, col_title: str) -> None:
    """One row per direction; columns are the code value along it."""
    save_labelled_grid(path, images, len(values), title, row_labels=row_labels,
                       col_labels=[f"{round(float(v), 6) + 0.0:.2g}" for v in values], col_title=col_title)


def _limit(values: np.ndarray) -> float:
    """A round half-width covering CLIP_QUANTILE of |values| (so a few outliers do not squash the plot)."""
    q = float(np.quantile(np.abs(values), CLIP_QUANTILE)) or 1.0
    step = 10 ** math.floor(math.log10(q)) / 2
    return math.ceil(q / step) * step


def save_latent_scatter(path: Path, z: np.ndarray, variance: float, split: str) -> None:
    """Pairwise scatter of the first axes, histograms against the sampling density on the diagonal."""
    d = min(z.shape[1], SCATTER_DIMS)
    shown = z[:SCATTER_POINTS, :d]
    lim = _limit(shown)
    outside = int((np.abs(shown) > lim).any(1).sum())
    size = max(5.5, min(0.9 * d + 1.4, 6.0))  # two fit side by side on a 1280-pixel page
    fig, axes = plt.subplots(d, d, figsize=(size, size + 0.3), dpi=DPI, squeeze=False)
    line = np.linspace(-lim, lim, 200)
    tick = float(f"{0.6 * lim:.1g}")
    ticks = [-tick, 0, tick]
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if i == j:
                ax.hist(shown[:, i], bins=30, range=(-lim, lim), density=True, color="tab:blue")
                ax.plot(line, norm.pdf(line, scale=math.sqrt(variance)), "k-", lw=0.8)
                ax.set_yticks([])
            else:
                ax.scatter(shown[:, j], shown[:, i], s=1, alpha=0.3, color="tab:blue", rasterized=True)
                ax.set_ylim(-lim, lim)
                ax.set_yticks(ticks)
            ax.set_xlim(-lim, lim)
            ax.set_xticks(ticks)
            ax.tick_params(labelsize=FONT - 2, length=2, pad=1,
                           labelleft=j == 0 and i != 0, labelbottom=i == d - 1)
            if j == 0:
                ax.set_ylabel(f"z{i}", fontsize=FONT)
            if i == d - 1:
                ax.set_xlabel(f"z{j}", fontsize=FONT)
    fig.suptitle(f"{len(shown)} {split} codes, axes z0–z{d - 1} of {z.shape[1]} (code units)\n"
                 f"diagonal: histogram of the axis, and in black\nthe sampling density N(0, variance {variance:.3g})",
                 fontsize=FONT)
    clipped = (f"{outside} codes ({100 * outside / len(shown):.1f} %) lie beyond ±{lim:g} on some axis and are not drawn"
               if outside else f"every code lies within ±{lim:g}")
    fig.text(0.5, 0.005, clipped, ha="center", va="bottom", fontsize=FONT - 1)
    fig.subplots_adjust(left=0.11, right=0.98, bottom=0.1, top=0.88, wspace=0.08, hspace=0.08)
    _save_figure(fig, path)


def save_norm_histogram(path: Path, z: np.ndarray, variance: float, split: str) -> None:
    """Histogram of ‖z‖² against the density of variance·χ²_l (the law of ‖z‖² under the sampler)."""
    l = z.shape[1]
    r2 = (z.astype(np.float64) ** 2).sum(1)
    top = max(np.quantile(r2, CLIP_QUANTILE), chi2.ppf(CLIP_QUANTILE, l) * variance)
    outside = int((r2 > top).sum())
    grid_x = np.linspace(0, top, 400)
    fig, ax = plt.subplots(figsize=(5.2, 3.4), dpi=DPI)
    ax.hist(r2, bins=60, range=(0, top), density=True, alpha=0.6, label=f"‖z‖² of {len(z)} {split} codes")
    ax.plot(grid_x, chi2.pdf(grid_x / variance, l) / variance, "k-",
            label=f"{variance:.3g}·χ²$_{{{l}}}$ (the sampling distribution)")
    ax.set_xlabel("‖z‖², squared norm of a code (code units²)")
    ax.set_ylabel("probability density")
    title = f"Squared code norms, l = {l}"
    if outside:
        title += f" ({outside} codes beyond {top:.3g} not drawn)"
    ax.set_title(title, fontsize=FONT + 1)
    ax.legend(fontsize=FONT - 1)
    fig.tight_layout()
    _save_figure(fig, path)


def save_latent_figures(folder: Path, z: np.ndarray, variance: float, split: str) -> dict:
    """latents.png (scatter matrix) and norms.png (‖z‖² against the sampling distribution); {title: path}."""
    save_latent_scatter(folder / "latents.png", z, variance, split)
    save_norm_histogram(folder / "norms.png", z, variance, split)
    return {f"Codes of {split} images": folder / "latents.png",
            f"‖z‖² of {split} codes against the sampling distribution": folder / "norms.png"}
