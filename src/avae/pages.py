"""The HTML pages people read: one run's evaluation, and a benchmark suite's results (and its Markdown).

Both are built from the JSON results (evaluate.json, <suite>.json), never from the Markdown.
Labels, units and directions come from metrics/catalogue.py.
"""
from __future__ import annotations

import base64
import hashlib
import math
import shutil
from html import escape
from importlib import resources
from pathlib import Path

from . import config
from .metrics.catalogue import (AXES, CLAIMED_BEST, IMAGE_SETS, LOWER_IS_BETTER, SAMPLER_HEADLINES, SAMPLERS_NOTE,
                                TARGETS_NOTE, Metric, describe, headline_metrics, sampler_metrics)
from .atomic import save_file

STYLE = """
body{font-family:system-ui,sans-serif;margin:1em auto;max-width:1240px;padding:0 12px;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}h3{margin-top:1.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.paper{color:#666;background:#fafafa}td.best{font-weight:bold;background:#e3f4e3}
table.results{font-size:12.5px}table.results td.num{white-space:normal}
table.results small{white-space:nowrap;color:#555}
table.heat td{text-align:right;font-variant-numeric:tabular-nums;padding:2px 5px}
.grid{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
figure{margin:0}figcaption{font-size:13px;color:#444;margin-top:.2em}
img{max-width:100%}img.pixels{image-rendering:pixelated}
details{margin:.5em 0}summary{cursor:pointer;color:#555}.note{color:#555;font-size:14px}
code{font-size:12px;color:#555}
"""


def picture(path: Path, base: Path) -> dict:
    """A picture's file relative to `base` and its SHA-256, so a page can prove it shows that very file."""
    path = Path(path)
    return {"file": path.relative_to(base).as_posix(), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def picture_intact(entry: dict, base: Path) -> bool:
    path = base / entry["file"]
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]


