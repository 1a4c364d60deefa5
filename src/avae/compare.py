"""`avae compare RUN_DIR...`: the evaluation results of several runs side by side, with the
settings in which their configs differ, as a terminal table and an HTML page."""
from __future__ import annotations

import dataclasses
import html
import json
from pathlib import Path

from . import config, pages, run
from .benchmark import HEADLINES, LOWER_IS_BETTER, lookup
from .errors import AvaeError


def compare(run_dirs) -> dict:
    """{'runs': names, 'metrics': {name: values}, 'settings': {key: values}}, one value per run
    (None where a run lacks the number); only metrics some run has, only settings that differ."""
    run_dirs = [Path(d) for d in run_dirs]
    if len(run_dirs) < 2:
        raise AvaeError("give at least two run directories to compare")
    results, configs = [], []
    for run_dir in run_dirs:
        cfg, _ = run.read(run_dir)
        path = run_dir / "evaluate.json"
        if not path.is_file():
            raise AvaeError(f"{run_dir} has no evaluate.json; run `avae evaluate {run_dir}` first")
        try:
            results.append(json.loads(path.read_text()))
        except ValueError:
            raise AvaeError(f"{path} is corrupt; run `avae evaluate {run_dir}` again") from None
        train_settings = dataclasses.asdict(config.TrainConfig.from_dict(cfg["train"]))  # defaults included
        configs.append(config.flatten({**cfg, "train": train_settings}))
    metrics = {name: [lookup(r, where) for r in results] for name, where in HEADLINES.items()}
    keys = sorted(set().union(*configs))
    settings = {k: [c.get(k) for c in configs] for k in keys if len({json.dumps(c.get(k)) for c in configs}) > 1}
    names = [d.name for d in run_dirs]
    return {
        "runs": names if len(set(names)) == len(names) else [str(d) for d in run_dirs],
        "metrics": {k: v for k, v in metrics.items() if any(x is not None for x in v)},
        "settings": settings,
    }


def _cell(value) -> str:
    """A metric to four significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return _setting(value)


def _setting(value) -> str:
    """A setting exactly as configured (0.999999 stays 0.999999)."""
    return "–" if value is None else str(value)


def best_index(name: str, values: list) -> int | None:
    """The run with the best value of a metric (lowest where lower is better), if it has numbers."""
    numbers = [(v, i) for i, v in enumerate(values) if isinstance(v, (int, float))]
    if not numbers:
        return None
    return (min(numbers) if name in LOWER_IS_BETTER else max(numbers))[1]


def text_table(comparison: dict) -> str:
    rows = [["", *comparison["runs"]]]
    rows += [[name, *map(_cell, values)] for name, values in comparison["metrics"].items()]
    if comparison["settings"]:
        rows.append(["settings that differ:", *[""] * len(comparison["runs"])])
        rows += [[f"  {key}", *map(_setting, values)] for key, values in comparison["settings"].items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def write_html(path: Path, comparison: dict) -> None:
    """The table as a page; the best value of each metric in bold."""
    head = "<tr><th></th>" + "".join(f"<th>{html.escape(r)}</th>" for r in comparison["runs"]) + "</tr>"
    rows = []
    for name, values in comparison["metrics"].items():
        best = best_index(name, values)
        cells = [f"<td><b>{_cell(v)}</b></td>" if i == best else f"<td>{_cell(v)}</td>" for i, v in enumerate(values)]
        rows.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>")
    settings = "".join(f"<tr><td>{html.escape(key)}</td>{''.join(f'<td>{html.escape(_setting(v))}</td>' for v in values)}</tr>"
                       for key, values in comparison["settings"].items())
    body = (f"<h1>Comparison of {len(comparison['runs'])} runs</h1><h2>Evaluation</h2><table>{head}{''.join(rows)}</table>"
            f"<h2>Settings that differ</h2><table>{head}{settings}</table>")
    pages.write_page(path, "avae comparison", body)
