"""scalelab: measure, model and plan how compute and data scale drive a model's performance."""

from scalelab.errors import InputError
from scalelab.study import Study, load_study

__version__ = "0.1.0"

__all__ = ["InputError", "Study", "__version__", "load_study"]
