"""Starting a cell from saved weights: ``[train] init_from``, ``freeze`` and ``head_lr``.

A checkpoint is a ``state_dict`` saved with ``torch.save`` (or a mapping holding one
under ``"state_dict"`` or ``"model"``): a user's file, or the bytes of a ``[pretrain]``
stage's checkpoint that the run store keeps (:func:`state_dict_bytes` writes them). It is untrusted input: it is read with
``torch.load(weights_only=True)``, which refuses any pickled object other than tensors
and plain containers, so a file that would run code is an input error, not code run.

The model's classifier head (its last Linear layer) may differ from the checkpoint's,
since a fine-tuning target usually has other classes: a head whose shape does not match
keeps its fresh initialisation. Any other missing, unexpected or mis-shaped weight means
the checkpoint is of another architecture, an input error naming the first of them.

A frozen backbone (``freeze = "backbone"``) is fixed as a whole: its weights get no
gradient, and its batch-norm layers stay in eval mode while the head trains
(:func:`train_mode`), so they normalise with the checkpoint's running statistics and
never overwrite them with the fine-tuning data's.
"""

from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path

import torch

from scalelab.errors import InputError


def load_weights(path: str | Path | bytes, *, label: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (or its bytes), loaded without executing anything.

    Raises :class:`InputError` naming the file (or ``label``): missing, not a torch file,
    holding objects other than tensors and containers, or holding no ``state_dict``.
    """
    if isinstance(path, bytes):
        source, path = io.BytesIO(path), label or "checkpoint"
    else:
        path = Path(path).expanduser()
        source = path
    try:
        with warnings.catch_warnings():
            # torch warns about a plain pickle's protocol before refusing it: the refusal says enough.
            warnings.simplefilter("ignore", UserWarning)
            loaded = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: checkpoint file not found") from None
    except pickle.UnpicklingError as exc:
        # torch's own message goes on to suggest weights_only=False, the unsafe option: not shown.
        if "weights only" in str(exc).lower() or "unsupported global" in str(exc).lower():
            raise InputError(f"{path}: refused: the checkpoint holds objects other than weights, which could run code") from None
        raise InputError(f"{path}: not a torch checkpoint (torch.save of a state_dict); it could not be unpickled") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        # A text file or truncated bytes fail deep inside the unpickler with any of these.
        raise InputError(f"{path}: not a torch checkpoint (torch.save of a state_dict): {type(exc).__name__} while reading it") from None
    if isinstance(loaded, dict):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise InputError(f"{path}: not a state_dict (a mapping of parameter names to tensors)")
    return loaded


def state_dict_bytes(model: torch.nn.Module) -> bytes:
    """``model``'s weights as ``torch.save`` writes a ``state_dict``, on the CPU."""
    buffer = io.BytesIO()
    torch.save({name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def head_prefix(model: torch.nn.Module) -> str:
    """The name of the model's classifier head: its last Linear layer."""
    names = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    if not names:
        raise InputError("freeze and head_lr need a model whose last layer is a Linear classifier head")
    return names[-1]


def apply_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> list[str]:
    """Copy the checkpoint into ``model``; a mis-shaped head keeps its initialisation.

    Returns the names left at their initialisation. Raises :class:`InputError` when the
    checkpoint is of another architecture.
    """
    own = model.state_dict()
    head = head_prefix(model) + "."
    kept = {}
    fresh = []
    for name, tensor in own.items():
        if name not in state:
            raise InputError(f"{source}: checkpoint of another architecture: it has no weight {name!r}")
        if state[name].shape != tensor.shape:
            if name.startswith(head):
                fresh.append(name)  # a head for other classes: trained from scratch
                continue
            raise InputError(
                f"{source}: checkpoint of another architecture: {name!r} has shape {tuple(state[name].shape)}, "
                f"the model's is {tuple(tensor.shape)}"
            )
        kept[name] = state[name]
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise InputError(f"{source}: checkpoint of another architecture: unexpected weight {unexpected[0]!r}")
    model.load_state_dict({**own, **kept})
    return fresh


def parameter_groups(model: torch.nn.Module, *, freeze: str, lr: float, head_lr: float | None) -> list[dict]:
    """Optimizer parameter groups: the backbone (frozen with ``freeze = "backbone"``) at
    ``lr`` and the head at ``head_lr`` (or ``lr``)."""
    head = head_prefix(model) + "."
    backbone = [p for name, p in model.named_parameters() if not name.startswith(head)]
    head_params = [p for name, p in model.named_parameters() if name.startswith(head)]
    if freeze == "backbone":
        for parameter in backbone:
            parameter.requires_grad_(False)
        return [{"params": head_params, "lr": head_lr or lr}]
    return [{"params": backbone, "lr": lr}, {"params": head_params, "lr": head_lr or lr}]


def train_mode(model: torch.nn.Module, *, freeze: str) -> None:
    """Put ``model`` in training mode for its cell's steps, honouring ``freeze``.

    With ``freeze = "backbone"`` the batch-norm layers outside the head stay in eval
    mode. Freezing their weights alone is not enough: in training mode batch norm would
    still normalise each batch by its own statistics and update its running mean and
    variance, so the "frozen" features would drift with the fine-tuning data.
    """
    model.train()
    if freeze != "backbone":
        return
    head = head_prefix(model)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not (name == head or name.startswith(head + ".")):
            module.eval()
