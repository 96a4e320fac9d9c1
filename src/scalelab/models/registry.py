"""The catalogue of model families: their size knobs (validated with pydantic) and builders.

Importing this module does not import torch; builders do, on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field


class _Knobs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class MLPKnobs(_Knobs):
    width: float = Field(1.0, gt=0, le=1024, description="hidden units as a multiple of 64")
    depth: int = Field(2, ge=1, le=64, description="number of hidden layers")


class SeedCNNKnobs(_Knobs):
    width: float = Field(1.0, gt=0, le=64, description="channel multiplier; 1 is the source document's CNN")


@dataclass(frozen=True)
class FamilyEntry:
    """One registered model family: its knobs and how to build a module."""

    name: str
    knobs: type[_Knobs]
    build: Callable  # (knobs, input_shape, n_classes) -> torch.nn.Module
    description: str


def _build_mlp(knobs, input_shape, n_classes):
    from scalelab.models.mlp import build_mlp

    return build_mlp(input_shape, n_classes, width=knobs.width, depth=knobs.depth)


def _build_seed_cnn(knobs, input_shape, n_classes):
    from scalelab.models.seed_cnn import build_seed_cnn

    return build_seed_cnn(input_shape, n_classes, width=knobs.width)


FAMILIES: dict[str, FamilyEntry] = {
    entry.name: entry
    for entry in (
        FamilyEntry("mlp", MLPKnobs, _build_mlp, "ReLU MLP on flattened inputs; width x 64 hidden units, depth layers"),
        FamilyEntry("seed_cnn", SeedCNNKnobs, _build_seed_cnn, "the source document's Conv32-Pool-Conv64-Pool-Conv64-Dense64 CNN"),
    )
}


def family_knob_names() -> set[str]:
    """Every knob name any registered family accepts (used to route grid keys)."""
    return {name for entry in FAMILIES.values() for name in entry.knobs.model_fields}


def build_model(model_config: dict, input_shape: tuple[int, ...], n_classes: int):
    """Build the ``torch.nn.Module`` a resolved ``[model]`` configuration describes."""
    entry = FAMILIES[model_config["family"]]
    knobs = entry.knobs.model_validate(model_config.get("knobs", {}))
    return entry.build(knobs, tuple(input_shape), int(n_classes))


def count_parameters(module) -> int:
    """Exact number of trainable parameters of a module."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))
