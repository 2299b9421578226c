"""Evaluation reports: a JSON document, a console table and a self-contained HTML page.

The HTML page has no external reference: styles are inline and the plots are PNG images
(matplotlib, Agg backend, imported only when a page is written) embedded as base64 data URIs, so
it can be mailed or archived and read offline.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any, Mapping, Sequence

from batchrec.evaluation.metrics import RANKED_METRICS

LIST_METRICS = ("coverage", "novelty", "popularity_percentile")


def metric_rows(report: Mapping[str, Any]) -> list[str]:
    """Metric names in display order: per-K metrics by K, then the list metrics."""
    names = [f"{m}@{k}" for m in RANKED_METRICS for k in report["k"]]
    present = set().union(*(r["metrics"] for r in report["recipes"])) if report["recipes"] else set()
    return [n for n in names if n in present] + [n for n in LIST_METRICS if n in present]


def format_table(report: Mapping[str, Any]) -> str:
    """A plain-text table: one row per metric, one column per recipe."""
    recipes = [r["recipe"] for r in report["recipes"]]
    rows = [["metric"] + recipes]
    for name in metric_rows(report):
        rows.append([name] + [_fmt(r["metrics"].get(name)) for r in report["recipes"]])
    rows.append(["train seconds"] + [_fmt(r["seconds"].get("train")) for r in report["recipes"]])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
                       for i, cell in enumerate(row)) for row in rows]
    lines += comparison_lines(report)
    split = report["split"]
    head = (f"protocol={report['protocol']} seed={report['seed']} "
            f"evaluated_users={split['evaluated_users']} truth_pairs={split['truth_pairs']} "
            f"train_interactions={split['train_interactions']}")
    return "\n".join([head, lines[0], "-" * len(lines[0])] + lines[1:])


def comparison_lines(report: Mapping[str, Any]) -> list[str]:
    """One sentence per recipe compared with the first (its ``versus_first`` entry)."""
    lines = []
    for r in report["recipes"]:
        versus = r.get("versus_first")
        if versus and versus["ratio"] is not None:
            lines.append(f"{r['recipe']} / {versus['baseline']} {versus['metric']}: "
                         f"{versus['ratio']:.2f}x ({versus['level']:.0%} interval "
                         f"{versus['low']:.2f} to {versus['high']:.2f}; {versus['wins']} users "
                         f"better, {versus['losses']} worse, {versus['ties']} equal)")
    return lines


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_json(spark, report: Mapping[str, Any], uri: str) -> None:
    """Write the report as indented JSON to ``uri`` (any Hadoop path), atomically through
    :func:`batchrec.fs.write_text_atomic`: a failure leaves the previous file and no temporary one."""
    from batchrec import fs

    fs.write_text_atomic(spark, str(uri), json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def plots(report: Mapping[str, Any]) -> dict[str, str]:
    """The report's figures as PNG data URIs: metric@K curves, popularity, coverage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    recipes, ks = report["recipes"], report["k"]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for ax, name in zip(axes.flat, RANKED_METRICS):
        for r in recipes:
            ax.plot(ks, [r["metrics"].get(f"{name}@{k}", 0.0) for k in ks], marker="o",
                    label=r["recipe"])
        ax.set_title(f"{name}@K")
        ax.set_xlabel("K")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    out["curves"] = _png(fig)
    plt.close(fig)

    with_hist = [r for r in recipes if r.get("popularity_histogram")]
    if with_hist:
        fig, ax = plt.subplots(figsize=(10, 4))
        catalog = with_hist[0]["popularity_histogram"]["catalog"]
        bins = len(catalog)
        centers = [(i + 0.5) / bins for i in range(bins)]
        total = sum(catalog) or 1
        ax.step(centers, [c / total for c in catalog], where="mid", color="black",
                label="catalogue items", linewidth=2)
        width = 0.8 / bins / len(with_hist)
        for n, r in enumerate(with_hist):
            counts = r["popularity_histogram"]["recommended"]
            share = sum(counts) or 1
            ax.bar([c - 0.4 / bins + (n + 0.5) * width for c in centers],
                   [c / share for c in counts], width=width, label=r["recipe"], alpha=0.8)
        ax.set_xlabel("item popularity percentile in training (0 = least, 1 = most popular)")
        ax.set_ylabel("share")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.set_title("Popularity of recommended items against the catalogue")
        fig.tight_layout()
        out["popularity"] = _png(fig)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    for r in recipes:
        ax.plot(ks, [r["metrics"].get(f"coverage@{k}", 0.0) for k in ks], marker="o",
                label=r["recipe"])
    ax.set_title("catalogue coverage@K")
    ax.set_xlabel("K")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out["coverage"] = _png(fig)
    plt.close(fig)
    return out


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], best: bool = False) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        numbers = [v for v in row[1:] if isinstance(v, float)]
        top = max(numbers) if best and numbers else None
        cells = [f"<td>{html.escape(str(row[0]))}</td>"]
        for v in row[1:]:
            text = html.escape(_fmt(v) if isinstance(v, float) or v is None else str(v))
            cells.append(f"<td class='num'>{'<b>' + text + '</b>' if v == top else text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


STYLE = ("body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
         "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px}td.num{text-align:right;"
         "font-family:monospace}th{background:#eee}img{max-width:100%}")


def render_html(report: Mapping[str, Any]) -> str:
    """The whole page as one string (no external reference)."""
    recipes = report["recipes"]
    figures = plots(report)
    metric_table = _table(["metric"] + [r["recipe"] for r in recipes],
                          [[n] + [r["metrics"].get(n) for r in recipes]
                           for n in metric_rows(report)], best=True)
    split_table = _table(["split", "value"], [[k, v] for k, v in report["split"].items()])
    comparisons = "".join(f"<p>{html.escape(line)}</p>" for line in comparison_lines(report))
    params = "".join(
        f"<h3>{html.escape(r['recipe'])}</h3><pre>{html.escape(json.dumps(r['params'], indent=1))}</pre>"
        + (_table(["trial", "params", report.get("hpo_metric", "value"), "seconds"],
                  [[t["trial"], json.dumps(t["params"]), t["value"], t["seconds"]]
                   for t in r.get("hpo_trials", [])]) if r.get("hpo_trials") else "")
        for r in recipes)
    images = "".join(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='{figures[key]}'>"
                     for key, title in (("curves", "Metrics at each cut-off"),
                                        ("popularity", "Popularity bias"),
                                        ("coverage", "Coverage"))
                     if key in figures)
    title = f"batchrec evaluation: {report['protocol']} protocol"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>run date {html.escape(str(report.get('run_date')))}, seed {report['seed']}, "
            f"catalogue of {report['catalog_items']} items, batchrec "
            f"{html.escape(str(report.get('batchrec_version')))}</p>"
            f"<h2>Metrics</h2>{metric_table}{comparisons}{images}<h2>Split</h2>{split_table}"
            f"<h2>Parameters</h2>{params}</body></html>\n")


def write_html(spark, report: Mapping[str, Any], uri: str) -> None:
    """Write :func:`render_html` to ``uri`` atomically (see :func:`write_json`)."""
    from batchrec import fs

    fs.write_text_atomic(spark, str(uri), render_html(report))