# --- numbers ---------------------------------------------------------------------------------
def number(x, digits: int = 3) -> str:
    """`digits` significant digits, without an exponent between 1e-4 and 1e6; integers as they are."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if not isinstance(x, float):
        return escape(str(x))
    if not math.isfinite(x) or (x.is_integer() and abs(x) < 1e6):
        return f"{x:.0f}" if math.isfinite(x) else f"{x}"
    exponent = math.floor(math.log10(abs(x)))
    if -4 <= exponent < 6:
        return f"{x:.{max(0, digits - 1 - exponent)}f}"
    return f"{x:.{digits - 1}e}"


def mean_std(mean: float, std: float) -> str:
    """The mean to the precision of its spread (two significant digits of the std)."""
    if not std or not math.isfinite(std):
        return number(mean, 4)
    decimals = min(8, max(0, 1 - math.floor(math.log10(std))))
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def _label(metric) -> str:
    unit = f" ({escape(metric.unit)})" if metric.unit and metric.unit != "axes" else ""
    arrow = f" {metric.arrow}" if metric.arrow else ""
    return f"{escape(metric.label)}{unit}{arrow}"


# --- building blocks -------------------------------------------------------------------------
def _table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    """Cells are HTML (a whole <td>/<th> or its content); columns from `numeric_from` on are right-aligned."""
    def cell(tag, i, content):
        if content.startswith(("<td", "<th")):
            return content
        align = ' class="num"' if i >= numeric_from else ""
        return f"<{tag}{align}>{content}</{tag}>"

    head = f"<thead><tr>{''.join(cell('th', i, h) for i, h in enumerate(header))}</tr></thead>" if header else ""
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def heat_table(values: list, rows: list[str], cols: list[str], caption: str) -> str:
    """A matrix (or a vector as one row) as a table whose cells are shaded by |value|."""
    matrix = [values] if not isinstance(values[0], list) else values
    rows = rows if isinstance(values[0], list) else [""]
    numbers = [abs(v) for r in matrix for v in r if isinstance(v, (int, float)) and not isinstance(v, bool)]
    top = max(numbers, default=0) or 1

    def cell(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"<td>{number(v)}</td>"
        if abs(v) < 1e-9 * top:  # rounding noise of an exact zero
            v = 0.0
        shade = abs(v) / top
        colour = "#fff" if shade > 0.6 else "#222"
        hue = "49,130,189" if v >= 0 else "214,96,77"
        return f'<td style="background:rgba({hue},{shade:.2f});color:{colour}">{number(float(v), 2)}</td>'

    head = "<th></th>" + "".join(f"<th>{escape(c)}</th>" for c in cols)
    body = "".join(f"<tr><th>{escape(r)}</th>{''.join(cell(v) for v in row)}</tr>" for r, row in zip(rows, matrix))
    return f'<figure><table class="heat"><tr>{head}</tr>{body}</table><figcaption>{caption}</figcaption></figure>'


def _details(summary: str, inner: str) -> str:
    return f"<details><summary>{escape(summary)}</summary>{inner}</details>" if inner else ""


def _params_list(params: dict[str, dict]) -> str:
    """{owner: {name: value}} as one line per owner."""
    lines = [f"<li><b>{escape(owner)}</b>: " + ", ".join(f"{escape(k)} = {number(v)}" for k, v in values.items())
             + "</li>" for owner, values in params.items() if values]
    return f"<ul>{''.join(lines)}</ul>" if lines else ""


def _leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<meta name='viewport' content='width=device-width'><style>{STYLE}</style></head><body>{body}</body></html>")


def write_page(path: Path, title: str, body: str) -> None:
    """Written atomically so a finished page is never half-replaced."""
    save_file(lambda tmp: tmp.write_text(_page(title, body)), path)


def embedded(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img class="pixels" alt="{escape(alt)}" src="data:image/png;base64,{data}">'


# --- the evaluation page ---------------------------------------------------------------------
def write_evaluation_page(path: Path, result: dict) -> None:
    """evaluate.html beside evaluate.json; its pictures are embedded so the page opens anywhere."""
    fs = result["feature_space"]
    facts = [("run", result["run"]), ("checkpoint", result["checkpoint"]),
             ("held-out images", f"{result['n']} from the {result['split']} split"), ("seed", result["seed"]),
             ("sampler", result["sampler"]), ("feature space", f"{fs['name']}: {fs.get('note', '')}"),
             ("versions", f"avae {result.get('avae', '?')}, torch {result.get('torch', '?')}")]
    body = [f"<h1>{escape(result['model'])} on {escape(result['dataset'])}</h1>",
            _table([], [[f"<th>{escape(k)}</th>", number(v)] for k, v in facts], numeric_from=2),
            '<p class="note">↑ higher is better, ↓ lower is better; no arrow: neither.</p>',
            _sample_quality(result["sample_quality"]), _latent_quality(result["latent_quality"])]
    if "likelihood" in result:
        body.append(_likelihood(result["likelihood"]))
    if "samplers" in result:
        body.append(_samplers(result["samplers"]))
    if "disentanglement" in result:
        body.append(_disentanglement(result["disentanglement"], result.get("factors"),
                                     len(result["latent_quality"]["collapsed_axes"].get("variances", []))))
    base = Path(path).parent
    figures = [f"<figure>{embedded(base / e['file'], e['title'])}<figcaption>{escape(e['title'])}</figcaption></figure>"
               for e in result.get("figures", {}).values() if (base / e["file"]).is_file()]
    body.append(f"<h2>Pictures</h2><div class='grid'>{''.join(figures)}</div>")
    timings = [[escape(k), number(v)] for k, v in result.get("timings_s", {}).items()]
    body.append(_details("Time per step (s)", _table(["step", "s"], timings)))
    write_page(path, f"{result['model']} on {result['dataset']}", "".join(body))


def _sample_quality(quality: dict) -> str:
    sets = [s for s in IMAGE_SETS if s in quality]
    values, labels, params = {}, {}, {}
    for s in sets:
        for leaf, value in _leaves(quality[s]):
            owner, found, name = leaf.partition(".params.")
            metric = describe(f"sample_quality.*.{leaf}")
            if found:
                params.setdefault(owner, {})[name] = value
            elif metric is not None:
                labels[leaf] = _label(metric)
                values[leaf, s] = value
    rows = [[label] + [number(values.get((leaf, s), "–")) for s in sets] for leaf, label in labels.items()]
    header = ["metric"] + [f"{s}<br><small>{escape(IMAGE_SETS[s])}</small>" for s in sets]
    return ("<h2>Sample quality</h2>" + _table(header, rows)
            + _details("Parameters of the sample-quality metrics", _params_list(params)))


def _samplers(by_sampler: dict) -> str:
    """The N set scored once per sampler, side by side, with each sampler's fit to the held-out codes."""
    names = list(by_sampler)
    leaves = {}
    for name in names:
        for leaf, value in _leaves(by_sampler[name]["sample_quality"]):
            if ".params." not in leaf and describe(f"sample_quality.*.{leaf}") is not None:
                leaves.setdefault(f"sample_quality.*.{leaf}", {})[name] = value
        for leaf, value in by_sampler[name]["latent_fit"].items():
            leaves.setdefault(f"samplers.*.latent_fit.{leaf}", {})[name] = value
    rows = [[_label(describe(path))] + [number(v) if (v := values.get(n)) is not None else "–" for n in names]
            for path, values in leaves.items()]
    header = ["metric"] + [f"{escape(n)}<br><small>{escape(by_sampler[n]['description'])}</small>" for n in names]
    return ("<h2>Samples by sampler</h2><p class='note'>The N set drawn from each sampler (fitted to training codes "
            "after training; prior: the model's own) and scored in the same feature space; the latent fit is "
            "measured on the held-out codes (– where a sampler has no density).</p>" + _table(header, rows))


