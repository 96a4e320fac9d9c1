"""The torch trainer: one cell, start to finish, readable top to bottom.

:func:`train_cell` prepares a cell (its data view, model, optimizer, FLOP count) and
hands it to :func:`train_steps`, the one training loop every torch family goes
through, GPT included, and a pruned model's fine-tune too. (Seed batching,
:mod:`scalelab.train.seed_batch`, steps several seeds' stacked parameters at once.)

Data lives on the target device as tensors; batches are slices of a shuffled index,
so there is no DataLoader and no per-sample Python. Losses are accumulated on the
device and read once per epoch, which is also when divergence (NaN or inf loss) is
checked; the exact step is recovered from the per-step record.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import platform
import time
from dataclasses import dataclass
import torch
import torch.nn.functional as F

from scalelab.data import Dataset, training_view
from scalelab.data.tokens import needs_flops_per_token
from scalelab.data.view import cell_inputs
from scalelab.models import build_model, count_parameters
from scalelab.train import compress
from scalelab.train.checkpoints import apply_weights, load_weights, parameter_groups, state_dict_bytes, train_mode
from scalelab.train.class_metrics import prediction_metrics
from scalelab.train.flops import forward_flops, training_step_flops
from scalelab.train.outcome import CURVE_KEY, CellOutcome
from scalelab.train.schedule import EarlyStopping, eval_steps, scheduler_for

EVAL_BATCH_SIZE = 1024
EVAL_TOKEN_BATCH = 16_384  # text: windows per evaluation batch hold about this many tokens
TRAINING_LOOP_RANGE = "scalelab.training_loop"


def resolve_device(requested: str) -> torch.device:
    """``auto`` means CUDA when it is available, else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device = {requested!r} but CUDA is not available on this machine")
    return torch.device(requested)


def resolve_precision(requested: str, device: torch.device) -> str:
    """``auto`` means bf16 where the hardware runs it natively (a CUDA GPU of compute
    capability 8.0 or later, or a CPU with AVX-512 BF16 or AMX), else fp32; ``fp32`` and
    ``bf16`` are taken as given."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if cuda_has_native_bf16(device) else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def cuda_has_native_bf16(device: torch.device) -> bool:
    """Whether this GPU has bf16 tensor cores (Ampere, compute capability 8.0, and later).

    Not ``torch.cuda.is_bf16_supported()``: it also counts the emulation older GPUs
    (Volta, Turing) can run, which is slower than their fp32.
    """
    return torch.cuda.get_device_capability(device) >= (8, 0)


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (emulated bf16 is slower than fp32)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def device_name(device: torch.device) -> str:
    """The model of the device a run trained on, as MFU needs it: the GPU's name as CUDA
    reports it (``NVIDIA H100 80GB HBM3``), or the CPU's (:func:`cpu_name`)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


@functools.cache
def cpu_name() -> str:
    """This machine's processor model: ``model name`` in ``/proc/cpuinfo`` (Linux), else
    :func:`platform.processor`, else ``"cpu"``; read once per process."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:  # not Linux, or no /proc
        pass
    return platform.processor().strip() or "cpu"


def _uses_channels_last(model: torch.nn.Module, X: torch.Tensor) -> bool:
    """Image convolutions run faster on NHWC tensors with oneDNN and cuDNN, except where
    a CPU kernel is known to break on them (:func:`_nhwc_breaks_on_cpu`)."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if X.dim() != 4 or not convs:
        return False
    return not (X.device.type == "cpu" and any(_nhwc_breaks_on_cpu(conv) for conv in convs))


def _nhwc_breaks_on_cpu(conv: torch.nn.Conv2d) -> bool:
    """A 1×1, strided convolution of 2 to 6 input channels (a narrow ResNet's shortcut):
    on torch 2.13's CPU build, one thread, its NHWC backward pass corrupts the heap on
    some x86 CPUs (seen on an AMD EPYC with AVX2: ``double free or corruption``, then a
    crash). Such a model trains in the default layout instead; these convolutions are too
    narrow for NHWC to gain anything."""
    return conv.kernel_size == (1, 1) and conv.stride != (1, 1) and conv.in_channels < 8


