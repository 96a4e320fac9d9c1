"""Model families: each builds a torch module from a size knob and the data's shape."""

from scalelab.models.registry import FAMILIES, build_model, count_parameters

__all__ = ["FAMILIES", "build_model", "count_parameters"]