def _latent_quality(quality: dict) -> str:
    rows, params, vectors = [], {}, []
    for leaf, value in _leaves(quality):
        path, key = f"latent_quality.{leaf}", leaf.split(".")[-1]
        metric = describe(path)
        if isinstance(value, list) and key in AXES:
            names = [f"z{i}" for i in range(len(value))]
            vectors.append(heat_table(value, [], names, escape(f"{leaf.replace('.', ': ').replace('_', ' ')}")))
        elif metric is not None:
            rows.append([_label(metric), number(value)])
        else:
            owner, _, name = leaf.rpartition(".")
            params.setdefault(owner.replace(".params", "") or "latent quality", {})[name] = value
    return ("<h2>Latent quality</h2>" + _table(["metric", "value"], rows) + "".join(vectors)
            + _details("Parameters of the latent-quality metrics", _params_list(params)))


def _likelihood(section: dict) -> str:
    """The importance-sampled NLL with its standard error over images, or one line saying why there is none."""
    if "absent" in section:
        return f"<p class='note'>Log-likelihood: none; {escape(section['absent'])}.</p>"
    rows = [[_label(describe("likelihood.nll_nats")), mean_std(section["nll_nats"], section["nll_nats_sem"] or 0.0)],
            [_label(describe("likelihood.bits_per_dim")), number(section["bits_per_dim"], 4)],
            [_label(describe("likelihood.neg_elbo_nats")), number(section["neg_elbo_nats"], 5)]]
    facts = {"importance samples K": section["samples"], "held-out images": section["n"],
             "dimensions D": section["dims"], "likelihood": section["likelihood"]}
    return ("<h2>Log-likelihood</h2>" + _table(["metric", "value"], rows)
            + f"<p class='note'>{escape(section['note'])} NLL ± its standard error over the images.</p>"
            + _details("Parameters of the log-likelihood", _params_list({"likelihood": facts})))


def _disentanglement(results: dict, factors: list | None, latent_dim: int) -> str:
    rows, matrices, params = [], [], {}
    for name, metric_result in results.items():
        score = describe(f"disentanglement.{name}.score")
        label = score.label if score else name
        others = []
        for key, value in metric_result.items():
            metric = describe(f"disentanglement.{name}.{key}")
            if key == "params":
                params[label] = value
            elif isinstance(value, list):
                matrices.append((label, key, value))
            elif key != "score" and value != metric_result.get("score"):
                others.append(f"{escape(metric.label if metric else key.replace('_', ' '))} {number(value)}")
        rows.append([f"{escape(label)} {score.arrow if score else ''}", number(metric_result.get("score")),
                     f"<td>{' · '.join(others)}</td>"])
    names = {"latent": [f"z{i}" for i in range(latent_dim)], "factor": list(factors or [])}
    tables = [heat_table(value, *_axis_names(key, value, names), f"{escape(label)}: {escape(key.replace('_', ' '))}")
              for label, key, value in matrices]
    return ("<h2>Disentanglement</h2>" + _table(["metric", "score", "other numbers"], rows)
            + f"<div class='grid'>{''.join(tables)}</div>"
            + _details("Parameters of the disentanglement metrics", _params_list(params)))


