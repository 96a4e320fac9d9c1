"""What training one cell produced, whichever trainer produced it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CellOutcome:
    """A cell's final state, its metrics, and a reason if it diverged; a pretraining run
    also returns its trained weights (``torch.save`` bytes of the ``state_dict``)."""

    state: str  # "done" or "diverged"
    metrics: dict = field(default_factory=dict)
    reason: str | None = None
    checkpoint: bytes | None = None
