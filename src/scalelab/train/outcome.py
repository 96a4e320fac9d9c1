"""What training one cell produced, whichever trainer produced it."""

from __future__ import annotations

from dataclasses import dataclass, field

# The metrics key of a run's training curve: a list of points (step, samples, flops, lr,
# train_loss, and val_loss with a validation split). The store keeps it in a table of its
# own (``run_curves``), not among the run's metrics.
CURVE_KEY = "curve"


@dataclass
class CellOutcome:
    """A cell's final state, its metrics, and a reason if it diverged; a pretraining run
    also returns its trained weights (``torch.save`` bytes of the ``state_dict``)."""

    state: str  # "done" or "diverged"
    metrics: dict = field(default_factory=dict)
    reason: str | None = None
    checkpoint: bytes | None = None
