"""The catalogue of model families: their size knobs (validated with pydantic) and builders.

Each family is trained by one framework: ``torch`` (a ``torch.nn.Module``) or
``sklearn`` (a scikit-learn estimator). A ``python:pkg.module:factory`` family may
return either; which one is known once the factory has been called.

Importing this module imports neither torch nor scikit-learn; builders do, on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from scalelab.errors import InputError
from scalelab.user_code import import_reference, is_python_reference


class _Knobs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class MLPKnobs(_Knobs):
    width: float = Field(1.0, gt=0, le=1024, description="hidden units as a multiple of 64")
    depth: int = Field(2, ge=1, le=64, description="number of hidden layers")


class SeedCNNKnobs(_Knobs):
    width: float = Field(1.0, gt=0, le=64, description="channel multiplier; 1 is the source document's CNN")


class ResNetKnobs(_Knobs):
    width: float = Field(1.0, gt=0, le=64, description="channel multiplier of the 16-32-64 stages")
    depth: int = Field(2, ge=1, le=64, description="residual blocks per stage (3 is ResNet-20)")


class TreeKnobs(_Knobs):
    max_leaf_nodes: int | None = Field(None, ge=2, le=100_000_000, description="leaves at most; unset grows the tree fully")


class GBDTKnobs(_Knobs):
    max_iter: int = Field(100, ge=1, le=100_000, description="boosting rounds")
    max_leaf_nodes: int = Field(31, ge=2, le=1_000_000, description="leaves per tree")
    learning_rate: float = Field(0.1, gt=0, le=10, description="shrinkage of each round")


class GPTKnobs(_Knobs):
    n_layer: int = Field(2, ge=1, le=256, description="transformer blocks")
    n_embd: int = Field(64, ge=1, le=65_536, description="residual stream width at width = 1")
    n_head: int = Field(4, ge=1, le=1024, description="attention heads")
    context: int = Field(64, ge=1, le=1_000_000, description="longest sequence the model reads (position embeddings)")
    width: float = Field(1.0, gt=0, le=1024, description="multiplier of n_embd, rounded to a multiple of n_head")
    depth: int | None = Field(None, ge=1, le=256, description="blocks; overrides n_layer when given (the grid's size knob)")

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"model.n_embd = {self.n_embd} is not divisible by model.n_head = {self.n_head}")
        return self

    def shape(self) -> tuple[int, int]:
        """``(n_layer, n_embd)`` after ``depth`` and ``width``: round(n_embd·width) to a multiple of n_head, at least one head wide."""
        n_embd = max(1, round(round(self.n_embd * self.width) / self.n_head)) * self.n_head
        return (self.depth or self.n_layer), n_embd


class PythonKnobs(_Knobs):
    """Any keys: they are the factory's keyword arguments (JSON-like values only)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True, allow_inf_nan=False)
    __pydantic_extra__: dict[str, JsonValue]


@dataclass(frozen=True)
class FamilyEntry:
    """One model family: its knobs, its framework and how to build a model."""

    name: str
    knobs: type[_Knobs]
    build: Callable  # (knobs, input_shape, n_classes, seed) -> torch.nn.Module or estimator
    description: str
    framework: str  # "torch", "sklearn", or "python" (either, decided by what the factory returns)
    # Seeds can train side by side as one vmapped model: no batch norm or dropout, whose
    # running statistics and random masks would not follow the separate runs exactly.
    seed_batchable: bool = False


def _build_mlp(knobs, input_shape, n_classes, seed):
    from scalelab.models.mlp import build_mlp

    return build_mlp(input_shape, n_classes, width=knobs.width, depth=knobs.depth)


def _build_seed_cnn(knobs, input_shape, n_classes, seed):
    from scalelab.models.seed_cnn import build_seed_cnn

    return build_seed_cnn(input_shape, n_classes, width=knobs.width)


def _build_resnet(knobs, input_shape, n_classes, seed):
    from scalelab.models.resnet import build_resnet

    return build_resnet(input_shape, n_classes, width=knobs.width, depth=knobs.depth)


def _build_tree(knobs, input_shape, n_classes, seed):
    from scalelab.models.sklearn_models import build_tree

    return build_tree(max_leaf_nodes=knobs.max_leaf_nodes, seed=seed)


def _build_gbdt(knobs, input_shape, n_classes, seed):
    from scalelab.models.sklearn_models import build_gbdt

    return build_gbdt(max_iter=knobs.max_iter, max_leaf_nodes=knobs.max_leaf_nodes, learning_rate=knobs.learning_rate, seed=seed)


