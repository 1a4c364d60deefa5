"""Figures of a run: sample grids, reconstructions, latent scatter matrix, ‖z‖² histogram."""
from __future__ import annotations

import base64
import html
import io
import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from scipy.stats import chi2  # noqa: E402

SCATTER_DIMS = 8  # a scatter matrix beyond 8×8 panels is unreadable
SCATTER_POINTS = 2000  # more points only darken the panels and weigh down the HTML pages


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
    z = z[:SCATTER_POINTS]
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
    fig.suptitle(f"{len(z)} held-out codes (first {d} of {z.shape[1]} dims)", fontsize=9)
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


def save_latent_figures(folder: Path, z: np.ndarray, variance: float) -> dict:
    """latents.png (scatter matrix) and norms.png (‖z‖² against the sampling distribution); {title: path}."""
    save_latent_scatter(folder / "latents.png", z, math.sqrt(variance))
    save_norm_histogram(folder / "norms.png", z, variance,
                        f"{variance:.3f}·χ²_{z.shape[1]} (sampling distribution)")
    return {"Held-out codes": folder / "latents.png", "‖z‖² of held-out codes": folder / "norms.png"}


# --- HTML ------------------------------------------------------------------------------------
def _img_tag(path: Path, jpeg: bool = False) -> str:
    """An inline image, so the page opens anywhere without a server or its folder.

    `jpeg` re-encodes the PNG at most 640 px wide (quality 90): a suite's page holds dozens of
    pictures, and colour sample grids and scatter plots are 5–10× smaller so.
    """
    if jpeg:
        buffer, image = io.BytesIO(), Image.open(path).convert("RGB")
        image.thumbnail((640, 640))
        image.save(buffer, "JPEG", quality=90)
        data, kind = buffer.getvalue(), "jpeg"
    else:
        data, kind = Path(path).read_bytes(), "png"
    return f'<img src="data:image/{kind};base64,{base64.b64encode(data).decode()}" ' \
           'style="image-rendering:pixelated;max-width:100%">'


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _rows(tree: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Flatten nested results into (dotted name, value) rows, skipping long lists."""
    rows = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _rows(value, name + ".")
        elif not isinstance(value, list) or len(value) <= 8:
            rows.append((name, value))
    return rows


def table_html(tree: dict) -> str:
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in _rows(tree))
    return f"<table>{body}</table>"


PAGE_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1100px}"
              "table{border-collapse:collapse;margin:1em 0}td{border:1px solid #ccc;padding:2px 8px;font-size:13px}"
              "h2{margin-top:1.5em}")


def _write_page(path: Path, title: str, body: str) -> None:
    """A self-contained HTML page, written atomically so a finished page is never half-replaced."""
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>" \
           f"<style>{PAGE_STYLE}</style></head><body>{body}</body></html>"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page)
    os.replace(tmp, path)


def write_evaluation_html(path: Path, result: dict, figures: dict) -> None:
    sections = [f"<h1>{html.escape(result['model'])} on {html.escape(result['dataset'])}</h1>",
                f"<p>run {html.escape(result['run'])}, {result['n']} {result['split']} images, seed {result['seed']}; "
                f"feature space: {html.escape(result['feature_space']['name'])}</p>"]
    for key in ("sample_quality", "latent_quality", "disentanglement", "feature_space", "timings_s"):
        if key in result:
            sections.append(f"<h2>{key.replace('_', ' ')}</h2>{table_html(result[key])}")
    for title, fig in figures.items():
        sections.append(f"<h2>{html.escape(title)}</h2>{_img_tag(fig)}")
    _write_page(path, "avae evaluation", ''.join(sections))


BENCHMARK_PICTURES = ("samples", "reconstructions", "latents")  # traversals are on each run's own page


def write_benchmark_html(path: Path, table_markdown: str, records: list[dict]) -> None:
    """The suite's tables and, per dataset, each model's evaluation pictures (first seed) side by side."""
    body = [f"<pre>{html.escape(table_markdown)}</pre>"]
    seen = set()
    for r in records:
        key = (r["dataset"], r["model"])
        if key in seen:
            continue
        seen.add(key)
        folder = Path(r["run_dir"]) / "evaluation"
        pictures = [f"<figure>{_img_tag(folder / f'{name}.png', jpeg=True)}<figcaption>{name}</figcaption></figure>"
                    for name in BENCHMARK_PICTURES if (folder / f"{name}.png").is_file()]
        body.append(f"<h2>{html.escape(r['dataset'])} — {html.escape(r['model'])} (seed {r['seed']})</h2>"
                    f"<div style='display:flex;gap:1em;flex-wrap:wrap;align-items:flex-start'>{''.join(pictures)}</div>")
    _write_page(path, "avae benchmark", ''.join(body))
