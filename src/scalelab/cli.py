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
import shlex
import sys
from pathlib import Path

from scalelab.errors import InputError, did_you_mean
from scalelab.formatting import format_hours, format_metric, format_metric_interval, format_seconds, narrow_table

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), like every other input error."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _console(stderr: bool = False):
    from rich.console import Console

    # No markup: study names, paths and notes are the user's, and rich would read their
    # square brackets as styles ("ablation[v2]" printed as "ablation", "a[/]b" crashed).
    return Console(stderr=stderr, soft_wrap=False, markup=False, highlight=False)


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
    demo.add_argument("--lm", action="store_true", help="the language-model demo: GPTs at 3 FLOP budgets on the Python standard library, isoFLOP planning")
    demo.add_argument("--workers", type=_positive_int, default=None, metavar="N", help="worker processes (default: one per core)")

    run = commands.add_parser("run", help="run or resume every unfinished cell of a study")
    run.add_argument("study", metavar="STUDY", help="study file (.toml), or the name of a study in the store")
    with_store(run)
    run.add_argument("--workers", type=_positive_int, default=None, metavar="N", help="worker processes (default: one per core)")
    run.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                     help="torch threads per worker (default: its share of the cores, fewer while other processes keep some busy)")  # fmt: skip
    run.add_argument("--executor", choices=["local", "ray"], default="local", help="where cells run: a local process pool (default) or a Ray cluster")
    run.add_argument("--address", default=None, metavar="ADDR", help="with --executor ray: the cluster to join (host:port, ray://host:port or auto); default: a private local instance")
    run.add_argument("--retry-failed", action="store_true", help="also rerun failed and diverged cells")
    run.add_argument("--dry-run", action="store_true", help="list the cells with estimated FLOPs and time; train nothing")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--track", choices=["mlflow"], default=None,
                     help="also log the runs to MLflow (MLFLOW_TRACKING_URI, else the study's [tracking] mlflow, else MLflow's default)")  # fmt: skip
    run.add_argument("--track-every", type=_seconds, default=30.0, metavar="SECONDS",
                     help="while tracking, log the cells finished so far at most this often (default 30; 0: after every cell)")  # fmt: skip

    status = commands.add_parser("status", help="count a study's cells by state")
    status.add_argument("study", nargs="?", metavar="STUDY", help="study name or file (default: every study in the store)")
    with_store(status)
    status.add_argument("--format", choices=["table", "json"], default="table")

    def law_arguments(sub):
        sub.add_argument("source", metavar="SOURCE", help="a study (file or name in the store) or a CSV file")
        with_store(sub)
        sub.add_argument("--x", action="append", metavar="COL", help="scale column; twice for a joint law in (N, D) (study default: n_train)")
        sub.add_argument("--y", metavar="COL", help="target column (study default: its [target] metric)")
        sub.add_argument("--group", metavar="COL", help="fit one law per value of this column")
        sub.add_argument("--level", type=_unit_interval, default=0.8, help="interval level (default 0.8)")
        sub.add_argument("--chance", type=_chance_level, default=None, metavar="LEVEL", help="chance level of an error-rate target (default 1 for columns named *error*)")
        sub.add_argument("--bootstrap", type=_positive_int, default=1000, metavar="N", help="bootstrap replicates for intervals (default 1000)")
        sub.add_argument("--format", choices=["table", "json"], default="table")

    fit = commands.add_parser("fit", help="fit scaling laws, with intervals and predictions")
    law_arguments(fit)
    fit.add_argument("--form", default="auto", help="auto (default: chosen by backtests inside the data) or a form name")
    fit.add_argument("--predict", nargs="+", metavar="V", help="x values to predict at (N,D pairs for two --x)")
    fit.add_argument("--via", metavar="LOSS", help="predict --y in two steps: the law of this loss column against --x, then a fitted link from the loss to --y")

    backtest = commands.add_parser("backtest", help="hold out the largest scales and score each form's extrapolation")
    law_arguments(backtest)
    backtest.add_argument("--form", action="append", metavar="NAME", help="forms to compare (default: every form for the x columns, and auto)")
    backtest.add_argument("--holdout", type=_positive_int, default=1, metavar="K", help="hold out the K largest scales (default 1)")
    backtest.add_argument("--gap", type=_gap, default=1.0, metavar="R", help="fit only on scales at most 1/R of the smallest held-out one (default 1)")

    plan = commands.add_parser("plan", help="compute-optimal size and data for a budget, or what reaches a target")
    plan.add_argument("source", metavar="SOURCE", help="a study (file or name in the store) or a CSV file")
    with_store(plan)
    question = plan.add_mutually_exclusive_group()
    question.add_argument("--budget", type=float, metavar="FLOPS", help="training compute to allocate")
    question.add_argument("--target", type=float, metavar="VALUE", help="metric value to reach")
    plan.add_argument("--approach", default="joint", metavar="NAME",
                      help="joint (the law L(N, D); needs --budget or --target), isoflop (each budget's profile) or envelope (the training curves' lower envelope; constant or wsd schedules)")
    plan.add_argument("--unique-tokens", type=float, default=None, metavar="U",
                      help="only U distinct tokens (samples, for other families) exist: plan --budget by the data-constrained law, epochs included")
    plan.add_argument("--x", action="append", metavar="COL", help="parameters column, then data column (study default: n_params, and samples, or tokens for text)")
    plan.add_argument("--y", metavar="COL", help="target column (study default: its [target] metric)")
    plan.add_argument("--flops", metavar="COL", help="measured training FLOPs column (study default: flops)")
    plan.add_argument("--group", metavar="COL", help="plan per value of this column as well (a study plans per family by default)")
    plan.add_argument("--hardware", metavar="NAME", help="estimate wall-clock hours on one: cpu (this store's measured peak), a100, h100, h200, l4, rtx4090, v100")
    plan.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default=None, help="precision of the planned run (default: bf16 on a GPU, fp32 on the CPU)")
    plan.add_argument("--utilisation", type=_unit_interval, metavar="U", help="MFU assumed (default: the runs' own on that device, else 40%%)")
    plan.add_argument("--level", type=_unit_interval, default=0.8, help="interval level (default 0.8)")
    plan.add_argument("--chance", type=_chance_level, default=None, metavar="LEVEL", help="chance level of an error-rate target")
    plan.add_argument("--bootstrap", type=_positive_int, default=1000, metavar="N", help="bootstrap replicates (default 1000)")
    plan.add_argument("--format", choices=["table", "json"], default="table")

    report = commands.add_parser("report", help="write a self-contained HTML report with plots")
    report.add_argument("source", metavar="SOURCE", help="a study (file or name in the store) or a CSV file")
    report.add_argument("-o", "--output", default="report.html", metavar="FILE", help="where to write it (default: ./report.html)")
    with_store(report)
    report.add_argument("--x", action="append", metavar="COL", help="scale column of the laws; twice for (N, D) (study default: n_train)")
    report.add_argument("--y", metavar="COL", help="target column (study default: its [target] metric)")
    report.add_argument("--group", metavar="COL", help="fit one law per value of this column (study default: one per model)")
    report.add_argument("--form", default="auto", help="auto (default) or a form name")
    report.add_argument("--level", type=_unit_interval, default=0.8, help="interval level (default 0.8)")
    report.add_argument("--chance", type=_chance_level, default=None, metavar="LEVEL", help="chance level of an error-rate target")
    report.add_argument("--bootstrap", type=_positive_int, default=1000, metavar="N", help="bootstrap replicates for intervals (default 1000)")

    transfer = commands.add_parser("transfer", help="effective data transferred by fine-tuning: D_T = D_E - D_F, with intervals")
    transfer.add_argument("study", metavar="STUDY", help="a study (file or name in the store) whose grid sweeps init_from")
    with_store(transfer)
    transfer.add_argument("--y", metavar="COL", help="metric compared (default: the study's [target] metric)")
    transfer.add_argument("--level", type=_unit_interval, default=0.8, help="interval level (default 0.8)")
    transfer.add_argument("--chance", type=_chance_level, default=None, metavar="LEVEL", help="chance level of an error-rate target")
    transfer.add_argument("--bootstrap", type=_positive_int, default=1000, metavar="N", help="bootstrap replicates (default 1000)")
    transfer.add_argument("--format", choices=["table", "json"], default="table")

    hparams = commands.add_parser("hparams", help="the best learning rate and batch size at each size and amount of data, and the laws they follow")
    hparams.add_argument("study", metavar="STUDY", help="a study (file or name in the store) whose grid sweeps lr and/or batch_size")
    with_store(hparams)
    hparams.add_argument("--y", metavar="COL", help="the target whose validation counterpart settings are chosen on (default: the study's [target])")
    hparams.add_argument("--at", nargs="+", metavar="N,D", help="recommend lr and batch_size for these (parameters, data) pairs")
    hparams.add_argument("--budget", type=float, action="append", metavar="FLOPS", help="recommend for this training compute, by the laws against C")
    hparams.add_argument("--level", type=_unit_interval, default=0.8, help="interval level (default 0.8)")
    hparams.add_argument("--bootstrap", type=_positive_int, default=300, metavar="N", help="bootstrap replicates (default 300)")
    hparams.add_argument("--format", choices=["table", "json"], default="table")

    runs = commands.add_parser("runs", help="one row per run, every recorded field")
    runs.add_argument("study", metavar="STUDY")
    with_store(runs)
    runs.add_argument("--format", choices=["table", "csv", "json"], default="table")
    runs.add_argument("--curves", action="store_true", help="the runs' training curves instead: one row per evaluation (step, samples, FLOPs, losses)")
    return parser


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _chance_level(text: str) -> float:
    """The chance level of an error rate: a number in (0, 1] (an error rate cannot exceed 1)."""
    value = _number(text)
    if not 0 < value <= 1:  # also refuses nan, for which every comparison is false
        raise argparse.ArgumentTypeError(f"{text}: the chance level of an error rate must be in (0, 1]")
    return value


