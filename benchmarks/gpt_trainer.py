"""GPT training throughput: scalelab's trainer against a nanoGPT-style loop, same model, same batches.

    python benchmarks/gpt_trainer.py                                # about 5 min on 2 cores
    python benchmarks/gpt_trainer.py --tokens 40000 --repeats 1     # a quick look, about 2 min
    python benchmarks/gpt_trainer.py --sizes gpu --device cuda      # GPT-2 small's shape on a GPU
    python benchmarks/gpt_trainer.py --profile                      # and where a step's time goes

Both loops train the same ``gpt`` model (built by ``scalelab.models.build_model`` with the
cell's seed) on the ``pystdlib`` corpus (the Python standard library's source, bytes):

* **trainer**: ``scalelab.train.torch_trainer.train_cell`` on a resolved cell config, timed
  by its own ``train_s`` (the training loop only: not the FLOP count, not evaluation);
* **naive**: the loop nanoGPT's ``train.py`` writes. The same windows in the same order
  (``scalelab.data.training_view``, batch_size at a time), each batch made per step with
  ``torch.from_numpy`` as nanoGPT's ``get_batch`` does (pinned and copied non-blocking on
  CUDA), forward under ``torch.autocast(bfloat16)`` for bf16, ``loss.backward()``,
  ``optimizer.step()``, ``zero_grad(set_to_none=True)`` and ``loss.item()`` every step.
  AdamW with the trainer's learning rate and decay groups (matrices decay; embeddings,
  norms and biases do not) and torch's default implementation, as the trainer has it.

Per precision (``--precisions``, default fp32,bf16), after one short warm-up of each, the
two are interleaved ``--repeats`` times (default 3; the one that goes first alternates)
and the medians are printed: tokens/s, the ratio trainer / naive, the seconds, and MFU,
the achieved FLOP/s (``metrics["flops_per_token"]``, measured by the trainer with
``FlopCounterMode``, × tokens / seconds) over the peak. The peak on the CPU is this
machine's matmul peak measured in this run by ``scalelab.hardware.measure_cpu_peak`` (what
``scalelab run`` stores for MFU), in the run's precision; on a GPU, the bf16 dense peak of
``scalelab.hardware.GPU_PEAKS`` for both precisions (nanoGPT's convention). The mean
training loss of both loops is printed too: same weights and batches, so they agree.

``--profile`` adds ``torch.profiler`` over a few steps of each loop (only the operators
inside the training loop), the top 10 operators by self CPU time (self CUDA time on a GPU),
which shows what a ratio near 1 comes from.

Prints, no assertions. The numbers are specific to this machine, its load and torch build:
compare the ratios measured in one run, and rerun when the load average was high.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.autograd import DeviceType

from scalelab.data import load_dataset, training_view
from scalelab.data.view import cell_inputs
from scalelab.hardware import GPU_PEAKS, device_class, measure_cpu_peak, peak_flops
from scalelab.models import build_model
from scalelab.spec import parse_spec
from scalelab.train.torch_trainer import (
    TRAINING_LOOP_RANGE,
    cpu_has_native_bf16,
    make_optimizer,
    train_cell,
    weight_decay_groups,
)

# Model shapes and their defaults: batch (windows per step) and training tokens per run.
SIZES = {
    "small": {"n_layer": 4, "n_embd": 128, "n_head": 4, "context": 128, "batch_size": 16, "tokens": 40_960},
    "gpu": {"n_layer": 12, "n_embd": 768, "n_head": 12, "context": 1024, "batch_size": 12, "tokens": 1_228_800},
}
NAIVE_LOOP_RANGE = "naive.training_loop"
WARM_UP_STEPS = 2
TOP_OPS = 10


def cell_config(size: str, *, precision: str, tokens: int, device: str) -> dict:
    """The resolved config of one cell: the ``size`` model on ``tokens`` training tokens
    of pystdlib, AdamW, no evaluation during training (``eval_points = 0``)."""
    shape = SIZES[size]
    raw = {
        "name": "bench",
        "data": {"name": "pystdlib", "tokens": tokens, "eval_tokens": 2 * shape["context"]},
        "model": {"family": "gpt", **{k: shape[k] for k in ("n_layer", "n_embd", "n_head", "context")}},
        "train": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.1, "batch_size": shape["batch_size"],
                  "device": device, "precision": precision, "eval_points": 0},
    }  # fmt: skip
    return parse_spec(raw, source="bench").cells[0].config


def run_trainer(config: dict, dataset) -> dict:
    """One cell through scalelab's trainer: its tokens, training-loop seconds, mean training
    loss and metrics."""
    outcome = train_cell(config, dataset)
    if outcome.state != "done":
        raise RuntimeError(f"the trainer's run ended {outcome.state}: {outcome.reason}")
    metrics = outcome.metrics
    return {"tokens": metrics["tokens"], "seconds": metrics["train_s"], "loss": metrics["train_loss"], "metrics": metrics}


def naive_setup(config: dict, dataset):
    """What nanoGPT's ``train.py`` builds before its loop: the model (the trainer's, same
    seed), AdamW, and the training windows in the trainer's order."""
    train = config["train"]
    device = torch.device(train["device"])
    input_shape, vocab_size = cell_inputs(dataset, config["data"])
    model = build_model(config["model"], input_shape, vocab_size, seed=int(train["seed"])).to(device)
    optimizer = make_optimizer(weight_decay_groups(model, train["weight_decay"]), train)
    view = training_view(dataset, config["data"], batch_size=train["batch_size"])
    return model, optimizer, view.X_train, view.y_train, device