def autocast_for(precision: str, device: torch.device):
    """bf16 autocast for ``bf16``; a no-op context for ``fp32``."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_optimizer(params, train: dict) -> torch.optim.Optimizer:
    """The optimizer ``train.optimizer`` names, with its learning rate and weight decay."""
    if train["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=train["lr"], momentum=train["momentum"], weight_decay=train["weight_decay"])
    if train["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=train["lr"], weight_decay=train["weight_decay"])
    return torch.optim.Adam(params, lr=train["lr"], weight_decay=train["weight_decay"])


@dataclass(frozen=True)
class Replica:
    """This process's place in a data-parallel run: its rank among ``world_size`` processes
    that share one process group (see :mod:`scalelab.train.data_parallel`). ``group`` is
    the process group training's collectives use (None: the default group)."""

    rank: int
    world_size: int
    group: object = None


def train_cell(config: dict, dataset: Dataset, *, model: torch.nn.Module | None = None, replica: Replica | None = None) -> CellOutcome:
    """Train and evaluate one resolved cell configuration on an already loaded dataset.

    ``model`` is the cell's module when the caller has built it already (seeded, see
    :func:`scalelab.models.build_model`); otherwise it is built here. With ``replica``,
    this process is one of a DistributedDataParallel group: every rank draws the same
    shuffled global batch and trains on its share of it, so the group takes the steps a
    single process with the same global batch would. Returns a
    :class:`CellOutcome` whose metrics hold the losses, test (and validation) error,
    parameter count, measured FLOPs, timings and environment. Raises only on real
    failures (bad configuration for the hardware, out of memory, bugs); a NaN or inf
    loss is an outcome (``diverged``), not an exception.
    """
    started = time.perf_counter()
    model_cfg, train_cfg = config["model"], config["train"]
    device = resolve_device(train_cfg["device"])
    if replica is not None and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())  # set per rank by the launcher
    seed = int(train_cfg["seed"])
    precision = resolve_precision(train_cfg["precision"], device)
    autocast = autocast_for(precision, device)

    input_shape, n_classes = cell_inputs(dataset, config["data"])
    if model is None:
        model = build_model(model_cfg, input_shape, n_classes, seed=seed)
    # A text cell's FLOP budget becomes tokens through the model's measured cost per token.
    budget_flops_per_token = token_flops(model, input_shape[0]) if needs_flops_per_token(config["data"]) else None
    view = training_view(dataset, config["data"], batch_size=train_cfg["batch_size"], flops_per_token=budget_flops_per_token)
    X = torch.from_numpy(view.X_train).to(device)
    y = torch.from_numpy(view.y_train).to(device)
    X_test = torch.from_numpy(view.X_test).to(device)
    y_test = torch.from_numpy(view.y_test).to(device)
    n_train = len(view.y_train)

    fresh_weights = None
    start = starting_weights(config)
    if start is not None:
        state, label, start_sha256 = start
        fresh_weights = apply_weights(model, state, source=label)
    model = model.to(device)
    channels_last = _uses_channels_last(model, X)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        X = X.contiguous(memory_format=torch.channels_last)
        X_test = X_test.contiguous(memory_format=torch.channels_last)
    if train_cfg.get("init_from") or train_cfg.get("head_lr"):
        groups = parameter_groups(model, freeze=train_cfg.get("freeze", "none"), lr=train_cfg["lr"], head_lr=train_cfg.get("head_lr"))
        optimizer = make_optimizer(groups, train_cfg)
    elif model_cfg["family"] == "gpt":
        optimizer = make_optimizer(weight_decay_groups(model, train_cfg["weight_decay"]), train_cfg)
    else:
        optimizer = make_optimizer(model.parameters(), train_cfg)
    n_params = count_parameters(model)  # trainable: a frozen backbone does not count
    n_params_total = int(sum(p.numel() for p in model.parameters()))
    batch_size = min(train_cfg["batch_size"], n_train)

    # FLOPs per sample, measured once on a real batch; the count is linear in batch size.
    flops_per_sample = training_step_flops(model, X[:batch_size], y[:batch_size]) / batch_size
    eval_flops_per_sample = forward_flops(model, X_test[:1])
    if replica is not None:
        model = _synchronised_batch_norm(model, device)  # keeps the same parameter tensors
    step_model = torch.compile(model) if train_cfg.get("compile") else model
    if replica is not None:
        alone_per_s = _samples_per_s_alone(model, X[:batch_size], y[:batch_size], train_cfg, autocast)
        step_model = torch.nn.parallel.DistributedDataParallel(
            step_model, device_ids=[device.index] if device.type == "cuda" else None, process_group=replica.group
        )

    steps_per_epoch = math.ceil(n_train / batch_size)
    # A text cell's windows already hold its epochs over the unique tokens, in order.
    epochs = 1 if view.is_text else planned_epochs(n_train, batch_size, train_cfg)
    total_steps = epochs * steps_per_epoch
    # The training curve: log-spaced evaluations (one process only: a data-parallel
    # group's losses are summed over its ranks at each epoch's end, not at every step).
    curve = TrainingCurve(view, device, autocast, flops_per_sample=flops_per_sample, n_train=n_train, batch_size=batch_size,
                          at_steps=eval_steps(total_steps, int(train_cfg.get("eval_points", 10))) if replica is None else [])  # fmt: skip
    stopper = EarlyStopping(**train_cfg["early_stopping"]) if train_cfg.get("early_stopping") else None

    train_mode(model, freeze=train_cfg.get("freeze", "none"))
    synchronize(device)
    train_started = time.perf_counter()
    run = train_steps(
        step_model, model, X, y, optimizer=optimizer, batch_size=batch_size, epochs=epochs, autocast=autocast,
        shuffler=None if view.is_text else torch.Generator().manual_seed(seed), scheduler=scheduler_for(optimizer, train_cfg, total_steps),
        grad_clip=float(train_cfg.get("grad_clip", 0.0)), replica=replica, curve=curve, stopper=stopper,
    )  # fmt: skip
    synchronize(device)
    train_s = time.perf_counter() - train_started
    outcome, steps, epochs_done, train_loss, stopped = run.outcome, run.steps, run.epochs, run.train_loss, run.stopped
    if stopper is not None and outcome.state == "done":
        stopper.restore(model)  # the weights of the best validation loss, evaluated below
        outcome.metrics.update(early_stopped=stopped, best_step=stopper.best_step, stopped_step=steps)
    if curve.points:
        outcome.metrics[CURVE_KEY] = curve.points

    if replica is None or replica.rank == 0:  # every rank holds the same model; one evaluates
        evaluate_into(outcome, model, view, X_test, y_test, autocast=autocast, steps=steps)
    finetune_samples = 0
    if compress.wants_compression(train_cfg) and outcome.state == "done":
        model, finetune_samples = _compress(model, outcome, train_cfg, view, X, y, X_test, y_test, autocast=autocast, batch_size=batch_size, seed=seed, steps=steps)
    outcome.metrics.update(compress.size_metrics(model))
    outcome.metrics.update(
        run_metrics(
            train_loss=train_loss,
            n_params=n_params,
            n_train=n_train,
            n_test=int(len(y_test)),
            epochs=epochs_done,
            steps=steps,
            batch_size=batch_size,
            flops_per_sample=flops_per_sample,
            eval_flops_per_sample=eval_flops_per_sample,
            train_s=train_s,
            wall_s=time.perf_counter() - started,
            device=device,
            precision=precision,
        ),
        memory_format="channels_last" if channels_last else "contiguous",
        compiled=bool(train_cfg.get("compile")),
        seed=seed,
        n_params_total=n_params_total,
    )
    if view.is_text:
        outcome.metrics.update(text_metrics(view, dataset, model, flops_per_sample=flops_per_sample, batch_size=batch_size, metrics=outcome.metrics))
    if fresh_weights is not None:
        outcome.metrics.update(init_from_sha256=start_sha256, freeze=train_cfg.get("freeze", "none"), fresh_weights=fresh_weights)
    if config.get("stage") == "pretrain" and outcome.state == "done":
        outcome.checkpoint = state_dict_bytes(model)
    if finetune_samples:
        finetune_flops = flops_per_sample * finetune_samples
        outcome.metrics.update(
            prune_finetune_flops=finetune_flops,
            flops=outcome.metrics["flops"] + finetune_flops,
            compute=outcome.metrics["compute"] + finetune_flops,
        )
    if replica is not None:
        total_per_s = outcome.metrics["samples_per_s"]
        outcome.metrics.update(
            world_size=replica.world_size,
            per_process_samples_per_s=total_per_s / replica.world_size,
            single_process_samples_per_s=alone_per_s,
            scaling_efficiency=total_per_s / (replica.world_size * alone_per_s),
        )
    return outcome


