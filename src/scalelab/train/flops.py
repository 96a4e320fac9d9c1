"""Measured FLOPs, counted by ``torch.utils.flop_counter.FlopCounterMode``.

The counter reports 2 FLOPs per multiply-add for matmuls and convolutions, the
convention of the scaling-law literature. It does not count elementwise work
(activations, the optimizer update), which is small next to the matmuls.

Counting runs the model for real, in its current mode, so the passes would have side
effects a measurement must not keep: batch norm in training mode folds the batch into
its running statistics, dropout draws from the global generator, and ``backward``
leaves gradients on the parameters. Both counters therefore run on copies of the
buffers (:func:`torch.func.functional_call`) with forked generators, and take gradients
with :func:`torch.autograd.grad`, which returns them instead of storing them: the model
is left exactly as it was.
"""

from __future__ import annotations

import contextlib

import torch
from torch.func import functional_call
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode


def _count_cpu_attention() -> None:
    """Teach the counter the CPU kernels of ``scaled_dot_product_attention``.

    It knows the CUDA ones (flash, memory-efficient, cuDNN) but not the CPU flash
    kernel, so attention on the CPU would count as free. Its cost is the same: two
    matmuls forward (QKᵀ and the weighted sum of V), four backward; the counter's own
    formulas give it from the shapes.
    """
    if not hasattr(flop_counter, "register_flop_formula"):  # older torch: attention stays uncounted
        return
    aten = torch.ops.aten
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if forward is not None and forward not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(forward)
        def _forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    if backward is not None and backward not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(backward)
        def _backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


_count_cpu_attention()


def training_step_flops(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> int:
    """FLOPs of one forward and backward pass on this batch; ``model`` is left unchanged.

    The backward pass computes the gradients a training step computes (those of the
    trainable parameters), so the count is that of a real step.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    with _side_effect_free(model, inputs) as forward, FlopCounterMode(display=False) as counter:
        loss = torch.nn.functional.cross_entropy(forward(inputs), targets)
        if trainable:
            torch.autograd.grad(loss, trainable)
    return int(counter.get_total_flops())


def forward_flops(model: torch.nn.Module, inputs: torch.Tensor) -> int:
    """FLOPs of one forward pass on this batch, without building a graph; ``model`` is left unchanged."""
    with torch.inference_mode(), _side_effect_free(model, inputs) as forward, FlopCounterMode(display=False) as counter:
        forward(inputs)
    return int(counter.get_total_flops())


@contextlib.contextmanager
def _side_effect_free(model: torch.nn.Module, inputs: torch.Tensor):
    """A forward function of ``model`` that writes to copies of its buffers, with the
    random generators (CPU, and the inputs' GPU) restored on exit."""
    parameters = dict(model.named_parameters())
    buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
    cuda_devices = [inputs.device] if inputs.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        yield lambda x: functional_call(model, (parameters, buffers), (x,))