def _gap(text: str) -> float:
    """--gap: a finite ratio of at least 1 between the largest fitted and the smallest held-out scale."""
    value = _number(text)
    if not (math.isfinite(value) and value >= 1):
        raise argparse.ArgumentTypeError(f"{text}: must be a finite number of at least 1")
    return value


def _seconds(text: str) -> float:
    """A finite number of seconds, 0 or more."""
    value = _number(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text}: must be a finite number of seconds, 0 or more")
    return value


def _unit_interval(text: str) -> float:
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be between 0 and 1")
    return value


def _version() -> str:
    from scalelab import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scalelab`` console script; returns the exit status."""
    _stop_on_sigterm()
    args = build_parser().parse_args(argv)
    handler = {
        "demo": cmd_demo,
        "run": cmd_run,
        "status": cmd_status,
        "runs": cmd_runs,
        "fit": cmd_fit,
        "backtest": cmd_backtest,
        "plan": cmd_plan,
        "report": cmd_report,
        "transfer": cmd_transfer,
        "hparams": cmd_hparams,
    }[args.command]
    import errno
    import sqlite3

    from scalelab.store import StoreError, store_failure

    try:
        return handler(args)
    except BrokenPipeError:
        # The reader went away (`scalelab runs X | head`): not an error worth a traceback.
        sys.stdout = open(os.devnull, "w")
        return EXIT_OK
    except InputError as exc:
        # One line, always: a key or value holding a newline is shown escaped. A damaged
        # store, or one a writer cannot write, is such an error too (StoreCorruptError,
        # StoreReadOnlyError): the --store given cannot be used, and nothing was written.
        print(f"scalelab: error: {exc}".replace("\n", "\\n"), file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        # A full disk (or a failing one) is exit 1, not 2: nothing the user gave is at
        # fault, and the command may have recorded work before the disk filled (the
        # contract's exit 2 promises nothing written). The same command finishes later.
        print(f"scalelab: error: {exc}".replace("\n", "\\n"), file=sys.stderr)
        return EXIT_FAILED
    except (sqlite3.DatabaseError, OSError) as exc:
        # The same failures met outside an open store (its own errors are StoreErrors).
        if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:  # a path the user gave
            print(f"scalelab: error: {exc.filename or 'a path'}: the file name is longer than this system allows", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(exc, OSError):
            failure = StoreError(f"{exc.filename or 'a file'}: the disk is full (no space left on the device)") if exc.errno == errno.ENOSPC else None
        else:
            failure = store_failure(Path(getattr(args, "store", None) or "scalelab.db"), exc, writing=args.command in ("run", "demo"))
        if failure is None:
            raise
        print(f"scalelab: error: {failure}".replace("\n", "\\n"), file=sys.stderr)
        return EXIT_USAGE if isinstance(failure, InputError) else EXIT_FAILED
    except KeyboardInterrupt:
        _ignore_further_interrupts()
        print("scalelab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def console_main() -> None:
    """Entry point of the ``scalelab`` console script and of ``python -m scalelab``.

    Runs :func:`main` and exits with its status; an interrupt before a command could
    report it (during the imports, say) exits 130 all the same.
    """
    try:
        status = main()
    except KeyboardInterrupt:
        _ignore_further_interrupts()
        print("scalelab: interrupted", file=sys.stderr)
        status = EXIT_INTERRUPTED
    if status == EXIT_INTERRUPTED:
        # CPython 3.11 ends a process whose KeyboardInterrupt was raised inside an import
        # by re-sending itself SIGINT (exit -2), even when the exception was caught and
        # reported. Run the exit handlers ourselves, then leave with the promised 130.
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    raise SystemExit(status)


def _ignore_further_interrupts() -> None:
    """Once an interrupt is reported, a second SIGINT or SIGTERM while the process exits
    (workers and files still closing) would end it by the signal instead of exit 130."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


