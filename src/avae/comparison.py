"""`avae compare RUN_DIR...`: the evaluation results of several runs side by side, with the
settings in which their configs differ, as a terminal table and an HTML page. Only runs of one
dataset evaluated alike (feature space, n, split, checkpoint) are compared: numbers of different
evaluations are not comparable, so such runs are refused with what differs."""
from __future__ import annotations

import html
import json
from pathlib import Path

from . import config, pages, run
from .errors import AvaeError
from .metrics.catalogue import HEADLINES, SAMPLER_HEADLINES, Metric, headline_metrics, lookup, sampler_metrics

COMPARISON = "comparison.html"  # what `avae compare --out FOLDER` writes there


def compare(run_dirs) -> dict:
    """{'runs': names, 'metrics': {name: values}, 'settings': {key: values}, 'heads': {what: values},
    'samples': paths}, one value per run (None where a run lacks the number or picture); only
    metrics some run has, only settings that differ."""
    run_dirs = [Path(d) for d in run_dirs]
    if len(run_dirs) < 2:
        raise AvaeError("give at least two run directories to compare")
    results, configs = [], []
    for run_dir in run_dirs:
        cfg, _ = run.read(run_dir)
        path = run_dir / run.EVALUATION
        if not path.is_file():
            raise AvaeError(f"{run_dir} has no evaluate.json; run `avae evaluate {run_dir}` first")
        try:
            results.append(json.loads(path.read_text()))
        except ValueError:
            raise AvaeError(f"{path} is corrupt; run `avae evaluate {run_dir}` again") from None
        configs.append(config.flatten(cfg.to_dict()))
    evaluated = _evaluated_alike(results)
    metrics = {name: [lookup(r, where) for r in results] for name, where in HEADLINES.items()}
    fitted = dict.fromkeys(s for r in results for s in r.get("samplers", {}) if s != "prior")
    metrics |= {f"{row}:{sampler}": [lookup(r, f"samplers.{sampler}.{where}") for r in results]
                for sampler in fitted for row, where in SAMPLER_HEADLINES.items()}
    keys = sorted(set().union(*configs))
    settings = {k: [c.get(k) for c in configs] for k in keys if len({json.dumps(c.get(k)) for c in configs}) > 1}
    names = [d.name for d in run_dirs]
    return {
        "runs": names if len(set(names)) == len(names) else [str(d) for d in run_dirs],
        "heads": {"model": [r["model"] for r in results], "epochs": [_epochs(r) for r in results],
                  # the distribution each run's latent fit (KL, KS rows) is scored against: its sampler
                  "latent fit against": [r["sampler"] for r in results]},
        "metrics": {k: v for k, v in metrics.items() if any(x is not None for x in v)},
        "settings": settings,
        "evaluated": evaluated,
        "samples": [_samples_picture(d, r) for d, r in zip(run_dirs, results)],
    }


def _epochs(result: dict) -> str:
    """The epochs behind the evaluated checkpoint, 'E of N' where training had not finished."""
    trained = result.get("trained") or {}
    done, planned = trained.get("epochs_done"), trained.get("epochs")
    if done is None:
        return "?"
    return str(done) if done == planned else f"{done} of {planned}"


def _samples_picture(run_dir: Path, result: dict) -> Path | None:
    """The evaluation's sample grid, if it is still the very file the evaluation wrote."""
    entry = result.get("figures", {}).get("samples")
    return run_dir / entry["file"] if entry and pages.picture_intact(entry, run_dir) else None


def metric_of(name: str) -> Metric:
    """The label and direction of a row: a headline, or a fitted sampler's row "row:sampler"."""
    if name in HEADLINES:
        return headline_metrics()[name]
    row, _, sampler = name.partition(":")
    base = sampler_metrics()[row]
    return Metric(f"{base.label}, {sampler} sampler", base.better, base.unit)


COMPARABLE = {"dataset": "dataset", "feature_space.name": "feature space", "n": "n", "split": "split",
              "checkpoint": "checkpoint"}  # what an evaluation's numbers depend on besides the model


def _evaluated_alike(results: list[dict]) -> dict:
    """{what: value} that every evaluation shares; runs evaluated differently are refused in one line."""
    values = {key: [_get(r, key) for r in results] for key in COMPARABLE}
    differ = {key: v for key, v in values.items() if len({json.dumps(x) for x in v}) > 1}
    if differ:
        shown = "; ".join(f"{COMPARABLE[k]}: {', '.join(map(str, v))}" for k, v in differ.items())
        raise AvaeError(f"these runs' numbers are not comparable ({shown}); compare runs of one dataset evaluated "
                        "with the same --features, -n, --split and --checkpoint")
    return {COMPARABLE[key]: v[0] for key, v in values.items()}