@dataclass
class TrainedSteps:
    """What :func:`train_steps` did: the outcome so far (``done`` or ``diverged``), the
    steps and epochs taken, the last full epoch's mean training loss, and whether early
    stopping ended it."""

    outcome: CellOutcome
    steps: int
    epochs: int
    train_loss: float
    stopped: bool


def train_steps(step_model, model, X, y, *, optimizer, batch_size: int, epochs: int, autocast, shuffler: torch.Generator | None,
                scheduler=None, grad_clip: float = 0.0, replica: Replica | None = None, curve: "TrainingCurve | None" = None,
                stopper: EarlyStopping | None = None) -> TrainedSteps:  # fmt: skip
    """The training loop every torch cell goes through (and a pruned model's fine-tune):
    ``epochs`` passes over ``(X, y)`` in batches of ``batch_size``, each epoch in a new
    order drawn from ``shuffler`` (``None``: the order given, as a text cell's windows
    come), one optimizer step per batch.

    Losses stay on the device and are read once per epoch, which is also when divergence
    (a NaN or inf loss) is checked; the exact step is recovered from the per-step record.
    ``curve`` evaluates at its steps and ``stopper`` may end the run there.
    """
    n_train = len(y)
    steps_per_epoch = math.ceil(n_train / batch_size)
    outcome = CellOutcome(state="done")
    epochs_done = steps = 0
    train_loss = float("nan")
    stopped = False
    # A named range, so a profile of a whole cell can single out the training steps.
    with torch.profiler.record_function(TRAINING_LOOP_RANGE):
        for epoch in range(epochs):
            order = torch.arange(n_train) if shuffler is None else torch.randperm(n_train, generator=shuffler)
            order = order.to(X.device)
            step_losses = torch.empty(steps_per_epoch, device=X.device)
            taken = 0
            for step in range(steps_per_epoch):
                index = order[step * batch_size : (step + 1) * batch_size]
                if replica is None:
                    with autocast:
                        loss = F.cross_entropy(step_model(X[index]), y[index])
                    recorded = loss
                else:
                    # This rank's share of the global batch. DDP averages gradients over the
                    # ranks, so each scales its summed loss by world_size / global batch: the
                    # average is then the gradient of the global batch's mean loss.
                    shard = index.tensor_split(replica.world_size)[replica.rank]
                    with autocast:
                        shard_sum = F.cross_entropy(step_model(X[shard]), y[shard], reduction="sum")
                    loss = shard_sum * (replica.world_size / len(index))
                    recorded = shard_sum / len(index)  # summed over the ranks at the epoch's end
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
                lr = optimizer.param_groups[0]["lr"]  # the rate this step used
                if scheduler is not None:
                    scheduler.step()
                step_losses[step] = recorded.detach()
                taken = step + 1
                point = curve.step(steps + taken, recorded.detach(), model, lr=lr) if curve is not None else None
                if point is not None and stopper is not None and stopper.should_stop(point["val_loss"], steps + taken, model):
                    stopped = True
                    break
            step_losses = step_losses[:taken]
            if replica is not None:
                torch.distributed.all_reduce(step_losses)
            steps += taken
            epochs_done = epoch + 1
            finite = torch.isfinite(step_losses)
            if not bool(finite.all()):  # one host sync per epoch
                outcome = diverged_outcome(epoch, steps_per_epoch, first_bad=int((~finite).nonzero()[0, 0]))
                steps = outcome.metrics["diverged_step"]
                break
            train_loss = float(epoch_mean_loss(step_losses, n_train, batch_size) if taken == steps_per_epoch else step_losses.mean())
            if stopped:
                break
    return TrainedSteps(outcome=outcome, steps=steps, epochs=epochs_done, train_loss=train_loss, stopped=stopped)