def _stop_on_sigterm() -> None:
    """SIGTERM stops like Ctrl-C (exit 130, one line) from the first moment, start-up
    included; a run installs its own handler for a clean stop and puts this one back."""
    import signal
    import threading

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


# -- run -------------------------------------------------------------------------------
def cmd_run(args) -> int:
    from scalelab.study import Study, resolve_spec

    spec = resolve_spec(args.study, store=args.store)
    if args.dry_run:
        return _dry_run(spec, workers=args.workers)
    study = Study(spec, store=args.store)
    return _run_and_report(
        study, workers=args.workers, threads=args.threads, retry_failed=args.retry_failed, quiet=args.quiet, executor=args.executor,
        address=args.address, track=args.track, track_every_s=args.track_every,
    )


def _run_and_report(study, *, workers, retry_failed: bool, quiet: bool, executor: str = "local", address: str | None = None,
                    threads: int | None = None, track: str | None = None, track_every_s: float = 30.0) -> int:  # fmt: skip
    from scalelab.execute.runner import Interrupted
    from scalelab.tracking import TrackingError

    out = _console()
    tracking_failure = None
    try:
        summary = study.run(workers=workers, threads=threads, executor=executor, address=address, retry_failed=retry_failed,
                            progress=not quiet, track=track, track_every_s=track_every_s)  # fmt: skip
    except Interrupted as exc:
        print(f"scalelab: {exc}; unfinished cells are pending again. Rerun the same command to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except TrackingError as failure:
        # The training is in the store either way; only the copy in MLflow is missing.
        if failure.interrupted is not None:
            print(f"scalelab: {failure.interrupted}; unfinished cells are pending again. Rerun the same command to resume.", file=sys.stderr)
            print(f"scalelab: error: {failure}".replace("\n", "\\n"), file=sys.stderr)
            return EXIT_INTERRUPTED
        summary, tracking_failure = failure.summary, failure
    counts = summary.counts
    out.print(
        f"{study.name}: trained {summary.ran} cells"
        + (f" and {summary.pretrained} pretrained checkpoint{'s' * (summary.pretrained != 1)}" if summary.pretrained else "")
        + f" in {summary.wall_s:.1f} s; "
        + ", ".join(f"{state} {n}" for state, n in counts.items() if n)
    )
    if summary.busy_elsewhere:
        out.print(f"{summary.busy_elsewhere} cells are still running in another scalelab process.")
    if tracking_failure is not None:
        print(f"scalelab: error: {tracking_failure}; the results are in the store, and rerunning the same command logs them".replace("\n", "\\n"),
              file=sys.stderr)  # fmt: skip
    elif getattr(summary, "tracked", None) is not None:
        target, logged = summary.tracked
        out.print(f"MLflow: {logged.created} runs created, {logged.updated} updated, {logged.unchanged} unchanged "
                  f"in experiment {target.experiment!r} at {target.uri}")  # fmt: skip
    if counts["failed"]:
        out.print(
            f"{counts['failed']} cells failed. See why with `scalelab runs {shlex.quote(study.name)} "
            f"--store {shlex.quote(str(study.store_path))} --format csv` (column 'reason'); rerun them with --retry-failed."
        )
        return EXIT_FAILED
    return EXIT_OK if tracking_failure is None else EXIT_FAILED


def _dry_run(spec, *, workers) -> int:
    from scalelab.estimate import estimate_grid, preflight
    from scalelab.execute.threads import available_cores
    from scalelab.spec import pretraining_cells

    workers = workers or available_cores()
    shapes = preflight(spec)
    estimates = estimate_grid(spec, shapes, workers=workers)
    pretraining = estimate_grid(spec, shapes, workers=workers, cells=pretraining_cells(spec))
    # Least needed last: a narrow terminal loses n_train before the time estimate.
    columns = ["cell", *spec.grid_keys, "est. time", "FLOPs", "params", "n_train"]
    rows = [[e.cell_id, *[_fmt(e.params[k]) for k in spec.grid_keys], format_seconds(e.seconds), f"{e.flops:.3g}", f"{e.n_params:,}",
             f"{e.n_train:,}"] for e in estimates]  # fmt: skip
    out = _console()
    out.print(narrow_table(f"{spec.name}: {len(estimates)} cells (dry run, nothing trained)", columns, rows, width=out.width,
                           keep=1 + len(spec.grid_keys), left=("cell",)))  # fmt: skip
    total_flops = sum(e.flops for e in estimates)
    total_s = sum(e.seconds for e in estimates)
    out.print(
        f"Total: {total_flops:.3g} training FLOPs, about {format_seconds(total_s / workers)} on {workers} workers "
        f"({format_seconds(total_s)} of worker time; timed on this machine, excluding start-up and evaluation)."
    )
    if pretraining:
        out.print(
            f"Before them, the [pretrain] stage: {len(pretraining)} checkpoints (one per model and seed), "
            f"{sum(e.flops for e in pretraining):.3g} training FLOPs, about {format_seconds(sum(e.seconds for e in pretraining))} "
            "of worker time; checkpoints already in the store are reused."
        )
    return EXIT_OK


# -- status and runs ---------------------------------------------------------------------
def cmd_status(args) -> int:
    from rich.table import Table

    from scalelab.store import STATES, RunStore
    from scalelab.study import resolve_spec

    from scalelab.runs import grid_changes, runs_records

    changes = None
    with RunStore.open_existing(args.store) as store:
        if args.study:
            # The grid as the study's file (or the store's record of it) reads now: an
            # edited file is counted by its own cells, not the ones the store last ran.
            spec = resolve_spec(args.study, store=args.store)
            store.study_info(spec.name)  # a study never run on this store is an input error, not zeros
            _, rows = runs_records(store, spec.name, spec=spec)
            counts = {spec.name: {state: sum(r["state"] == state for r in rows) for state in STATES}}
            changes = grid_changes(store, spec)
        else:
            counts = {name: store.state_counts(name) for name in store.study_names()}
    if args.format == "json":
        extra = {"changes": changes.__dict__} if changes is not None else {}
        _print_json({"studies": [{"study": n, **c, "total": sum(c.values()), **extra} for n, c in counts.items()]})
        return EXIT_OK
    table = Table(title=f"cells by state in {args.store}")
    table.add_column("study")
    for state in (*STATES, "total"):
        table.add_column(state, justify="right")
    for name, c in counts.items():
        table.add_row(name, *[str(c[s]) for s in STATES], str(sum(c.values())))
    _console().print(table)
    if changes is not None and (line := changes.describe(args.study)):
        _console().print(line)
    return EXIT_OK


TABLE_COLUMNS = ("test_loss", "test_error", "n_params", "n_train", "epochs", "flops", "wall_s", "samples_per_s")


def cmd_runs(args) -> int:
    from scalelab.runs import curve_records, grid_changes, runs_records
    from scalelab.store import RunStore
    from scalelab.study import resolve_spec

    spec = resolve_spec(args.study, store=args.store)
    spec_name = spec.name
    with RunStore.open_existing(args.store) as store:
        store.study_info(spec_name)  # a study never run on this store is an input error
        columns, rows = runs_records(store, spec_name, spec=spec)
        changed = grid_changes(store, spec).describe(args.study)
        if args.curves:
            columns, rows = curve_records(store, spec, columns, rows)
    if changed:  # stderr: the table, CSV or JSON on stdout stays what a script reads
        print(f"scalelab: {changed}", file=sys.stderr)
    if args.curves and not rows:
        print(f"scalelab: {spec_name}: no run has a training curve yet (torch runs record one; train.eval_points = 0 records none)", file=sys.stderr)
    if args.format == "json":
        _print_json([{k: row[k] for k in columns} for row in rows])
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in columns})
    elif args.curves:
        out = _console()
        cells = [[_fmt(row.get(name)) for name in columns] for row in rows]
        out.print(narrow_table(f"{spec_name}: {len(rows)} evaluations", columns, cells, width=out.width, left=("cell_id",),
                               caption="--format csv or json for plotting"))  # fmt: skip
    else:
        out = _console()
        grid_keys = columns[2 : columns.index("train_loss")]
        # The target metric right after the grid: at 80 columns it is what a reader wants.
        metrics = [spec.target_metric, *(c for c in TABLE_COLUMNS if c != spec.target_metric)]
        shown = ["cell_id", "state", *grid_keys, *(m for m in metrics if m in columns)]
        cells = [[_fmt(row.get(name)) for name in shown] for row in rows]
        out.print(narrow_table(f"{spec_name}: {len(rows)} runs", shown, cells, width=out.width, keep=2 + len(grid_keys),
                               left=("cell_id", "state"), caption="--format csv or json shows every field"))  # fmt: skip
    return EXIT_OK