def _get(tree: dict, path: str):
    for key in path.split("."):
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def _cell(value) -> str:
    """A metric to four significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return _setting(value)


def _setting(value) -> str:
    """A setting exactly as configured (0.999999 stays 0.999999)."""
    return "–" if value is None else str(value)


def best_indices(name: str, values: list) -> list[int]:
    """The runs that hold the best value of a metric (several: a tie); none for a reference value,
    for which no direction is better, or with fewer than two numbers."""
    better = metric_of(name).better
    numbers = [v for v in values if isinstance(v, (int, float))]
    if better is None or len(numbers) < 2:
        return []
    best = min(numbers) if better == "lower" else max(numbers)
    return [i for i, v in enumerate(values) if v == best]


def _marked(name: str, values: list) -> list[str]:
    """Each value as text, the best marked * (and a tie =)."""
    best = best_indices(name, values)
    mark = " =" if len(best) > 1 else " *"
    return [_cell(v) + (mark if i in best else "") for i, v in enumerate(values)]


def label(name: str) -> str:
    """A headline's catalogue label with its direction (↑ higher, ↓ lower is better; none: a reference)."""
    metric = metric_of(name)
    return f"{metric.label} {metric.arrow}".rstrip()


def text_table(comparison: dict) -> str:
    """Runs as columns; * marks a metric's best run, = runs that tie for it."""
    rows = [["", *comparison["runs"]]]
    rows += [[what, *values] for what, values in comparison["heads"].items() if what != "latent fit against"]
    rows += [[label(name), *_marked(name, values)] for name, values in comparison["metrics"].items()]
    if comparison["settings"]:
        rows.append(["settings that differ:", *[""] * len(comparison["runs"])])
        rows += [[f"  {key}", *map(_setting, values)] for key, values in comparison["settings"].items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
    targets = "; ".join(f"{run}: {target}" for run, target in zip(comparison["runs"],
                                                                   comparison["heads"]["latent fit against"]))
    return (f"evaluated alike: {_shared(comparison)}; * best, = tied best; ↑ higher, ↓ lower is better\n{table}\n"
            f"latent fit (KL, KS rows) scored against each run's sampler: {targets}")


def _shared(comparison: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in comparison["evaluated"].items())


def write_html(path: Path, comparison: dict) -> None:
    """The table as a page; the best value of each metric in bold; each run's sample grid under its column."""
    head = "<tr><th></th>" + "".join(f"<th>{html.escape(r)}</th>" for r in comparison["runs"]) + "</tr>"
    rows = [f"<tr><td>{html.escape(what)}</td>{''.join(f'<td>{html.escape(str(v))}</td>' for v in values)}</tr>"
            for what, values in comparison["heads"].items()]
    for name, values in comparison["metrics"].items():
        best = best_indices(name, values)
        tie = " (tie)" if len(best) > 1 else ""
        cells = [f"<td><b>{_cell(v)}</b>{tie}</td>" if i in best else f"<td>{_cell(v)}</td>" for i, v in enumerate(values)]
        rows.append(f"<tr><td>{html.escape(label(name))}</td>{''.join(cells)}</tr>")
    grids = "".join(f"<td>{pages.embedded(p, 'samples of ' + r) if p else '(no intact samples.png)'}</td>"
                    for p, r in zip(comparison["samples"], comparison["runs"]))
    rows.append(f"<tr><td>samples</td>{grids}</tr>")
    settings = "".join(f"<tr><td>{html.escape(key)}</td>{''.join(f'<td>{html.escape(_setting(v))}</td>' for v in values)}</tr>"
                       for key, values in comparison["settings"].items())
    body = (f"<h1>Comparison of {len(comparison['runs'])} runs</h1><h2>Evaluation</h2>"
            f"<p>All evaluated alike: {html.escape(_shared(comparison))}. The best value of each metric is bold (ties marked); "
            "↑ higher is better, ↓ lower is better; reference values (no arrow) are not ranked. The latent fit (KL, "
            "KS rows) of each run is scored against its own sampler (the row 'latent fit against').</p>"
            f"<table>{head}{''.join(rows)}</table>"
            f"<h2>Settings that differ</h2><table>{head}{settings}</table>")
    pages.write_page(path, "avae comparison", body)
