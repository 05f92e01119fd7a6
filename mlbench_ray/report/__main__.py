"""The report command: re-render tables, plots, HTML and MLLOG files from stored results.

    python -m mlbench_ray.report results/cifar10-resnet20-allreduce
    python -m mlbench_ray.report results/a results/b mlbench-allreduce --output-dir reports/a-vs-b

One result set writes its report; several write a comparison (ratios against the first) and each
set's own report in a subfolder. `mlbench-allreduce` and `mlbench-ddp` name MLBench's published
CIFAR-10 results. Exit status: 0 on success, 2 when a result set cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlbench_ray.report.reference import REFERENCE_NAMES
from mlbench_ray.report.render import ReportError, load_result_set, write_comparison, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlbench_ray.report",
        description="Make the report (tables, plots, HTML, MLLOG) from stored results, without re-running.",
    )
    parser.add_argument(
        "results",
        nargs="+",
        help="a sweep's output folder or results.json (local, s3:// or gs://), or a reference: "
        + ", ".join(sorted(REFERENCE_NAMES)),
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="where to write; default: the result set's own folder for one local set, else ./report",
    )
    args = parser.parse_args(argv)

    try:
        documents = [load_result_set(location) for location in args.results]
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if len(documents) == 1:
        local = Path(args.results[0])
        default = Path("report")
        if local.is_dir():
            default = local
        elif local.exists():
            default = local.parent
        written = write_report(documents[0], args.output_dir or default)
    else:
        output_dir = args.output_dir or Path("report")
        written = write_comparison(documents, output_dir)
        for index, document in enumerate(documents):
            if document.get("source"):
                continue  # reference sets have no per-trial data to report on
            written += write_report(document, output_dir / f"{index}-{document['job']['name']}")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