# -- laws ------------------------------------------------------------------------------
def _law_source(args, *, default_x=("n_train",), what="--x COL and --y COL"):
    """The rows to fit (a CSV's, or a study's runs on its curves) and the x and y columns."""
    from scalelab.fitting import default_chance, load_source

    src = load_source(args.source, store=args.store, x_cols=args.x, y_col=args.y, group=args.group, default_x=default_x)
    x_cols = args.x or (src.x_cols if src.target else None)
    y_col = args.y or src.target
    if not x_cols or not y_col:
        raise InputError(f"{src.label}: give {what} for a CSV file")
    if len(x_cols) > 2:
        raise InputError(f"--x was given {len(x_cols)} times; a law takes one x, or two (N, D)")
    if len(x_cols) == 2 and x_cols[0] == x_cols[1]:
        raise InputError(f"--x {x_cols[0]} was given twice; a joint law takes two different columns (N, D)")
    if args.chance is None:
        args.chance = default_chance(src.table, y_col)
    return src, x_cols, y_col


def _print_curves(out, src) -> None:
    """On a study: what the curves split on, what they hold fixed and what they left out."""

    if src.changes:
        out.print(src.changes)
    if src.curves is not None:
        for line in src.curves.summary():
            out.print(line)


def _curves_json(src) -> dict:
    if src.curves is None:
        return {}
    return {"curves": src.curves.to_dict(), **({"changes": src.changes} if src.changes else {})}


def cmd_fit(args) -> int:
    from scalelab.fitting import fit_source
    from scalelab.laws import FORMS

    if args.form != "auto" and args.form not in FORMS:  # before any data is read or fitted
        raise InputError(f"--form {args.form!r}: unknown{did_you_mean(args.form, ['auto', *FORMS])}; known: auto, {', '.join(FORMS)}")
    src, x_cols, y_col = _law_source(args)
    results = fit_source(src, x_cols=x_cols, y_col=y_col, form=args.form, predict=args.predict, level=args.level,
                         chance=args.chance, n_boot=args.bootstrap, via=args.via)  # fmt: skip
    if args.format == "json":
        _print_json({"groups": [{k: v for k, v in r.items() if k != "_law"} for r in results], **_curves_json(src)})
        return EXIT_OK
    from rich.table import Table

    from scalelab.fitting import is_error_rate

    grouped = src.group is not None
    via = f" via {args.via}" if args.via else ""
    table_out = Table(title=f"{src.label}: {y_col}{via} vs {' and '.join(x_cols)}", caption=f"intervals: {args.level:.0%} bootstrap over runs")
    for name in (["curve" if src.curves is not None else "group"] if grouped else []) + ["form", "parameters", "points", "predictions"]:
        table_out.add_column(name)
    bounded = False
    for r in results:
        law = _loss_law(r.get("_law"))
        if law is None:
            row = ["—", r.get("error", ""), "", ""]
        else:
            spans = law.param_intervals(args.level)
            at_bound = r["at_bound"]
            bounded = bounded or bool(at_bound)
            params = "\n".join(
                f"{k} = {_fmt(v)} [{_fmt(spans[k][0])}, {_fmt(spans[k][1])}]" + (f" (at its {at_bound[k]} bound)" if k in at_bound else "")
                for k, v in law.params.items()
            )  # fmt: skip
            preds = "\n".join(
                f"{_fmt(p['x']) if not isinstance(p['x'], list) else ','.join(_fmt(v) for v in p['x'])} → "
                + format_metric_interval(p["y"], p["lo"], p["hi"], percent=is_error_rate(y_col))
                + (f" ({args.via} {_fmt(p['loss'])})" if "loss" in p else "")
                for p in r["predictions"]
            )
            row = [law.form, params, str(law.n_points), preds]
        table_out.add_row(*([_fmt(r["group"])] if grouped else []), *row)
    out = _console()
    _print_curves(out, src)
    out.print(table_out)
    if bounded:
        out.print("A parameter at its bound: the data do not pin it down within the form's range; read the law's other parameters with care.")
    for r in results:
        if "link" in r:
            p = r["link"]["params"]
            prefix = f"{_fmt(r['group'])}: " if grouped else ""
            out.print(f"{prefix}{y_col} = {_fmt(p['lo'])} + ({_fmt(p['hi'])} − {_fmt(p['lo'])})·σ({'' if r['link']['sign'] > 0 else '−'}{_fmt(p['k'])}·"
                      f"({args.via} − {_fmt(p['L0'])})), fitted on the runs' {args.via} from {_fmt(r['link']['loss_range'][0])} to "
                      f"{_fmt(r['link']['loss_range'][1])}; scatter {_fmt(r['link']['scatter'])}")  # fmt: skip
    for r in results:
        law = _loss_law(r.get("_law"))
        if law is not None and law.selection:
            prefix = f"{_fmt(r['group'])}: " if grouped else ""
            out.print(f"{prefix}{law.selection_summary()}")
            if grouped and len(results) > 5:
                out.print("(auto selection shown for the first group only; --format json has every group's scores)")
                break
    return EXIT_OK