def _axis_names(key: str, value: list, names: dict) -> tuple[list[str], list[str]]:
    """Row and column names of a reported matrix (or vector) from the catalogue of axes; indices if unknown."""
    shape = [len(value)] + ([len(value[0])] if isinstance(value[0], list) else [])
    axes = AXES.get(key, (None,) * len(shape))
    labels = [names[a][:n] if len(names.get(a, [])) >= n else [str(i) for i in range(n)] for a, n in zip(axes, shape)]
    return (labels[0], labels[1]) if len(labels) == 2 else ([], labels[0])


# --- the benchmark page ----------------------------------------------------------------------
def write_benchmark_page(path: Path, payload: dict, metrics: dict, references: dict, claims: dict,
                         sampler_metrics: dict | None = None) -> None:
    """<suite>.html from the results payload.

    `metrics`: {headline: catalogue Metric}; `references`: {dataset: {"values": {metric: {model: v}},
    "note": str}}; `claims`: {dataset: [its rows of claims()]}; `sampler_metrics`: {sampler
    headline: Metric} of the payload's sampler_summary, where it has one. Pictures are files beside
    the page whose SHA-256 the records hold; one that changed since is left out with a note.
    """
    suite, summary, records = payload["suite"], payload["summary"], payload["records"]
    sections = [(f"results-{d}", f"{d}: results") for d in summary]
    sections += [("performance", "Performance")] if payload.get("performance") else []
    sections += [(f"pictures-{d}", f"{d}: pictures") for d in summary]
    hours = payload.get("compute_hours", {})
    machine = payload.get("machine", {})
    body = [f"<h1>Benchmark suite <code>{escape(suite['name'])}</code></h1>",
            f"<p>{escape(str(suite.get('description', '')).strip())}</p>",
            f"<p class='note'>Command: <code>{escape(payload.get('command', ''))}</code> — {len(records)} runs, "
            f"{hours.get('train', 0):.2f} h training and {hours.get('evaluate', 0):.2f} h evaluation on "
            f"{machine.get('cpus', '?')} CPU cores{' and a ' + escape(machine['gpu']) if machine.get('gpu') else ''}"
            f" ({escape(machine.get('platform', ''))}); avae {escape(payload.get('avae', '?'))}, torch "
            f"{escape(payload.get('torch', '?'))}; written {escape(payload.get('written', '?'))}.</p>",
            "<nav><b>Contents</b><ul>" + "".join(f"<li><a href='#{a}'>{escape(t)}</a></li>" for a, t in sections)
            + "</ul></nav>"]
    for dataset, table in summary.items():
        models = list(dict.fromkeys(r["model"] for r in records if r["dataset"] == dataset))
        ref = references.get(dataset, {})
        body += [f"<h2 id='results-{dataset}'>{escape(dataset)}</h2>",
                 _results_table(table, models, metrics, ref.get("values", {})),
                 f"<p class='note'>Mean ± std over seeds (population std); highlighted: the best mean of each row "
                 f"in its direction. ↑ higher is better, ↓ lower is better. {escape(ref.get('note', ''))}</p>",
                 _claims_table(dataset, claims.get(dataset, []), metrics),
                 _samplers_table(dataset, payload.get("sampler_summary", {}).get(dataset), sampler_metrics or {})]
    if payload.get("performance"):
        body.append(_performance(payload["performance"]))
    for dataset in summary:
        body.append(f"<h2 id='pictures-{dataset}'>{escape(dataset)}: pictures</h2>"
                    + _pictures(records, dataset, Path(path).parent))
    write_page(path, f"avae benchmark {suite['name']}", "".join(body))


