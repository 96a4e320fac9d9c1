"""Train one cell with the trainer its model family needs.

Registered families name their framework; a ``python:`` factory's model is built first
and the trainer chosen by what it returned (a ``torch.nn.Module`` or a scikit-learn
estimator).
"""

from __future__ import annotations

from scalelab.data import Dataset
from scalelab.data.view import cell_inputs
from scalelab.models import build_model, family_entry, is_torch_model
from scalelab.train.outcome import CellOutcome


def run_cell(config: dict, dataset: Dataset) -> CellOutcome:
    """Train and evaluate one resolved cell on an already loaded dataset."""
    framework = family_entry(config["model"]["family"]).framework
    model = None
    if framework == "python":
        input_shape, n_classes = cell_inputs(dataset, config["data"])
        model = build_model(config["model"], input_shape, n_classes, seed=config["train"]["seed"])
        framework = "torch" if is_torch_model(model) else "sklearn"
    if "federated" in config:  # the spec admits only vmappable torch families here
        from scalelab.train.federated_trainer import train_federated_cell

        outcome = train_federated_cell(config, dataset)
    elif framework == "sklearn":
        from scalelab.train.sklearn_trainer import train_cell

        outcome = train_cell(config, dataset, model=model)
    elif config["train"].get("data_parallel", 1) > 1:  # never a pretraining run (spec refuses it)
        from scalelab.train.data_parallel import train_data_parallel

        outcome = train_data_parallel(config, dataset)  # each rank builds its own model
    else:
        from scalelab.train.torch_trainer import train_cell

        outcome = train_cell(config, dataset, model=model)
    outcome.metrics["n_classes"] = int(dataset.n_classes)  # sets an error rate's chance level for the laws
    pretrained = (config.get("initial_weights") or {}).get("pretrain")
    if pretrained:
        # What the weights this cell started from cost, and how they did on their own task.
        outcome.metrics["pretrain_id"] = pretrained["id"]
        outcome.metrics.update({f"pretrain_{name}": value for name, value in pretrained["metrics"].items()})
    return outcome


def run_seed_group(configs: list[dict], dataset: Dataset) -> list[CellOutcome]:
    """Train cells that differ only in seed together (``batch_seeds``); one outcome per cell."""
    from scalelab.train.seed_batch import train_seed_group

    outcomes = train_seed_group(configs, dataset)
    for outcome in outcomes:
        outcome.metrics["n_classes"] = int(dataset.n_classes)
    return outcomes