def _loss_law(law):
    """The fitted law of a result: a two-step chain's first step (its loss law), else itself."""
    return getattr(law, "loss_law", law)


def cmd_backtest(args) -> int:
    from scalelab.fitting import backtest_source
    from scalelab.laws.core import ONE_X_AUTO, TWO_X_AUTO

    from scalelab.laws import FORMS

    unknown = [f for f in args.form or [] if f != "auto" and f not in FORMS]
    if unknown:
        raise InputError(f"--form {unknown[0]!r}: unknown{did_you_mean(unknown[0], ['auto', *FORMS])}; known: auto, {', '.join(FORMS)}")
    src, x_cols, y_col = _law_source(args)
    forms = args.form or [*(ONE_X_AUTO if len(x_cols) == 1 else TWO_X_AUTO), "auto"]
    results = backtest_source(src, x_cols=x_cols, y_col=y_col, forms=forms, holdout=args.holdout, gap=args.gap, level=args.level,
                              chance=args.chance, n_boot=args.bootstrap)  # fmt: skip
    if args.format == "json":
        payload = [{"group": g["group"], **({"curve": g["curve"]} if "curve" in g else {}),
                    **({"error": g["error"]} if "error" in g else {}), "forms": [r.to_dict() for r in g["rows"]]} for g in results]  # fmt: skip
        _print_json({"groups": payload, **_curves_json(src)})
        return EXIT_OK
    from rich.table import Table

    out = _console()
    _print_curves(out, src)
    for g in results:
        title = f"{src.label}: backtest of {y_col}, holding out the {args.holdout} largest scale(s)"
        if src.group is not None:
            title += f" — {_fmt(g['group'])}" if src.curves is not None else f" — {src.group} = {_fmt(g['group'])}"
        t = Table(title=title, caption=f"errors at the held-out points; coverage of the {args.level:.0%} interval")
        for name in ("form", "fit on", "abs. error", "rel. error", "coverage", "note"):
            t.add_column(name, justify="left" if name in ("form", "note") else "right")
        for r in sorted(g["rows"], key=lambda r: (r.error is not None, r.abs_error)):
            if r.error:
                t.add_row(r.form, str(r.n_fit), "", "", "", r.error)
            else:
                note = f"chose {r.chosen}" if r.chosen else ""
                t.add_row(r.form, str(r.n_fit), _fmt(r.abs_error), f"{r.rel_error:.1%}", f"{r.coverage:.0%}", note)
        out.print(t)
        if "error" in g:
            out.print(f"{g['error']}")
    return EXIT_OK


def cmd_plan(args) -> int:
    from scalelab.fitting import plan_source

    if args.hardware is not None:
        from scalelab.hardware import check_hardware

        check_hardware(args.hardware, args.precision)  # an unknown name fails before any fitting
    from scalelab.curves import planning_x
    from scalelab.fitting import APPROACHES

    if args.approach not in APPROACHES:  # before any data is read or fitted
        raise InputError(f"--approach {args.approach!r}: unknown; use one of {', '.join(APPROACHES)}")
    src, x_cols, y_col = _law_source(args, default_x=planning_x, what="--x N_COL --x D_COL and --y COL")
    flops_col = args.flops or ("flops" if src.target else None)
    result = plan_source(
        src, x_cols=x_cols, y_col=y_col, flops_col=flops_col, budget=args.budget, target=args.target,
        hardware=args.hardware, precision=args.precision, utilisation=args.utilisation, level=args.level,
        chance=args.chance, n_boot=args.bootstrap, approach=args.approach, unique=args.unique_tokens,
    )  # fmt: skip
    if args.format == "json":
        _print_json({"plans": [{k: v for k, v in p.items() if k != "_law"} for p in result["plans"]], "skipped": result["skipped"],
                     **_curves_json(src)})  # fmt: skip
        return EXIT_OK
    out = _console()
    _print_curves(out, src)
    for skipped in result["skipped"]:
        out.print(f"{_fmt(skipped['group'])}: not planned: {skipped['why']}.")
    for plan in result["plans"]:
        label = src.label if plan["group"] is None else f"{src.label}: {_fmt(plan['group'])}"
        if plan.get("approach") == "isoflop":
            _print_isoflop(out, plan, label=label, x_cols=x_cols, y_col=y_col, level=args.level)
        elif plan.get("approach") == "envelope":
            _print_envelope(out, plan, label=label, x_cols=x_cols, level=args.level)
        elif plan.get("approach") == "data-constrained":
            _print_data_constrained(out, plan, label=label, x_cols=x_cols, y_col=y_col, level=args.level)
        else:
            _print_plan(out, plan, label=label, x_cols=x_cols, y_col=y_col, level=args.level)
        _print_plan_settings(out, plan)
    return EXIT_OK