def token_flops(model: torch.nn.Module, window: int) -> float:
    """Training FLOPs per token of ``model`` on windows of ``window`` tokens, measured on
    one window (the count does not depend on the tokens, and is linear in the batch)."""
    tokens = torch.zeros(1, window, dtype=torch.long, device=next(model.parameters()).device)
    return training_step_flops(model, tokens, tokens) / window


def weight_decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups as language models train: matrices decay; norms, biases and embeddings
    (position and token tables, the tied output head with them) do not."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    decay, keep = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 and id(param) not in embeddings else keep).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def text_metrics(view, dataset, model: torch.nn.Module, *, flops_per_sample: float, batch_size: int, metrics: dict) -> dict:
    """What a language-model run records beside the common metrics: tokens (seen, unique,
    epochs over the unique ones), losses in bits per byte, FLOPs per token (measured, and
    the analytic count for a gpt), the model's non-embedding parameters and the corpus."""
    plan = view.tokens
    seen = samples_seen(len(view.y_train), batch_size, metrics["steps"])
    tokens = seen * plan.context
    found = dict(
        tokens=tokens,
        unique_tokens=plan.unique_tokens,
        epochs=tokens / plan.unique_tokens,
        context=plan.context,
        tokens_per_s=tokens / metrics["train_s"] if metrics["train_s"] > 0 else float("nan"),
        flops_per_token=flops_per_sample / plan.context,
        val_tokens=int(view.y_val.size),
        test_tokens=int(view.y_test.size),
        **dataset.record,
    )
    for split, n_bytes in (("val", view.val_bytes), ("test", view.test_bytes)):
        loss = metrics.get(f"{split}_loss")
        if loss is not None and n_bytes:
            found[f"{split}_bpb"] = loss * found[f"{split}_tokens"] / math.log(2) / n_bytes
    from scalelab.models.gpt import GPT, scaling_metrics

    if isinstance(model, GPT):
        found.update(scaling_metrics(model))
    return found