def get_batch(X, y, step: int, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Step ``step``'s windows, made from numpy per step as nanoGPT's ``get_batch`` does."""
    rows = slice(step * batch_size, (step + 1) * batch_size)
    x, t = torch.from_numpy(X[rows]), torch.from_numpy(y[rows])
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), t.pin_memory().to(device, non_blocking=True)
    return x, t


def naive_loop(config: dict, dataset, *, profiler_range: bool = False) -> dict:
    """The nanoGPT-style loop over the trainer's steps: tokens, loop seconds, mean loss."""
    model, optimizer, X, y, device = naive_setup(config, dataset)
    batch_size = config["train"]["batch_size"]
    steps = len(X) // batch_size  # a text cell's windows are whole steps
    precision = config["train"]["precision"]
    model.train()
    losses = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with torch.profiler.record_function(NAIVE_LOOP_RANGE) if profiler_range else contextlib.nullcontext():
        for step in range(steps):
            xb, yb = get_batch(X, y, step, batch_size, device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())  # nanoGPT reads the loss to log it
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {"tokens": steps * batch_size * X.shape[1], "seconds": seconds, "loss": statistics.fmean(losses)}


def peak_for(device: torch.device, precision: str, cpu_peak: dict | None) -> tuple[float | None, str]:
    """The peak FLOP/s MFU divides by, and where it came from."""
    if device.type == "cpu":
        peak = peak_flops("cpu", precision, cpu_peak=cpu_peak, threads=torch.get_num_threads())
        native = precision == "fp32" or cpu_has_native_bf16()
        how = "" if native else " (bf16 emulated: the fp32 figure)"
        return peak, f"measured here, scalelab.hardware.measure_cpu_peak, {precision} 1024^2 matmul, {cpu_peak['threads']} threads{how}"
    name = torch.cuda.get_device_name(device)
    cls = device_class(str(device), name)
    if cls is None:
        return None, f"{name} is not in scalelab.hardware.GPU_PEAKS: no MFU"
    table_precision = "bf16" if "bf16" in GPU_PEAKS[cls] else "fp32"
    return peak_flops(cls, table_precision), f"scalelab.hardware.GPU_PEAKS[{cls!r}][{table_precision!r}] (data sheet, dense)"


def measure(size: str, precision: str, *, tokens: int, repeats: int, device: torch.device, dataset) -> dict:
    """Warm up, then ``repeats`` interleaved runs of the trainer and the naive loop."""
    warm = cell_config(size, precision=precision, tokens=WARM_UP_STEPS * tokens_per_step(size), device=str(device))
    run_trainer(warm, dataset)  # lazy imports, the allocator, oneDNN's kernels for these shapes
    naive_loop(warm, dataset)
    config = cell_config(size, precision=precision, tokens=tokens, device=str(device))
    runs: dict[str, list[dict]] = {"trainer": [], "naive": []}
    for repeat in range(repeats):
        order = ("trainer", "naive") if repeat % 2 == 0 else ("naive", "trainer")
        for name in order:
            runs[name].append(run_trainer(config, dataset) if name == "trainer" else naive_loop(config, dataset))
    return runs


def tokens_per_step(size: str) -> int:
    return SIZES[size]["batch_size"] * SIZES[size]["context"]


def summary(runs: list[dict], peak: float | None, flops_per_token: float) -> dict:
    """Medians of one loop's runs: tokens/s, seconds, MFU and mean loss."""
    rate = statistics.median(run["tokens"] / run["seconds"] for run in runs)
    return {
        "tokens_per_s": rate,
        "seconds": statistics.median(run["seconds"] for run in runs),
        "mfu": rate * flops_per_token / peak if peak else None,
        "loss": statistics.median(run["loss"] for run in runs),
        "tokens": runs[0]["tokens"],
    }


def print_table(rows: list[tuple[str, dict, dict]]) -> None:
    """precision | tokens/s of both | ratio | MFU of both | seconds of both."""
    print(f"   {'precision':<10}{'trainer tok/s':>14}{'naive tok/s':>13}{'ratio':>8}{'trainer MFU':>13}{'naive MFU':>11}"
          f"{'trainer s':>11}{'naive s':>9}")  # fmt: skip
    for precision, trainer, naive in rows:
        mfu = [f"{s['mfu']:.1%}" if s["mfu"] is not None else "n/a" for s in (trainer, naive)]
        print(f"   {precision:<10}{trainer['tokens_per_s']:>14,.0f}{naive['tokens_per_s']:>13,.0f}"
              f"{trainer['tokens_per_s'] / naive['tokens_per_s']:>7.2f}x{mfu[0]:>13}{mfu[1]:>11}"
              f"{trainer['seconds']:>11.2f}{naive['seconds']:>9.2f}")  # fmt: skip


def ops_in_range(prof, range_name: str, *, cuda: bool) -> dict[str, list[float]]:
    """``{operator: [self microseconds, calls]}`` of the operators inside the named range
    (self CUDA time on a GPU: the kernels each launched, less its children's)."""
    events = prof.events()
    (loop,) = [e for e in events if e.name == range_name]
    totals: dict[str, list[float]] = {}
    for event in events:
        if event is loop or event.time_range.start < loop.time_range.start or event.time_range.end > loop.time_range.end:
            continue
        if event.device_type != DeviceType.CPU or event.name.startswith(("scalelab.", "naive.")):
            continue  # kernels count in their operator's self CUDA time; ranges are no operator
        spent = event.self_device_time_total if cuda else event.self_cpu_time_total
        entry = totals.setdefault(event.name, [0.0, 0])
        entry[0] += spent
        entry[1] += 1
    return totals


def print_top_ops(title: str, totals: dict[str, list[float]], steps: int) -> None:
    """The ``TOP_OPS`` operators with the most self time, per step and as a share."""
    spent = sum(us for us, _ in totals.values())
    print(f"   {title}: {spent / steps / 1e3:.2f} ms of operator self time per step")
    for name, (us, calls) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:TOP_OPS]:
        print(f"      {name:<48}{us / steps / 1e3:>8.2f} ms {us / spent:>6.1%}  {calls / steps:>5.1f} calls/step")