def _print_plan_settings(out, plan: dict) -> None:
    """The learning rate and batch size the planned run should use, when the grid swept them."""
    if "hparams_error" in plan:
        out.print(f"No learning-rate or batch-size law: {plan['hparams_error']}")
    rec = plan.get("hparams")
    if not rec:
        return
    parts = [f"{name} = {rec[name]:.3g} [{rec[name + '_range'][0]:.3g}, {rec[name + '_range'][1]:.3g}]"
             for name in ("lr", "batch_size") if rec.get(name) is not None]  # fmt: skip
    beyond = {k: v for k, v in rec["extrapolation"].items() if v > 0}
    far = (", extrapolated " + ", ".join(f"{v:.2g} e-folds in {k}" for k, v in beyond.items())) if beyond else ""
    out.print("Settings for the planned run (scalelab hparams): " + "; ".join(parts) + f" ({rec['level']:.0%} intervals{far})")


def _print_isoflop(out, result: dict, *, label: str, x_cols, y_col: str, level: float) -> None:
    from rich.table import Table

    fit = result["isoflop"]
    lvl = f"{level:.0%}"
    for note in result["notes"]:
        out.print(note)
    profiles = Table(title=f"{label}: isoFLOP profiles of {y_col} (floor of each parabola, {lvl} intervals)")
    for name in ("budget (FLOPs)", "runs", f"N* ({x_cols[0]})", f"{lvl} interval", f"D* ({x_cols[1]})", "D*/N*", f"{y_col} at N*"):
        profiles.add_column(name, justify="right")
    for p in fit["profiles"]:
        if p["n_params_opt"] is None:
            profiles.add_row(f"{p['flops']:.3g}", str(len(p["runs"])), "none", "", "", "", "")
            continue
        lo, hi = p["n_params_opt_range"] or (math.nan, math.nan)
        profiles.add_row(f"{p['flops']:.3g}", str(len(p["runs"])), f"{p['n_params_opt']:.3g}", f"[{lo:.3g}, {hi:.3g}]",
                         f"{p['tokens_opt']:.3g}", f"{p['tokens_opt'] / p['n_params_opt']:.3g}", _fmt(p["loss_opt"]))  # fmt: skip
    out.print(profiles)
    _print_power_laws(out, result, fit, x_cols=x_cols, lvl=lvl)


def _print_envelope(out, result: dict, *, label: str, x_cols, level: float) -> None:
    fit = result["envelope"]
    for note in result["notes"]:
        out.print(note)
    sizes = sorted({round(p["n_params_opt"]) for p in fit["envelope"]})
    out.print(f"{label}: the envelope of {fit['n_sizes']} sizes' training curves runs through "
              f"{len(sizes)} of them ({', '.join(f'{n:,}' for n in sizes)}) over {fit['envelope'][0]['flops']:.3g} to "
              f"{fit['envelope'][-1]['flops']:.3g} FLOPs")  # fmt: skip
    _print_power_laws(out, result, fit, x_cols=x_cols, lvl=f"{level:.0%}")


def _print_power_laws(out, result: dict, fit: dict, *, x_cols, lvl: str) -> None:
    """The exponents of N*(C) and D*(C), and the split of ``--budget`` and its hours when asked."""
    from rich.table import Table

    out.print(f"N*(C) ∝ C^a with a = {fit['a']:.3f} [{fit['a_range'][0]:.3f}, {fit['a_range'][1]:.3f}]; "
              f"D*(C) ∝ C^b with b = {fit['b']:.3f} [{fit['b_range'][0]:.3f}, {fit['b_range'][1]:.3f}] ({lvl} intervals; "
              "Chinchilla found a ≈ b ≈ 0.5)")  # fmt: skip
    if "budget" in result:
        b = result["budget"]
        answer = Table(title=f"Compute-optimal split of {b['flops']:.3g} FLOPs by the power laws of the optima ({lvl} intervals)")
        for name in ("quantity", "value", f"{lvl} interval"):
            answer.add_column(name, justify="left" if name == "quantity" else "right")
        answer.add_row(f"parameters N ({x_cols[0]})", f"{b['n_params']:.3g}", f"[{b['n_params_range'][0]:.3g}, {b['n_params_range'][1]:.3g}]")
        answer.add_row(f"training data D ({x_cols[1]})", f"{b['tokens']:.3g}", f"[{b['tokens_range'][0]:.3g}, {b['tokens_range'][1]:.3g}]")
        answer.add_row("D per parameter", f"{b['tokens_per_param']:.3g}",
                       f"[{b['tokens_per_param_range'][0]:.3g}, {b['tokens_per_param_range'][1]:.3g}]")  # fmt: skip
        out.print(answer)
    if "hardware" in result:
        _print_hours(out, result["hardware"])


def _print_data_constrained(out, result: dict, *, label: str, x_cols, y_col: str, level: float) -> None:
    """The optimum under the unique-data limit beside the unconstrained one, and what the limit costs."""
    from rich.table import Table

    params = result["law"]["params"]
    out.print(f"{label}: {y_col} ~ E + A/N'^α + B/D'^β with repeated data and excess parameters decaying "
              f"(R*_D = {params['rd_star']:.3g}, R*_N = {params['rn_star']:.3g}; α = {params['alpha']:.3g}, β = {params['beta']:.3g}, "
              f"E = {params['E']:.4g})")  # fmt: skip
    for note in result["notes"]:
        out.print(note)
    b, lvl = result["budget"], f"{level:.0%}"
    free = b.get("unconstrained") or b

    def span(values) -> str:
        return "" if values is None else f"[{values[0]:.3g}, {values[1]:.3g}]"

    answer = Table(title=f"{b['flops']:.3g} FLOPs with {result['unique']:.3g} unique {x_cols[1]} ({lvl} intervals)")
    for name in ("quantity", "with the limit", "interval", "unlimited data", "interval "):
        answer.add_column(name, justify="left" if name == "quantity" else "right")
    answer.add_row(f"parameters N ({x_cols[0]})", f"{b['n_params']:.3g}", span(b["n_params_range"]), f"{free['n_params']:.3g}", span(free.get("n_params_range")))
    answer.add_row(f"training data D ({x_cols[1]})", f"{b['tokens']:.3g}", span(b["tokens_range"]), f"{free['tokens']:.3g}", span(free.get("tokens_range")))
    answer.add_row("epochs over the unique data", f"{b['epochs']:.3g}", span(b.get("epochs_range")), "", "")
    answer.add_row(f"predicted {y_col} (the law's mean)", f"{b['loss']:.4g}", span(b["loss_range"]), f"{free['loss']:.4g}", span(free.get("loss_range")))
    out.print(answer)
    if b.get("excess_loss_range") is not None:
        lo, hi = b["excess_loss_range"]
        out.print(f"The data limit costs {b['loss'] - free['loss']:.3g} [{lo:.3g}, {hi:.3g}] in {y_col} at this budget.")
    else:
        out.print("The limit does not bind at this budget: the compute-optimal run needs no more data than exists.")


