"""Report files made from stored result sets: tables, plots, one self-contained HTML page, MLLOG files."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mlbench_ray.report import plots
from mlbench_ray.report.mlperf import write_trial_log
from mlbench_ray.report.reference import REFERENCE_NAMES, reference_result_set
from mlbench_ray.report.summary import render_csv, render_markdown, summarize_trials
from mlbench_ray.report.tables import REPORT_COLUMNS, WORKER_COLUMNS, report_json, report_row, worker_rows
from mlbench_ray.summarizer import RESULTS_FILE, write_atomically


class ReportError(RuntimeError):
    """A result set that cannot be read; the message names the location and the fix."""


def load_result_set(location: str) -> dict[str, Any]:
    """Read a result set from a folder or results.json, local or on cloud storage, or a reference name.

    Cloud locations (`s3://...`, `gs://...`) are read through pyarrow's file systems, which Ray installs.
    """
    if location in REFERENCE_NAMES:
        return reference_result_set(REFERENCE_NAMES[location])
    if "://" in location:
        import pyarrow.fs

        # The file name goes into the URI's path, before any query (`?endpoint_override=...`).
        parts = urlsplit(location)
        if not parts.path.endswith(".json"):
            parts = parts._replace(path=parts.path.rstrip("/") + "/" + RESULTS_FILE)
        path = urlunsplit(parts)
        try:
            filesystem, inner_path = pyarrow.fs.FileSystem.from_uri(path)
            with filesystem.open_input_stream(inner_path) as stream:
                text = stream.read().decode("utf-8")
        except (OSError, ValueError) as exc:
            raise ReportError(f"cannot read results from {path}: {exc}") from exc
    else:
        path_obj = Path(location)
        if path_obj.is_dir():
            path_obj = path_obj / RESULTS_FILE
        if not path_obj.is_file():
            raise ReportError(
                f"no results at {path_obj}; pass a sweep's output folder or its {RESULTS_FILE}, or one of "
                f"the references: {', '.join(sorted(REFERENCE_NAMES))}"
            )
        path = str(path_obj)
        text = path_obj.read_text(encoding="utf-8")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or "trials" not in document or "job" not in document:
        raise ReportError(f"{path} is not an mlbench_ray result set (no 'job' and 'trials')")
    return document


def _image_tag(png: bytes, alt: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _html_table(rows: list[dict[str, str]], columns: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1200px}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;font-size:13px}"
    "th{background:#eee}img{max-width:48%;margin:4px}pre{background:#f6f6f6;padding:1em;overflow:auto}"
)


def _html_page(title: str, sections: list[str]) -> str:
    # Everything is inline (styles, images as data URIs): the page needs no network access to view.
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>\n"
    )


def _dataset_note(document: dict[str, Any]) -> str:
    dataset = document.get("dataset") or {}
    verification = dataset.get("verification")
    if verification == "synthetic":
        return "Dataset: SYNTHETIC random images (smoke run); these times say nothing about the real task."
    if verification == "not verified":
        return f"Dataset: {dataset.get('label')} from {dataset.get('root')}, checksums NOT verified."
    return f"Dataset: {dataset.get('label')}, checksums verified."


def _metric_note(document: dict[str, Any]) -> list[str]:
    note = (document.get("labels") or {}).get("metric_note")
    return [note] if note else []


def write_report(document: dict[str, Any], output_dir: Path) -> list[Path]:
    """Write report.md/.csv/.json, the plots, report.html and one MLLOG file per trial; return the paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    row = report_row(document)
    rows = worker_rows(document)
    written: list[Path] = []

    markdown = "\n".join(
        [
            render_markdown([row], REPORT_COLUMNS),
            render_markdown(rows, WORKER_COLUMNS),
            _dataset_note(document),
            *_metric_note(document),
            "Baseline: 1-worker wall-clock time to goal, evaluation included; speedup = baseline / time(W).",
            "",
        ]
    )
    for name, text in (
        ("report.md", markdown),
        ("report.csv", render_csv([row], REPORT_COLUMNS)),
        ("report.json", json.dumps(report_json(document), indent=2) + "\n"),
    ):
        write_atomically(output_dir / name, text)
        written.append(output_dir / name)

    images = {
        "speedup": plots.speedup_plot([document]),
        "time_to_goal": plots.time_to_goal_plot([document]),
        "metric_over_time": plots.metric_curve_plot(document),
        "step_breakdown": plots.step_breakdown_plot(document),
    }
    plot_dir = output_dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    for name, png in images.items():
        (plot_dir / f"{name}.png").write_bytes(png)
        written.append(plot_dir / f"{name}.png")

    environments = {"sweep driver": document.get("environment")}
    for trial in document["trials"]:
        if trial.get("device_names"):
            environments[f"W={trial['workers']} seed={trial['seed']} devices"] = trial["device_names"]
    page = _html_page(
        f"mlbench_ray report: {document['job']['name']}",
        [
            "<h2>Result</h2>",
            _html_table([row], REPORT_COLUMNS),
            _html_table(rows, WORKER_COLUMNS),
            f"<p>{html.escape(_dataset_note(document))}</p>",
            "<h2>Plots</h2>",
            "".join(_image_tag(png, name) for name, png in images.items()),
            "<h2>Environment</h2>",
            f"<pre>{html.escape(json.dumps(environments, indent=2))}</pre>",
            "<h2>Dataset</h2>",
            f"<pre>{html.escape(json.dumps(document.get('dataset'), indent=2))}</pre>",
            "<h2>Job configuration</h2>",
            f"<pre>{html.escape(json.dumps(document['job'], indent=2))}</pre>",
        ],
    )
    write_atomically(output_dir / "report.html", page)
    written.append(output_dir / "report.html")

    for trial in document["trials"]:
        if trial.get("curve") is None:
            continue  # failed before training: nothing to log
        path = output_dir / "mllog" / f"w{trial['workers']}-seed{trial['seed']}.log"
        write_trial_log(document, trial, path)
        written.append(path)
    return written


