"""Model families: each builds a torch module or a scikit-learn estimator from its size knobs."""

from scalelab.models.registry import FAMILIES, build_model, count_parameters, family_entry, is_known_family, is_torch_model

__all__ = ["FAMILIES", "build_model", "count_parameters", "family_entry", "is_known_family", "is_torch_model"]