def _print_hours(out, h: dict) -> None:
    lo, hi = h["hours_range"]
    out.print(f"On one {h['name']} in {h['precision']}: about {h['hours']:.3g} hours [{lo:.3g}, {hi:.3g}] ({format_hours(h['hours'])}) at "
              f"{h['mfu']:.0%} MFU ({h['mfu_source']}; peak {h['peak_flops']:.3g} FLOP/s).")  # fmt: skip


def _print_plan(out, result: dict, *, label: str, x_cols, y_col: str, level: float) -> None:
    from rich.table import Table

    law = result["law"]
    at_bound = law["at_bound"]
    out.print(f"{label}: {y_col} ~ E + A/N^α + B/D^β with "
              + ", ".join(f"{k}={_fmt(v)}" + (f" (at its {at_bound[k]} bound)" if k in at_bound else "") for k, v in law["params"].items()))  # fmt: skip
    for note in result["notes"]:
        out.print(note)
    from scalelab.fitting import is_error_rate

    lvl = f"{level:.0%}"
    percent = is_error_rate(y_col)

    def metric(value) -> str:  # an error rate in percent, as fit, the demo and the report write it
        return format_metric(value, percent=percent)

    if "budget" in result:
        b = result["budget"]
        answer = Table(title=f"Compute-optimal split of {b['flops']:.3g} FLOPs ({lvl} intervals)")
        for name in ("quantity", "value", f"{lvl} interval"):
            answer.add_column(name, justify="left" if name == "quantity" else "right")
        answer.add_row("parameters N", f"{b['n_params']:.3g}", f"[{b['n_params_range'][0]:.3g}, {b['n_params_range'][1]:.3g}]")
        answer.add_row(f"training data D ({x_cols[1]})", f"{b['samples']:.3g}", f"[{b['samples_range'][0]:.3g}, {b['samples_range'][1]:.3g}]")
        answer.add_row(f"predicted {y_col}", metric(b["predicted"]), f"[{metric(b['lo'])}, {metric(b['hi'])}]")
        out.print(answer)
        near = result["nearest_run"]
        shown = {k: v for k, v in near.items() if k in (*x_cols, y_col, "cell_id", "width", "data_fraction", "family")}
        out.print("Nearest run in the data: " + ", ".join(f"{k}={metric(v) if k == y_col else _fmt(v)}" for k, v in shown.items()))
    else:
        t = result["target"]
        if not t["reachable"]:
            out.print(f"{y_col} = {t['value']:g} is not reachable under this law: {t['why']}.")
        else:
            flops_lo, flops_hi = t["extras"]["flops_range"]
            answer = Table(title=f"What {y_col} = {t['value']:g} needs, on the compute-optimal frontier ({lvl} intervals)")
            for name in ("quantity", "value", f"{lvl} interval"):
                answer.add_column(name, justify="left" if name == "quantity" else "right")
            answer.add_row("training compute (FLOPs)", f"{t['flops']:.3g}", f"[{flops_lo:.3g}, {_big(flops_hi)}]")
            answer.add_row("parameters N", f"{t['n_params']:.3g}", f"[{t['n_params_range'][0]:.3g}, {t['n_params_range'][1]:.3g}]")
            answer.add_row("training samples D", f"{t['samples']:.3g}", f"[{t['samples_range'][0]:.3g}, {t['samples_range'][1]:.3g}]")
            out.print(answer)
            if math.isinf(flops_hi):
                out.print(f"∞: in some bootstrap replicates the law's asymptote is at or above {t['value']:g}, so no compute reaches it.")
    best = result["best_run"]
    m = Table(title=f"From the best point (mean of {best['seeds']} run{'s' * (best['seeds'] != 1)}: {metric(best['mean'])}): "
                    f"what doubling buys ({lvl} intervals)")  # fmt: skip
    for name in ("option", "N", "D", f"predicted {y_col}"):
        m.add_column(name, justify="left" if name == "option" else "right")
    for name, v in result["marginal"].items():
        m.add_row(name, f"{v['n_params']:.3g}", f"{v['samples']:.3g}", format_metric_interval(v["predicted"], v["lo"], v["hi"], percent=percent))
    out.print(m)
    if "hardware" in result:
        _print_hours(out, result["hardware"])


def _big(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.3g}"


# -- report ----------------------------------------------------------------------------
def cmd_report(args) -> int:
    from scalelab.report import build_report

    output = Path(args.output).expanduser()
    if not output.parent.is_dir():  # checked first: nothing is fitted for a report that cannot be written
        raise InputError(f"-o {output}: the folder {output.parent} does not exist")
    if output.is_dir():
        raise InputError(f"-o {output}: is a folder; give a file name such as {output / 'report.html'}")
    report = build_report(
        args.source, store=args.store, x=args.x, y=args.y, group=args.group, form=args.form,
        level=args.level, chance=args.chance, n_boot=args.bootstrap,
    )  # fmt: skip
    path = report.write(output)
    _console().print(f"Report: {path} ({len(report.figures)} figures, {path.stat().st_size / 1e6:.1f} MB)")
    return EXIT_OK


# -- demo ------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from scalelab.demo import prepare_demo, print_demo_results, print_lm_results

    if args.lm and args.quick:
        raise InputError("--lm and --quick are two different demos; choose one")
    study = prepare_demo(out_dir=Path(args.out), quick=args.quick, lm=args.lm)
    _console().print(f"Demo study {study.name}: {len(study.spec.cells)} cells, store {study.store_path}")
    status = _run_and_report(study, workers=args.workers, retry_failed=False, quiet=False)
    if status == EXIT_INTERRUPTED:
        return status
    if not study.status()["done"]:
        _console().print("No cell finished, so there are no results, laws or report to show.")
        return status
    show = print_lm_results if args.lm else print_demo_results
    path = show(study, _console(), out_dir=Path(args.out))
    _console().print(f"Report: {path}")
    return status