def _build_gpt(knobs, input_shape, n_classes, seed):
    # A language-model dataset presents each sample as a window of input_shape = (T,)
    # token ids whose n_classes is the vocabulary; the model reads windows up to its
    # context, so a longer window is a mismatch of the study, not of the model.
    from scalelab.models.gpt import GPT

    if len(input_shape) != 1 or input_shape[0] > knobs.context:
        raise InputError(
            f"model.context = {knobs.context}: the gpt family reads token windows of shape (T,) with T <= context, "
            f"but the data's samples have shape {tuple(input_shape)}"
        )
    n_layer, n_embd = knobs.shape()
    return GPT(n_classes, n_layer=n_layer, n_embd=n_embd, n_head=knobs.n_head, context=knobs.context)


FAMILIES: dict[str, FamilyEntry] = {
    entry.name: entry
    for entry in (
        FamilyEntry("mlp", MLPKnobs, _build_mlp, "ReLU MLP on flattened inputs; width x 64 hidden units, depth layers", "torch", True),
        FamilyEntry("seed_cnn", SeedCNNKnobs, _build_seed_cnn, "the source document's Conv32-Pool-Conv64-Pool-Conv64-Dense64 CNN", "torch", True),
        FamilyEntry("resnet", ResNetKnobs, _build_resnet, "CIFAR-style ResNet with batch norm; width x 16-32-64 channels, depth blocks per stage", "torch"),
        FamilyEntry("tree", TreeKnobs, _build_tree, "scikit-learn decision tree; max_leaf_nodes leaves", "sklearn"),
        FamilyEntry("gbdt", GBDTKnobs, _build_gbdt, "scikit-learn histogram gradient boosting; max_iter rounds of max_leaf_nodes leaves", "sklearn"),
        FamilyEntry("gpt", GPTKnobs, _build_gpt, "GPT-2-style decoder-only transformer on token windows; depth blocks, width x n_embd", "torch"),
    )
}


def family_entry(name: str) -> FamilyEntry:
    """The registered family ``name``, or the user's factory for ``python:pkg.module:factory``.

    Raises ``KeyError`` for any other name (the study spec checks names first).
    """
    if name in FAMILIES:
        return FAMILIES[name]
    if is_python_reference(name):

        def build(knobs, input_shape, n_classes, seed):
            return _build_from_factory(name, knobs.model_dump(), input_shape, n_classes, seed)

        return FamilyEntry(name, PythonKnobs, build, "the user's own model factory", "python")
    raise KeyError(name)


def is_known_family(name: str) -> bool:
    """True for a registered family or a ``python:pkg.module:factory`` reference."""
    return name in FAMILIES or is_python_reference(name)


def family_knob_names() -> set[str]:
    """Every knob name any registered family accepts (used to route grid keys)."""
    return {name for entry in FAMILIES.values() for name in entry.knobs.model_fields}


def load_factory(name: str) -> Callable:
    """Import the factory of a ``python:`` family; :class:`InputError` naming it when that fails."""
    factory = import_reference(name, error=InputError)
    if not callable(factory):
        raise InputError(f"{name}: not a model factory function (found {type(factory).__name__} {factory!r:.40})")
    return factory


def _build_from_factory(name: str, knobs: dict, input_shape, n_classes, seed):
    """Call the user's factory as ``factory(input_shape, n_classes, **knobs)`` and check the result."""
    import torch

    from scalelab.models.sklearn_models import is_sklearn_estimator

    model = load_factory(name)(tuple(input_shape), int(n_classes), **knobs)
    if isinstance(model, torch.nn.Module):
        return model
    if is_sklearn_estimator(model):
        # An unseeded estimator would make the cell irreproducible; give it the cell's seed.
        params = model.get_params(deep=False) if callable(getattr(model, "get_params", None)) else {}
        if seed is not None and "random_state" in params and params["random_state"] is None:
            model.set_params(random_state=seed)
        return model
    raise TypeError(f"{name} returned a {type(model).__name__}; a model factory must return a torch.nn.Module or a scikit-learn estimator")


def build_model(model_config: dict, input_shape: tuple[int, ...], n_classes: int, *, seed: int | None = None):
    """Build the model a resolved ``[model]`` configuration describes.

    Returns a ``torch.nn.Module`` (initialised after ``torch.manual_seed(seed)`` when a
    seed is given) or an unfitted scikit-learn estimator (with ``random_state = seed``).
    """
    entry = family_entry(model_config["family"])
    knobs = entry.knobs.model_validate(model_config.get("knobs", {}))
    if seed is not None and entry.framework != "sklearn":
        import torch

        torch.manual_seed(seed)
    return entry.build(knobs, tuple(input_shape), int(n_classes), seed)


def is_torch_model(model) -> bool:
    """True for a ``torch.nn.Module``; false for a scikit-learn estimator."""
    import torch

    return isinstance(model, torch.nn.Module)


def count_parameters(module) -> int:
    """Exact number of trainable parameters of a module."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))