def starting_weights(config: dict) -> tuple[dict, str, str] | None:
    """The weights a cell starts from, ``(state_dict, label, sha256)``, or ``None`` from scratch.

    The coordinator ships them inside the task (``initial_weights``: a ``[pretrain]``
    checkpoint from the store, or the ``init_from`` file's bytes), so workers need not
    see the coordinator's files; a cell run directly reads its ``init_from`` file.
    """
    shipped = config.get("initial_weights")
    if shipped is not None:
        return load_weights(shipped["weights"], label=shipped["label"]), shipped["label"], shipped["sha256"]
    path = config["train"].get("init_from")
    if path is None:
        return None
    if path == "pretrain":
        raise ValueError("init_from = 'pretrain': the checkpoint comes with the task from `scalelab run`, which trains it; this cell was started without it")
    return load_weights(path), path, config["train"]["init_from_sha256"]


def _compress(model, outcome: CellOutcome, train_cfg: dict, view, X, y, X_test, y_test, *, autocast, batch_size: int, seed: int, steps: int):
    """Prune (and fine-tune) and/or quantise the trained model, then evaluate it again.

    The test metrics become the compressed model's; the trained model's are kept with the
    suffix ``_before_compression``. Returns the final model and the fine-tune's samples.
    """
    before = {f"{name}_before_compression": outcome.metrics[name] for name in ("test_loss", "test_error", "inference_samples_per_s")}
    before["nonzero_params_before_compression"] = compress.nonzero_parameters(model)
    finetune_samples = 0
    if train_cfg.get("prune", 0.0) > 0:
        compress.prune_globally(model, train_cfg["prune"])
        epochs = train_cfg.get("prune_finetune_epochs", 0)
        if epochs:
            finetune_samples = compress.finetune(model, X, y, epochs=epochs, batch_size=batch_size, train_cfg=train_cfg, autocast=autocast, seed=seed)
        compress.make_pruning_permanent(model)
    if train_cfg.get("quantize", "none") == "int8":
        # int8 kernels are CPU kernels: the quantised model is evaluated (and timed) there.
        model = compress.quantize_int8(copy.deepcopy(model))
        X_test, y_test, autocast = X_test.cpu(), y_test.cpu(), contextlib.nullcontext()
    evaluate_into(outcome, model, view, X_test, y_test, autocast=autocast, steps=steps)
    outcome.metrics.update(before)
    return model, finetune_samples