# -- formatting ------------------------------------------------------------------------
def _print_json(payload) -> None:
    """Strict JSON on stdout: NaN and infinities become null (JSON has neither)."""
    print(json.dumps(strict_json(payload), allow_nan=False))


def strict_json(value):
    """``value`` with every non-finite float as None, NumPy scalars and tuples as plain JSON."""
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def cmd_transfer(args) -> int:
    from rich.table import Table

    from scalelab.study import load_study
    from scalelab.transfer import study_transfer

    study = load_study(args.study, store=args.store)
    result = study_transfer(study, y=args.y, level=args.level, n_boot=args.bootstrap, chance=args.chance)
    if args.format == "json":
        _print_json(result.to_dict())
        return EXIT_OK
    lvl = f"{result.level:.0%}"
    table = Table(title=f"{study.name}: data transferred by the checkpoint, on {result.metric} ({lvl} intervals)")
    for name in ("model", "fraction", "D_F", "tuned", "scratch", "D_E [interval]", "D_T [interval]"):
        table.add_column(name, justify="left" if name == "model" else "right", no_wrap=name.startswith("D_"))
    for p in result.points:
        table.add_row(
            p.model, _fmt(p.data_fraction), _count(p.d_f), f"{p.y_finetuned:.3g}", "" if p.y_scratch is None else f"{p.y_scratch:.3g}",
            f"{_count(p.d_e)}{'*' if p.extrapolated else ''} [{_count(p.d_e_lo)}, {_count(p.d_e_hi)}]",
            f"{_count(p.d_t)} [{_count(p.d_t_lo)}, {_count(p.d_t_hi)}]",
        )  # fmt: skip
    out = _console()
    out.print(table)
    out.print(
        f"tuned, scratch: mean {result.metric} of the fine-tuned and from-scratch runs at D_F target samples. D_E: from-scratch "
        "samples that match the fine-tuned runs, read off each model's from-scratch law; D_T = D_E − D_F."
    )
    if any(p.extrapolated for p in result.points):
        out.print("*: beyond the largest from-scratch run (the law extrapolated).")
    if result.fit is not None:
        intervals = ", ".join(f"{name} [{_fmt(lo)}, {_fmt(hi)}]" for name, (lo, hi) in result.fit.intervals.items())
        out.print(f"Fit over {result.fit.n_points} points: {result.fit.formula()} ({lvl}: {intervals})")
    for note in result.notes:
        out.print(note)
    return EXIT_OK


def cmd_hparams(args) -> int:
    from scalelab.fitting import parse_predict
    from scalelab.study import load_study
    from scalelab.tuning import study_hparams

    import numpy as np

    at = parse_predict(args.at, 2, option="--at") if args.at else None  # malformed pairs fail before any work
    if at is not None and not (np.all(at > 0) and np.all(np.isfinite(at))):
        raise InputError(f"--at {' '.join(args.at)}: N and D must be positive and finite")
    for budget in args.budget or []:
        if not (budget > 0 and math.isfinite(budget)):
            raise InputError(f"--budget {budget:g}: must be positive and finite")
    study = load_study(args.study, store=args.store)
    result = study_hparams(study.spec, study.runs(), y_col=args.y or study.spec.target_metric, level=args.level, n_boot=args.bootstrap)
    laws = result["laws"]
    if at is None and not args.budget:
        largest = max(laws.optima, key=lambda o: (o.n_params, o.tokens))
        at = [[largest.n_params, largest.tokens]]
    asks = [{"n_params": float(n), "data": float(d)} for n, d in (at if at is not None else [])]
    asks += [{"flops": float(c)} for c in args.budget or []]
    recommendations = [laws.recommend(n_params=a.get("n_params"), tokens=a.get("data"), flops=a.get("flops"), level=args.level) for a in asks]
    if args.format == "json":
        _print_json({"study": study.name, "score": result["score"], "x": result["x_cols"], "swept": result["swept"], **laws.to_dict(),
                     "notes": [*result["notes"], *laws.notes], "recommendations": recommendations})  # fmt: skip
        return EXIT_OK
    out = _console()
    n_col, d_col = result["x_cols"]
    lvl = f"{args.level:.0%}"
    def bounded(value: float, span: tuple[float, float], side: str | None) -> str:
        # An optimum on the edge of the values swept bounds the true one: ≤ or ≥ says which way.
        mark = {"low": "≤", "high": "≥"}.get(side, "")
        return f"{mark}{value:.3g} [{span[0]:.3g}, {span[1]:.3g}]"

    columns = [f"N ({n_col})", f"D ({d_col})", "lr*", "batch_size*", result["score"], "runs", "how"]
    rows = [[_count(o.n_params), _count(o.tokens), bounded(o.lr, o.lr_range, o.at_edge.get("lr")),
             bounded(o.batch_size, o.batch_range, o.at_edge.get("batch_size")), f"{o.loss:.4g}", str(o.n_runs), o.method]
            for o in laws.optima]  # fmt: skip
    edges = "≤ / ≥: at the low / high edge of the values swept, which bounds the optimum" if any(o.at_edge for o in laws.optima) else ""
    out.print(narrow_table(f"{study.name}: best settings per point, chosen on {result['score']} ({lvl} intervals)", columns, rows,
                           width=out.width, keep=4, left=("how",), caption=edges))  # fmt: skip
    for law in laws.laws().values():
        spans = "; ".join(f"{name} exponent {law.exponents[name]:.3g} [{lo:.3g}, {hi:.3g}]" for name, (lo, hi) in law.intervals.items())
        out.print(f"{law.formula()}   ({spans})")
    for note in [*result["notes"][1:], *laws.notes]:
        out.print(note)
    for rec in recommendations:
        where = ", ".join(f"{k} = {v:.3g}" for k, v in rec["at"].items())
        parts = [f"{name} = {rec[name]:.3g} [{rec[name + '_range'][0]:.3g}, {rec[name + '_range'][1]:.3g}]"
                 for name in ("lr", "batch_size") if rec.get(name) is not None]  # fmt: skip
        beyond = {k: v for k, v in rec["extrapolation"].items() if v > 0}
        far = (" (beyond the points fitted by " + ", ".join(f"{v:.2g} e-folds in {k}" for k, v in beyond.items()) + ")") if beyond else ""
        out.print(f"Recommended at {where}: " + "; ".join(parts) + f" ({lvl} intervals){far}")
    return EXIT_OK


def _count(value: float) -> str:
    """A sample count: a whole number below 100,000, else 3 significant digits; ∞ when unbounded."""
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.0f}" if abs(value) < 1e5 else f"{value:.3g}"


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