COMPARISON_COLUMNS = ("Result set", *REPORT_COLUMNS, "Baseline Ratio", "Best Speedup Ratio")


def comparison_rows(documents: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Return one row per result set, with ratios against the first set (first / this for times)."""
    first = summarize_trials(documents[0]["trials"])
    rows = []
    for document in documents:
        summary = summarize_trials(document["trials"])
        baseline_ratio = (
            first["baseline_s"] / summary["baseline_s"]
            if first["baseline_s"] and summary["baseline_s"]
            else None
        )
        speedup_ratio = (
            summary["best_speedup"] / first["best_speedup"]
            if first["best_speedup"] and summary["best_speedup"]
            else None
        )
        rows.append(
            {
                "Result set": str(document.get("source") or document["job"]["name"]),
                **report_row(document),
                "Baseline Ratio": "n/a" if baseline_ratio is None else f"{baseline_ratio:.2f}x",
                "Best Speedup Ratio": "n/a" if speedup_ratio is None else f"{speedup_ratio:.2f}x",
            }
        )
    return rows


def write_comparison(documents: list[dict[str, Any]], output_dir: Path) -> list[Path]:
    """Write comparison.md/.csv/.json, side-by-side plots and comparison.html; return the paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = comparison_rows(documents)
    note = (
        "Baseline Ratio: the first set's 1-worker time divided by this set's (above 1: this set's baseline "
        "is faster). Best Speedup Ratio: this set's best speedup divided by the first set's."
    )
    images = {
        "speedup": plots.speedup_plot(documents),
        "time_to_goal": plots.time_to_goal_plot(documents),
    }
    written = []
    for name, text in (
        ("comparison.md", render_markdown(rows, COMPARISON_COLUMNS) + "\n" + note + "\n"),
        ("comparison.csv", render_csv(rows, COMPARISON_COLUMNS)),
        ("comparison.json", json.dumps(rows, indent=2) + "\n"),
    ):
        write_atomically(output_dir / name, text)
        written.append(output_dir / name)
    for name, png in images.items():
        (output_dir / f"comparison_{name}.png").write_bytes(png)
        written.append(output_dir / f"comparison_{name}.png")
    page = _html_page(
        "mlbench_ray comparison",
        [
            _html_table(rows, COMPARISON_COLUMNS),
            f"<p>{html.escape(note)}</p>",
            "".join(_image_tag(png, name) for name, png in images.items()),
        ],
    )
    write_atomically(output_dir / "comparison.html", page)
    written.append(output_dir / "comparison.html")
    return written
