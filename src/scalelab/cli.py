"""The ``scalelab`` command line: argument parsing and printing, nothing else.

Exit status: 0 success, 2 bad input (one line on stderr naming the problem; nothing
written), 1 anything else (including cells that failed), 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from pathlib import Path

from scalelab.errors import InputError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), like every other input error."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=False)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="scalelab", description="Measure, model and plan how compute and data scale drive performance.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    def with_store(sub):
        sub.add_argument("--store", default="scalelab.db", metavar="PATH", help="run store (default: ./scalelab.db)")

    demo = commands.add_parser("demo", help="run the built-in study on bundled data and print the results")
    demo.add_argument("--out", default="scalelab-demo", metavar="DIR", help="folder for the store and study file (default: ./scalelab-demo)")
    demo.add_argument("--quick", action="store_true", help="a smaller grid that finishes in under a minute on 2 cores")
    demo.add_argument("--workers", type=_positive_int, default=None, metavar="N", help="worker processes (default: one per core)")

    run = commands.add_parser("run", help="run or resume every unfinished cell of a study")
    run.add_argument("study", metavar="STUDY", help="study file (.toml), or the name of a study in the store")
    with_store(run)
    run.add_argument("--workers", type=_positive_int, default=None, metavar="N", help="worker processes (default: one per core)")
    run.add_argument("--executor", choices=["local"], default="local", help="where cells run (default: local)")
    run.add_argument("--retry-failed", action="store_true", help="also rerun failed and diverged cells")
    run.add_argument("--dry-run", action="store_true", help="list the cells with estimated FLOPs and time; train nothing")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    status = commands.add_parser("status", help="count a study's cells by state")
    status.add_argument("study", nargs="?", metavar="STUDY", help="study name or file (default: every study in the store)")
    with_store(status)
    status.add_argument("--format", choices=["table", "json"], default="table")

    runs = commands.add_parser("runs", help="one row per run, every recorded field")
    runs.add_argument("study", metavar="STUDY")
    with_store(runs)
    runs.add_argument("--format", choices=["table", "csv", "json"], default="table")
    return parser


def _version() -> str:
    from scalelab import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scalelab`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    handler = {"demo": cmd_demo, "run": cmd_run, "status": cmd_status, "runs": cmd_runs}[args.command]
    try:
        return handler(args)
    except BrokenPipeError:
        # The reader went away (`scalelab runs X | head`): not an error worth a traceback.
        sys.stdout = open(os.devnull, "w")
        return EXIT_OK
    except InputError as exc:
        # One line, always: a key or value holding a newline is shown escaped.
        print(f"scalelab: error: {exc}".replace("\n", "\\n"), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("scalelab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


# -- run -------------------------------------------------------------------------------
def cmd_run(args) -> int:
    from scalelab.study import Study, resolve_spec

    spec = resolve_spec(args.study, store=args.store)
    if args.dry_run:
        return _dry_run(spec, workers=args.workers)
    study = Study(spec, store=args.store)
    return _run_and_report(study, workers=args.workers, retry_failed=args.retry_failed, quiet=args.quiet)


def _run_and_report(study, *, workers, retry_failed: bool, quiet: bool) -> int:
    from scalelab.execute.runner import Interrupted

    out = _console()
    try:
        summary = study.run(workers=workers, retry_failed=retry_failed, progress=not quiet)
    except Interrupted as exc:
        print(f"scalelab: {exc}; unfinished cells are pending again. Rerun the same command to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    counts = summary.counts
    out.print(
        f"[bold]{study.name}[/]: trained {summary.ran} cells in {summary.wall_s:.1f} s; "
        + ", ".join(f"{state} {n}" for state, n in counts.items() if n)
    )
    if summary.busy_elsewhere:
        out.print(f"{summary.busy_elsewhere} cells are still running in another scalelab process.")
    if counts["failed"]:
        out.print(
            f"[red]{counts['failed']} cells failed.[/] See why with `scalelab runs {study.name} --format csv` "
            "(column 'reason'); rerun them with --retry-failed."
        )
        return EXIT_FAILED
    return EXIT_OK


def _dry_run(spec, *, workers) -> int:
    from rich.table import Table

    from scalelab.estimate import estimate_grid, preflight
    from scalelab.execute.local import available_cores

    workers = workers or available_cores()
    estimates = estimate_grid(spec, preflight(spec), workers=workers)
    table = Table(title=f"{spec.name}: {len(estimates)} cells (dry run, nothing trained)")
    table.add_column("cell", min_width=16)
    for key in spec.grid_keys:
        table.add_column(key, justify="right")
    for name in ("n_train", "params", "FLOPs", "est. time"):
        table.add_column(name, justify="right")
    for e in estimates:
        table.add_row(
            e.cell_id,
            *[_fmt(e.params[k]) for k in spec.grid_keys],
            f"{e.n_train:,}",
            f"{e.n_params:,}",
            f"{e.flops:.3g}",
            _fmt_seconds(e.seconds),
        )
    out = _console()
    out.print(table)
    total_flops = sum(e.flops for e in estimates)
    total_s = sum(e.seconds for e in estimates)
    out.print(
        f"Total: {total_flops:.3g} training FLOPs, about {_fmt_seconds(total_s / workers)} on {workers} workers "
        f"({_fmt_seconds(total_s)} of worker time; timed on this machine, excluding start-up and evaluation)."
    )
    return EXIT_OK


# -- status and runs ---------------------------------------------------------------------
def cmd_status(args) -> int:
    from rich.table import Table

    from scalelab.store import STATES, RunStore
    from scalelab.study import resolve_spec

    with RunStore.open_existing(args.store) as store:
        names = [resolve_spec(args.study, store=args.store).name] if args.study else store.study_names()
        for name in names:
            store.study_info(name)  # a study never run on this store is an input error, not zeros
        counts = {name: store.state_counts(name) for name in names}
    if args.format == "json":
        print(json.dumps({"studies": [{"study": n, **c, "total": sum(c.values())} for n, c in counts.items()]}))
        return EXIT_OK
    table = Table(title=f"cells by state in {args.store}")
    table.add_column("study")
    for state in (*STATES, "total"):
        table.add_column(state, justify="right")
    for name, c in counts.items():
        table.add_row(name, *[str(c[s]) for s in STATES], str(sum(c.values())))
    _console().print(table)
    return EXIT_OK


TABLE_COLUMNS = ("test_loss", "test_error", "n_params", "n_train", "epochs", "flops", "wall_s", "samples_per_s")


def cmd_runs(args) -> int:
    from scalelab.runs import runs_records
    from scalelab.store import RunStore
    from scalelab.study import resolve_spec

    spec_name = resolve_spec(args.study, store=args.store).name
    with RunStore.open_existing(args.store) as store:
        columns, rows = runs_records(store, spec_name)
    if args.format == "json":
        print(json.dumps([{k: _json_value(row[k]) for k in columns} for row in rows], indent=None))
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in columns})
    else:
        from rich.table import Table

        grid_keys = columns[2 : columns.index("train_loss")]
        shown = ["cell_id", "state", *grid_keys, *TABLE_COLUMNS]
        table = Table(title=f"{spec_name}: {len(rows)} runs", caption="--format csv or json shows every field")
        for name in shown:
            table.add_column(name, justify="left" if name in ("cell_id", "state") else "right", min_width=16 if name == "cell_id" else None)
        for row in rows:
            table.add_row(*[_fmt(row.get(name)) for name in shown])
        _console().print(table)
    return EXIT_OK


# -- demo ------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from scalelab.demo import prepare_demo, print_demo_results

    study = prepare_demo(out_dir=Path(args.out), quick=args.quick)
    _console().print(f"Demo study [bold]{study.name}[/]: {len(study.spec.cells)} cells, store {study.store_path}")
    status = _run_and_report(study, workers=args.workers, retry_failed=False, quiet=False)
    if status == EXIT_INTERRUPTED:
        return status
    print_demo_results(study, _console())
    return status


# -- formatting ------------------------------------------------------------------------
def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def _fmt_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