def profile_loops(size: str, precisions: list[str], *, steps: int, device: torch.device, dataset) -> None:
    """``torch.profiler`` over ``steps`` steps of each loop per precision: top operators."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    print(f"\n== where a step's time goes: torch.profiler over {steps} steps, top {TOP_OPS} by self {'CUDA' if cuda else 'CPU'} time ==")
    for precision in precisions:
        config = cell_config(size, precision=precision, tokens=steps * tokens_per_step(size), device=str(device))
        with profile(activities=activities) as prof:
            run_trainer(config, dataset)
        print_top_ops(f"{precision} trainer", ops_in_range(prof, TRAINING_LOOP_RANGE, cuda=cuda), steps)
        with profile(activities=activities) as prof:
            naive_loop(config, dataset, profiler_range=True)
        print_top_ops(f"{precision} naive", ops_in_range(prof, NAIVE_LOOP_RANGE, cuda=cuda), steps)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small", help=f"comma-separated model sizes: {', '.join(SIZES)} (default small)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--tokens", type=int, default=None, help="training tokens per run (default: the size's own)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each loop (default 3)")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16 (default both)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default torch's)")
    parser.add_argument("--profile", action="store_true", help="also profile a few steps of each loop")
    parser.add_argument("--profile-steps", type=int, default=5, help="steps per profiled loop (default 5)")
    args = parser.parse_args()
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not args.sizes or not args.precisions:
        parser.error("--sizes and --precisions each need at least one value")
    for size in args.sizes:
        if size not in SIZES:
            parser.error(f"--sizes: unknown size {size!r}; known: {', '.join(SIZES)}")
    for precision in args.precisions:
        if precision not in ("fp32", "bf16"):
            parser.error(f"--precisions: unknown precision {precision!r}; known: fp32, bf16")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available on this machine")
    return args


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cpu_peak = measure_cpu_peak() if device.type == "cpu" else None
    bf16 = "native (CUDA)" if device.type == "cuda" else ("native" if cpu_has_native_bf16() else "emulated")
    print(f"scalelab gpt trainer — device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, python {sys.version.split()[0]}")  # fmt: skip
    print(f"cpu_has_native_bf16() = {cpu_has_native_bf16()} (bf16 {bf16}); load average before: {os.getloadavg()[0]:.2f}")
    for precision in args.precisions:
        peak, source = peak_for(device, precision, cpu_peak)
        print(f"peak {precision}: {peak / 1e9:,.0f} GFLOP/s, {source}" if peak else f"peak {precision}: {source}")

    for size in args.sizes:
        tokens = args.tokens or SIZES[size]["tokens"]
        dataset = load_dataset(cell_config(size, precision="fp32", tokens=tokens, device=args.device)["data"])
        shape = SIZES[size]
        rows, flops_per_token, losses = [], None, []
        for precision in args.precisions:
            runs = measure(size, precision, tokens=tokens, repeats=args.repeats, device=device, dataset=dataset)
            metrics = runs["trainer"][0]["metrics"]
            flops_per_token = metrics["flops_per_token"]
            peak, _ = peak_for(device, precision, cpu_peak)
            trainer, naive = summary(runs["trainer"], peak, flops_per_token), summary(runs["naive"], peak, flops_per_token)
            rows.append((precision, trainer, naive))
            losses.append(f"{precision} {trainer['loss']:.5f} / {naive['loss']:.5f}")
        print(f"\n== {size}: gpt {shape['n_layer']} layers x {shape['n_embd']}, {shape['n_head']} heads, context {shape['context']}, "
              f"batch {shape['batch_size']}, {metrics['n_params']:,} parameters; {rows[0][1]['tokens']:,} tokens "
              f"({metrics['steps']} steps) per run, median of {args.repeats} interleaved ==")  # fmt: skip
        print(f"   measured training FLOPs per token: {flops_per_token / 1e6:.2f} M")
        print_table(rows)
        print(f"   mean training loss, trainer / naive: {'; '.join(losses)}")
        if args.profile:
            profile_loops(size, args.precisions, steps=args.profile_steps, device=device, dataset=dataset)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