def _results_table(table: dict, models: list[str], metrics: dict, paper: dict) -> str:
    """Metrics as rows, models as columns; beside a model the paper has numbers for, its value in grey."""
    with_paper = [m for m in models if any(m in by_model for by_model in paper.values())]
    top = "".join(f"<th class='num' colspan='{1 + (m in with_paper)}'>{escape(m)}</th>" for m in models)
    sub = "".join("<th class='num'>ours</th>" + ("<th class='num'>paper</th>" if m in with_paper else "")
                  for m in models)
    rows = []
    for name, by_model in table.items():
        metric = metrics[name]
        best = _best(by_model, metric.better)
        cells = [f"<td>{_label(metric)}<br><code>{escape(name)}</code></td>"]
        for m in models:
            value = _spread_small(mean_std(*by_model[m][:2])) if m in by_model else "–"
            cells.append(f'<td class="{"num best" if m in best else "num"}">{value}</td>')
            if m in with_paper:
                ref = paper.get(name, {}).get(m)
                cells.append(f'<td class="num paper">{"" if ref is None else number(float(ref))}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<table class='results'><thead><tr><th rowspan='2'>metric</th>{top}</tr><tr>{sub}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _samplers_table(dataset: str, table: dict | None, metrics: dict) -> str:
    """{metric: {model: {sampler: (mean, std, n)}}} as rows model × sampler, columns the metrics; the
    best mean of each column per model highlighted."""
    if not table:
        return ""
    names = [m for m in metrics if m in table] + [m for m in table if m not in metrics]
    rows: dict = {}
    for name in names:
        for model, by_sampler in table[name].items():
            for sampler in by_sampler:
                rows.setdefault(model, {}).setdefault(sampler, None)
    head = "".join(f"<th class='num'>{_label(metrics[n]) if n in metrics else ''}<br><code>{escape(n)}</code></th>"
                   for n in names)
    body = []
    for model, samplers in rows.items():
        for sampler in samplers:
            cells = [f"<td>{escape(model)}</td><td>{escape(sampler)}</td>"]
            for name in names:
                by_sampler = table[name].get(model, {})
                best = _best(by_sampler, getattr(metrics.get(name), "better", None))
                value = _spread_small(mean_std(*by_sampler[sampler][:2])) if sampler in by_sampler else "–"
                cells.append(f'<td class="{"num best" if sampler in best else "num"}">{value}</td>')
            body.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<h3 id='samplers-{escape(dataset)}'>{escape(dataset)}: samplers</h3><p class='note'>Each sampler's codes "
            "decoded and scored like the model's own samples (prior: the model's own sampler), and its fit to "
            "held-out codes; mean ± std over seeds, the best sampler of each model highlighted.</p>"
            f"<table class='results'><thead><tr><th>model</th><th>sampler</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _spread_small(text: str) -> str:
    """'mean ± std' with the std in small type, on the next line where the column is narrow."""
    mean, found, std = text.partition(" ± ")
    return f"{mean} <small>± {std}</small>" if found else mean


def _best(by_model: dict, better: str | None) -> set:
    if better is None or len(by_model) < 2:
        return set()
    pick = min if better == "lower" else max
    target = pick(v[0] for v in by_model.values())
    return {m for m, v in by_model.items() if v[0] == target}


def _claims_table(dataset: str, claims: list[dict], metrics: dict) -> str:
    if not claims:
        return ""
    rows = [[_label(metrics[c["metric"]]) + (f"<br><small>{escape(c['reference'])}</small>" if c.get("reference") else ""),
             mean_std(*c["avae"]), f"{escape(c['rival'])}: {mean_std(*c['other'])}",
             "–" if c["ratio"] is None else number(c["ratio"]), f"<td>{escape(c['verdict'])}</td>"] for c in claims]
    return (f"<h3>The paper's claims on {escape(dataset)}</h3><p class='note'>Metrics on which the paper reports the "
            "AVAE best, checked on these runs; a gap within the seeds' spread (sum of both std) is not a win.</p>"
            + _table(["claim: AVAE best on", "AVAE", "best other model", "ratio AVAE / other", "verdict"], rows))


def peaks_text(peaks: dict) -> str:
    """The measured GEMM peaks in words; bfloat16 is measured only where the hardware has it natively."""
    bf16 = (f"{peaks['bfloat16']:.0f} GFLOP/s in bfloat16" if "bfloat16" in peaks
            else "bfloat16 not measured (emulated on this hardware)")
    return f"{peaks['float32']:.0f} GFLOP/s in float32, {bf16}"


def _performance(perf: dict) -> str:
    peaks = perf["gemm_peak_gflops"]
    out = [f"<h2 id='performance'>Performance</h2><p>Measured {escape(perf['device'])} matrix-multiply peak: "
           f"{escape(peaks_text(peaks))}.</p>"]
    for dataset, ds in perf["datasets"].items():
        facts = []
        if "avae_epoch_over_vae" in ds:
            facts.append(f"AVAE epoch time over the VAE's: {ds['avae_epoch_over_vae']:.2f}")
        if "bandwidth_estimation_s" in ds:
            facts.append(f"bandwidth estimation: {ds['bandwidth_estimation_s']:.2f} s")
        rows = [[escape(name), escape(m.get("threads", "?")), number(m["epoch_s"]), number(m["images_per_s"]),
                 number(m["gflops_per_s"]), number(m["percent_of_float32_peak"], 2),
                 f"{100 * m['kde_refresh_share']:.0f} %" if "kde_refresh_share" in m else "–"]
                for name, m in ds["models"].items()]
        out += [f"<h3>{escape(dataset)}</h3><p class='note'>{'; '.join(facts)}</p>",
                _table(["model", "threads", "epoch (s) ↓", "images/s ↑", "GFLOP/s ↑", "% of float32 peak",
                        "re-encoding share"], rows)]
    return "".join(out)


def _pictures(records: list[dict], dataset: str, base: Path) -> str:
    shown = [r for r in records if r["dataset"] == dataset and r.get("pictures")]
    if not shown:
        return ("<p class='note'>No pictures: these records were written before the results stored their runs' "
                "pictures, and the run directories are not kept. The next run of the suite stores each model's "
                "evaluation pictures beside this page, with their hashes in the records.</p>")
    kinds = list(dict.fromkeys(k for r in shown for k in r["pictures"]))
    out = []
    for kind in kinds:
        figures = []
        for r in shown:
            entry = r["pictures"].get(kind)
            if entry is None:
                continue
            caption = f"{escape(r['model'])}, seed {r['seed']}"
            content = (f'<img class="pixels" alt="{escape(kind)} of {caption}" src="{escape(entry["file"])}">'
                       if picture_intact(entry, base) else "<p class='note'>picture changed since its record was "
                       "written; left out</p>")
            figures.append(f"<figure>{content}<figcaption>{caption}</figcaption></figure>")
        title = next(r["pictures"][kind].get("title", kind) for r in shown if kind in r["pictures"])
        out.append(f"<h3>{escape(title)}</h3><div class='grid'>{''.join(figures)}</div>")
    return "".join(out)


# --- a benchmark suite's pages: <stem>.md and <stem>.html beside its results JSON --------------------
BENCHMARK_PICTURES = ("samples", "reconstructions", "latents")  # of each model's first seed; the rest is per run


def write_pages(payload: dict, results: Path) -> None:
    """<stem>.md (for diffs and terminals) and <stem>.html (for people) beside the results JSON
    `results` (<stem>.json), both from its payload."""
    results = Path(results)
    records, machine, hours = payload["records"], payload["machine"], payload["compute_hours"]
    where = f"{machine['cpus']} CPU cores" + (f" and a {machine['gpu']}" if machine["gpu"] else "")
    table = (markdown(payload["suite"], payload["summary"], payload.get("sampler_summary"))
             + f"\nCommand: `{payload['command']}`. Compute: "
             f"{hours['train']:.2f} h training and {hours['evaluate']:.2f} h evaluation, {len(records)} runs on "
             f"{where}.\n\n" + performance_markdown(payload["performance"]))
    results.with_suffix(".md").write_text(table)
    paper = paper_results()
    write_benchmark_page(results.with_suffix(".html"), payload, headline_metrics(),
                         {d: paper_reference(d, paper) for d in payload["summary"]},
                         {d: claims(metrics) for d, metrics in payload["summary"].items()},
                         sampler_metrics())


def store_pictures(records: list[dict], results_root: Path, folder: str) -> None:
    """Copy each model's first-seed evaluation pictures beside the results; the record keeps their hashes.

    A picture is copied only if it is byte for byte the one its evaluation wrote (evaluate.json holds
    its SHA-256), so the page shows the pictures of the very evaluation its tables report.
    """
    first = {}
    for r in records:
        first.setdefault((r["dataset"], r["model"]), r)
    (results_root / folder).mkdir(exist_ok=True)
    for r in first.values():
        run_dir, figures = Path(r["run_dir"]), r["evaluation"].get("figures", {})
        r["pictures"] = {}
        for kind in BENCHMARK_PICTURES:
            if kind not in figures or not picture_intact(figures[kind], run_dir):
                continue
            target = results_root / folder / f"{r['dataset']}-{r['model']}-s{r['seed']}-{kind}.png"
            shutil.copyfile(run_dir / figures[kind]["file"], target)
            r["pictures"][kind] = {"title": figures[kind]["title"], **picture(target, results_root)}


def paper_results() -> dict:
    return config.load_yaml((resources.files("avae") / "configs" / "paper_results.yaml").read_text())


def paper_reference(dataset: str, paper: dict | None = None) -> dict:
    """{"values": {metric: {model: value}}, "note": what they are comparable to} for a benchmark dataset."""
    paper = paper or paper_results()
    compared = paper["compared"].get(dataset)
    if compared is None:
        return {"values": {}, "note": ""}
    return {"values": paper[compared["source"]], "note": compared["note"]}


def markdown(suite: dict, summary: dict, sampler_summary: dict | None = None) -> str:
    paper = paper_results()
    bits = ([", ".join(suite["datasets"])] if suite.get("datasets") else []) + (
        [f"seeds {', '.join(map(str, suite['only_seeds']))}"] if suite.get("only_seeds") else [])
    part = f" ({'; '.join(bits)})" if bits else ""
    lines = [f"# Benchmark suite `{suite['name']}`{part}", "", str(suite.get("description", "")).strip(), "",
             "Mean ± std over seeds (population std). ↑ higher is better, ↓ lower is better. In brackets: the "
             "paper's value (see each dataset's note for what it compares to).", "", TARGETS_NOTE, ""]
    for dataset, metrics in summary.items():
        models = sorted({m for by_model in metrics.values() for m in by_model})
        reference = paper_reference(dataset, paper)
        lines += [f"## {dataset}", "", reference["note"], "", "| metric | " + " | ".join(models) + " |",
                  "|---|" + "---|" * len(models)]
        for metric, by_model in metrics.items():
            cells = []
            for model in models:
                if model not in by_model:
                    cells.append("–")
                    continue
                mean, std, _ = by_model[model]
                ref = reference["values"].get(metric, {}).get(model)
                cells.append(mean_std(mean, std) + (f" [{ref}]" if ref is not None else ""))
            arrow = headline_metrics().get(metric, Metric(metric)).arrow
            lines.append(f"| {metric}{' ' + arrow if arrow else ''} | " + " | ".join(cells) + " |")
        lines += ["", *_claims_markdown(dataset, claims(metrics)), ""]
        lines += _samplers_markdown(dataset, (sampler_summary or {}).get(dataset))
    return "\n".join(lines) + "\n"


def sampler_rows(table: dict) -> list[tuple[str, str]]:
    """(model, sampler) rows of a dataset's sampler summary, models and samplers in the order first met."""
    rows: dict = {}
    for by_model in table.values():
        for model, by_sampler in by_model.items():
            for sampler in by_sampler:
                rows.setdefault((model, sampler), None)
    models = list(dict.fromkeys(model for model, _ in rows))
    return sorted(rows, key=lambda row: models.index(row[0]))


def _samplers_markdown(dataset: str, table: dict | None) -> list[str]:
    """A dataset's table of samplers: rows model × sampler, columns the sampler metrics."""
    if not table:
        return []
    metrics = sampler_metrics()
    columns = [m for m in SAMPLER_HEADLINES if m in table]
    lines = [f"### {dataset}: samplers", "", SAMPLERS_NOTE, "",
             "| model | sampler | " + " | ".join(f"{m} {metrics[m].arrow}".strip() for m in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for model, sampler in sampler_rows(table):
        cells = [mean_std(*table[m][model][sampler][:2]) if sampler in table[m].get(model, {}) else "–"
                 for m in columns]
        lines.append(f"| {model} | {sampler} | " + " | ".join(cells) + " |")
    return lines + [""]


def claims(metrics: dict) -> list[dict]:
    """For each claimed metric: the AVAE against the best other model, and whether the gap exceeds the spread."""
    out = []
    for metric in CLAIMED_BEST:
        by_model = metrics.get(metric, {})
        if "avae" not in by_model or len(by_model) < 2:
            continue
        sign = 1 if metric in LOWER_IS_BETTER else -1
        rival = min((m for m in by_model if m != "avae"), key=lambda m: sign * by_model[m][0])
        (a, sa, _), (b, sb, _) = by_model["avae"], by_model[rival]
        if a == b:
            verdict = "level with"
        else:
            verdict = "ahead of" if sign * (a - b) < 0 else "behind"
            if abs(a - b) <= sa + sb:
                verdict += " (within the seeds' spread)"
        out.append({"metric": metric, "avae": (a, sa), "rival": rival, "other": (b, sb),
                    "ratio": a / b if b else None, "verdict": verdict, "reference": _reference(metric, metrics)})
    return out


def _claims_markdown(dataset: str, rows: list[dict]) -> list[str]:
    out = [f"- {c['metric']}: AVAE {mean_std(*c['avae'])}, {c['verdict']} the best other model, {c['rival']} "
           f"{mean_std(*c['other'])}" + ("" if c["ratio"] is None else f", ratio {c['ratio']:.3g}")
           + (f" ({c['reference']})" if c["reference"] else "") + "."
           for c in rows]
    if out:
        out.insert(0, f"The paper reports the AVAE best on these metrics; on {dataset} here:")
    return out


def _reference(metric: str, metrics: dict) -> str:
    """For the entropy: the estimator's value on true Gaussian samples and l/2, beside the models'."""
    gaussian, half_l = metrics.get("entropy_gaussian", {}), metrics.get("entropy_reference", {})
    if metric != "entropy" or not half_l:
        return ""
    estimator = f"{next(iter(gaussian.values()))[0]:.4g} on true N(0, I) samples, " if gaussian else ""
    return f"reference: {estimator}l/2 = {next(iter(half_l.values()))[0]:.4g}"


def performance_markdown(perf: dict) -> str:
    peaks = perf["gemm_peak_gflops"]
    lines = ["## Performance", "", f"Measured {perf['device']} matrix-multiply peak: {peaks_text(peaks)}.", ""]
    for dataset, ds in perf["datasets"].items():
        lines += [f"### {dataset}", ""]
        if "avae_epoch_over_vae" in ds:
            lines.append(f"- AVAE epoch time over the VAE's: {ds['avae_epoch_over_vae']:.2f}")
        if "bandwidth_estimation_s" in ds:
            lines.append(f"- Bandwidth estimation: {ds['bandwidth_estimation_s']:.2f} s")
        lines += ["", "| model | threads | epoch (s) | images/s | GFLOP/s | % of float32 peak | re-encoding share |",
                  "|---|---|---|---|---|---|---|"]
        for name, m in sorted(ds["models"].items()):
            share = f"{100 * m['kde_refresh_share']:.0f} %" if "kde_refresh_share" in m else "–"
            lines.append(f"| {name} | {m.get('threads', '?')} | {m['epoch_s']:.1f} | {m['images_per_s']:.0f} | "
                         f"{m['gflops_per_s']:.1f} | {m['percent_of_float32_peak']:.0f} | {share} |")
        lines.append("")
    return "\n".join(lines) + "\n"
