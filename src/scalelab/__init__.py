"""scalelab: measure, model and plan how compute and data scale drive a model's performance."""

from scalelab.errors import InputError

__version__ = "0.1.0"

__all__ = ["InputError", "LawDisplay", "LawSet", "LearningCurveDisplay", "Study", "__version__", "load_study"]


def __getattr__(name: str):
    # Imported on first use: `python -m scalelab` imports this package before the command
    # line runs, and the study layer pulls in pandas and pydantic (most of a second) before
    # the command could install its SIGTERM handler or print its first line.
    if name in ("Study", "load_study"):
        from scalelab import study

        return getattr(study, name)
    if name in ("LawDisplay", "LearningCurveDisplay"):  # matplotlib, likewise, only when drawing
        from scalelab import display

        return getattr(display, name)
    if name == "LawSet":
        from scalelab.laws.lawset import LawSet

        return LawSet
    raise AttributeError(f"module 'scalelab' has no attribute {name!r}")