def _synchronised_batch_norm(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Batch norm over the global batch, as one process would compute it: SyncBatchNorm on
    CUDA; on the CPU, where it is not available, a clear error instead of per-shard statistics."""
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    if device.type != "cuda":
        raise ValueError(
            "train.data_parallel > 1 on the CPU needs a model without batch norm (each process would "
            "normalise its own share of the batch); use mlp or seed_cnn, or train on CUDA"
        )
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def _samples_per_s_alone(model, X, y, train_cfg: dict, autocast, steps: int = 8) -> float:
    """Training samples/s of a throwaway copy of ``model`` in this process alone, without
    gradient exchange: the rate one replica would reach on its own, for scaling efficiency.
    Every rank measures at once, so each competes for the machine as it will in training."""
    twin = copy.deepcopy(model)
    return training_rate(twin, X, y, make_optimizer(twin.parameters(), train_cfg), autocast, steps=steps)


def training_rate(model, inputs, targets, optimizer, autocast, *, steps: int) -> float:
    """Training samples per second of ``model`` stepping on one batch, after one warm-up step."""

    def step():
        with autocast:
            loss = F.cross_entropy(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    synchronize(inputs.device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(inputs.device)
    elapsed = time.perf_counter() - started
    return steps * len(inputs) / elapsed if elapsed > 0 else math.inf


class TrainingCurve:
    """A run's loss at log-spaced steps: the mean training loss since the last point and,
    with a validation split, the validation loss; each with its samples and FLOPs so far."""

    def __init__(self, view, device, autocast, *, flops_per_sample: float, n_train: int, batch_size: int, at_steps: list[int]):
        self.at_steps = set(at_steps)
        self.points: list[dict] = []
        self._autocast = autocast
        self._flops_per_sample = flops_per_sample
        self._n_train, self._batch_size = n_train, batch_size
        self._window = view.tokens.context if view.is_text else None
        self._val = (torch.from_numpy(view.X_val).to(device), torch.from_numpy(view.y_val).to(device)) if view.has_validation else None
        self._loss_sum = torch.zeros((), device=device)
        self._since = 0

    def step(self, steps_done: int, loss: torch.Tensor, model, *, lr: float) -> dict | None:
        """Count one step's loss; at an evaluation step, evaluate and return the new point."""
        if not self.at_steps:
            return None
        self._loss_sum += loss.float()
        self._since += 1
        if steps_done not in self.at_steps:
            return None
        samples = samples_seen(self._n_train, self._batch_size, steps_done)
        point = {"step": steps_done, "samples": samples, "flops": float(self._flops_per_sample * samples), "lr": float(lr),
                 "train_loss": float(self._loss_sum) / self._since}  # fmt: skip
        if self._window:
            point["tokens"] = samples * self._window
        if self._val is not None:
            point["val_loss"], point["val_error"] = evaluate(model, *self._val, autocast=self._autocast)
        self._loss_sum.zero_()
        self._since = 0
        self.points.append(point)
        return point


def evaluate_into(outcome: CellOutcome, model, view, X_test, y_test, *, autocast, steps: int) -> None:
    """Test (and validation) loss and error of a trained model, into ``outcome``; a
    non-finite test loss after a clean run turns the outcome ``diverged``."""
    device = X_test.device
    synchronize(device)
    started = time.perf_counter()
    test_loss, test_error, predicted = evaluate_with_predictions(model, X_test, y_test, autocast=autocast)
    elapsed = time.perf_counter() - started  # the predictions' copy to the host synchronised
    outcome.metrics["inference_samples_per_s"] = len(y_test) / elapsed if elapsed > 0 else float("nan")
    outcome.metrics["inference_device"] = str(device)
    if not view.is_text:  # per-class metrics of a classifier; a vocabulary has no such use
        outcome.metrics.update(prediction_metrics(view, predicted))
    if outcome.state == "done" and not math.isfinite(test_loss):
        outcome.state, outcome.reason = "diverged", "non-finite test loss after training"
        outcome.metrics["diverged_step"] = steps
    if view.has_validation:
        val = torch.from_numpy(view.X_val).to(device), torch.from_numpy(view.y_val).to(device)
        val_loss, val_error = evaluate(model, *val, autocast=autocast)
        outcome.metrics.update(val_loss=val_loss, val_error=val_error, n_val=int(len(view.y_val)))
    if len(view.train_rows) != view.n_distinct:
        outcome.metrics["n_distinct"] = view.n_distinct
    outcome.metrics.update(test_loss=test_loss, test_error=test_error, n_test=int(len(y_test)))


def run_metrics(
    *,
    train_loss: float,
    n_params: int,
    n_train: int,
    n_test: int,
    epochs: int,
    steps: int,
    batch_size: int,
    flops_per_sample: float,
    eval_flops_per_sample: float,
    train_s: float,
    wall_s: float,
    device: torch.device,
    precision: str,
) -> dict:
    """The metrics every torch run records: sizes, measured FLOPs, timings, environment."""
    seen = samples_seen(n_train, batch_size, steps)
    flops = flops_per_sample * seen
    return dict(
        train_loss=train_loss,
        n_params=n_params,
        n_train=n_train,
        epochs=epochs,
        steps=steps,
        flops=float(flops),
        flops_per_sample=float(flops_per_sample),
        eval_flops=float(eval_flops_per_sample * n_test),
        train_s=train_s,
        wall_s=wall_s,
        samples_per_s=seen / train_s if train_s > 0 else float("nan"),
        flops_per_s=flops / train_s if train_s > 0 else float("nan"),
        compute=float(flops),
        compute_unit="flops",
        device=str(device),
        device_name=device_name(device),
        dtype="bfloat16" if precision == "bf16" else "float32",
        precision=precision,
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
    )


def diverged_outcome(epoch: int, steps_per_epoch: int, *, first_bad: int) -> CellOutcome:
    """The outcome of a run whose loss was first non-finite at step ``first_bad`` of ``epoch``."""
    diverged_at = epoch * steps_per_epoch + first_bad + 1
    outcome = CellOutcome(state="diverged", reason=f"non-finite training loss at step {diverged_at} (epoch {epoch + 1})")
    outcome.metrics["diverged_step"] = diverged_at
    return outcome


def epoch_mean_loss(step_losses: torch.Tensor, n_train: int, batch_size: int) -> torch.Tensor:
    """Mean training loss of an epoch from its per-step losses (steps first, any trailing
    dims), weighting each step by its batch length so a short last batch counts for what it holds."""
    steps_per_epoch = step_losses.shape[0]
    lengths = torch.full((steps_per_epoch,), float(batch_size), device=step_losses.device)
    lengths[-1] = n_train - (steps_per_epoch - 1) * batch_size
    return (step_losses * lengths.view(-1, *[1] * (step_losses.dim() - 1))).sum(0) / n_train


def warm_up() -> None:
    """Pay torch's one-off lazy imports (the optimizers pull in ``torch._dynamo``, over a
    second) once per process, so they are not charged to the first cell's ``wall_s``."""
    model = torch.nn.Linear(2, 2)
    make_optimizer(model.parameters(), {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0})
    training_step_flops(model, torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))


