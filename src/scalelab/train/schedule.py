"""Learning-rate schedules, evaluation steps and early stopping: what a cell's training
run does at each step besides the step itself.

A schedule is a factor on each parameter group's own learning rate (so a head learning
rate keeps its ratio to the body's), applied through ``torch.optim.lr_scheduler.LambdaLR``:

- ``constant``: 1 after the warmup;
- ``cosine``: from 1 down to ``min_lr_ratio`` at the cell's own last step, so a short
  run is annealed as fully as a long one (a cosine set for a longer run and cut short
  flatters the long run; Hoffmann et al. 2022, appendix on schedules);
- ``wsd`` (warmup, stable, decay): 1 until the last ``cooldown`` share of the steps, then
  linearly down to ``min_lr_ratio`` at the last step. Its stable phase is one run at
  every length at once, so only it and ``constant`` allow reading a loss envelope off
  training curves.

Warmup is linear over the first ``warmup`` steps, from 1/warmup to 1.
"""

from __future__ import annotations

import math

import numpy as np

SCHEDULES = ("constant", "cosine", "wsd")


def lr_factor(step: int, *, total_steps: int, schedule: str = "constant", warmup: int = 0, min_lr_ratio: float = 0.0,
              cooldown: float = 0.2) -> float:  # fmt: skip
    """The learning-rate multiplier at ``step`` (0-based) of a run of ``total_steps`` steps."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    last = total_steps - 1
    if schedule == "constant" or last <= 0:
        return 1.0
    if schedule == "cosine":
        progress = min(1.0, (step - warmup) / max(1, last - warmup))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "wsd":
        decay_steps = max(1, round(cooldown * total_steps))
        decay_start = max(warmup, last - decay_steps)
        if step <= decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, last - decay_start))
        return 1.0 - (1.0 - min_lr_ratio) * progress
    raise ValueError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")


def scheduler_for(optimizer, train_cfg: dict, total_steps: int):
    """A ``LambdaLR`` applying the cell's schedule, or None when the rate never changes."""
    schedule = train_cfg.get("lr_schedule", "constant")
    warmup = int(train_cfg.get("warmup", 0))
    if schedule == "constant" and not warmup:
        return None
    import torch

    options = {
        "total_steps": total_steps,
        "schedule": schedule,
        "warmup": warmup,
        "min_lr_ratio": float(train_cfg.get("min_lr_ratio", 0.0)),
        "cooldown": float(train_cfg.get("cooldown", 0.2)),
    }
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, **options))


def eval_steps(total_steps: int, points: int) -> list[int]:
    """About ``points`` log-spaced steps (1-based counts of steps done) in ``[1, total_steps]``,
    the last always included; none when ``points`` is 0."""
    if points <= 0 or total_steps <= 0:
        return []
    steps = np.unique(np.round(np.geomspace(1, total_steps, num=points)).astype(int))
    return sorted({int(s) for s in steps} | {total_steps})


class EarlyStopping:
    """Stops when the validation loss has not improved by ``min_delta`` for ``patience``
    evaluations in a row, keeping the best weights seen to restore at the end."""

    def __init__(self, *, patience: int, min_delta: float = 0.0):
        self.patience = patience
        self.min_delta = min_delta
        self.best_loss = math.inf
        self.best_step: int | None = None
        self.best_state: dict | None = None
        self._waited = 0

    def should_stop(self, val_loss: float, step: int, model) -> bool:
        """Record an evaluation; True when training should stop now."""
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_step, self._waited = val_loss, step, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        self._waited += 1
        return self._waited >= self.patience

    def restore(self, model) -> None:
        """Put the best weights back (a no-op before the first evaluation)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
