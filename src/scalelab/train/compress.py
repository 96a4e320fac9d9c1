"""Model compression after training: global magnitude pruning (with an optional short
fine-tune) and dynamic int8 quantisation of Linear layers, and what they cost and save.

``[train] prune = r`` zeroes the fraction ``r`` of all Linear and convolution weights with
the smallest magnitude, across layers (``torch.nn.utils.prune.global_unstructured``); with
``prune_finetune_epochs = k`` the pruned model then trains k more epochs with its mask
held, with a fresh optimizer of the cell's kind. ``quantize = "int8"`` converts the
Linear layers to dynamically quantised int8 ones (``torch.ao.quantization.quantize_dynamic``;
CPU kernels, so a quantised model is evaluated on the CPU).

Every torch run records its model's size (:func:`size_metrics`): the non-zero parameters
and the bytes of its serialised ``state_dict`` (dense: unstructured pruning does not
shrink it, int8 does); its inference throughput is timed on the test evaluation.
"""

from __future__ import annotations

import io
import warnings

import torch

PRUNABLE = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)


def wants_compression(train_cfg: dict) -> bool:
    return train_cfg.get("prune", 0.0) > 0 or train_cfg.get("quantize", "none") != "none"


def prune_globally(model: torch.nn.Module, ratio: float) -> None:
    """Zero the ``ratio`` smallest-magnitude weights of all Linear and convolution layers,
    keeping the mask as a forward pre-hook until :func:`make_pruning_permanent`."""
    from torch.nn.utils import prune

    model.to(memory_format=torch.contiguous_format)  # the global ranking flattens the weights
    targets = [(module, "weight") for module in model.modules() if isinstance(module, PRUNABLE)]
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=ratio)


def make_pruning_permanent(model: torch.nn.Module) -> None:
    """Fold the pruning masks into the weights (the zeros stay; the hooks go)."""
    from torch.nn.utils import prune

    for module in model.modules():
        if isinstance(module, PRUNABLE) and prune.is_pruned(module):
            prune.remove(module, "weight")


def finetune(model, X, y, *, epochs: int, batch_size: int, train_cfg: dict, autocast, seed: int) -> int:
    """Train ``epochs`` more epochs (the pruning mask held) through the cell's own training
    loop, with a fresh optimizer at the constant rate; returns the samples processed."""
    from scalelab.train.checkpoints import train_mode
    from scalelab.train.torch_trainer import make_optimizer, samples_seen, train_steps

    optimizer = make_optimizer(model.parameters(), train_cfg)
    train_mode(model, freeze=train_cfg.get("freeze", "none"))  # a frozen backbone's batch norm stays frozen here too
    shuffler = torch.Generator().manual_seed(seed + 1)  # not the training run's own order
    run = train_steps(model, model, X, y, optimizer=optimizer, batch_size=batch_size, epochs=epochs, autocast=autocast, shuffler=shuffler)
    return samples_seen(len(y), batch_size, run.steps)


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` on the CPU with its Linear layers dynamically quantised to int8."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # Recent torch announces torch.ao.quantization's move to the separate torchao
        # package on every call; the API still works here, and torchao is not a dependency.
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning)
        return quantize_dynamic(model.to("cpu").eval(), {torch.nn.Linear}, dtype=torch.qint8)


def size_metrics(model: torch.nn.Module) -> dict:
    """Non-zero parameters and the serialised bytes of ``model``'s ``state_dict``."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return {"nonzero_params": nonzero_parameters(model), "model_bytes": buffer.getbuffer().nbytes}


def nonzero_parameters(model: torch.nn.Module) -> int:
    """Non-zero entries of the trainable parameters, and of quantised layers' int8 weights."""
    count = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    for module in model.modules():
        if is_quantized_linear(module):  # weight() is its packed int8 tensor
            count += int(torch.count_nonzero(module.weight().int_repr()))
            bias = module.bias()
            count += 0 if bias is None else int(torch.count_nonzero(bias))
    return count


def is_quantized_linear(module: torch.nn.Module) -> bool:
    return callable(getattr(module, "weight", None))


def is_quantized(model: torch.nn.Module) -> bool:
    return any(is_quantized_linear(m) for m in model.modules())