def planned_epochs(n_train: int, batch_size: int, train_cfg: dict) -> int:
    """``epochs``, raised when needed so that small subsets still get ``min_steps`` updates."""
    steps_per_epoch = math.ceil(n_train / min(batch_size, n_train))
    return max(int(train_cfg["epochs"]), math.ceil(train_cfg.get("min_steps", 0) / steps_per_epoch))


def samples_seen(n_train: int, batch_size: int, steps: int) -> int:
    """Training samples processed in ``steps`` steps of epochs over ``n_train`` samples."""
    steps_per_epoch = math.ceil(n_train / batch_size)
    full_epochs, extra_steps = divmod(steps, steps_per_epoch)
    return full_epochs * n_train + min(extra_steps * batch_size, n_train)


@torch.inference_mode()
def evaluate(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, *, autocast=None) -> tuple[float, float]:
    """Mean cross-entropy and error rate (1 − accuracy) of ``model`` on ``(X, y)``."""
    loss, error, _ = evaluate_with_predictions(model, X, y, autocast=autocast)
    return loss, error


@torch.inference_mode()
def evaluate_with_predictions(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, *, autocast=None):
    """Mean cross-entropy, error rate, and the predicted classes (a NumPy array).

    Every module's training flag is restored afterwards, so layers a cell keeps in eval
    mode (a frozen backbone's batch norm) stay there for any further training.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    loss_sum = torch.zeros((), device=X.device, dtype=torch.float64)
    predicted = torch.empty_like(y)  # (n,) classes, or (n, T) next tokens
    rows = EVAL_BATCH_SIZE if y.dim() == 1 else max(1, EVAL_TOKEN_BATCH // y.shape[1])
    for start in range(0, len(y), rows):
        xb, yb = X[start : start + rows], y[start : start + rows]
        with autocast or contextlib.nullcontext():
            logits = model(xb)
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum").double()
        predicted[start : start + len(yb)] = logits.argmax(dim=1)
    for module, training in modes:
        module.training = training
    wrong = int((predicted != y).sum())
    return float(loss_sum) / y.numel(), wrong / y.numel(), predicted.cpu().numpy()
