"""The report as one self-contained HTML file.

Rendered by Jinja2 with autoescaping on, so every string a user supplied (study, dataset
and model names, descriptions, group values, tracebacks) is escaped unless a template
marks it safe, and no template does. The page loads nothing: figures are PNG ``data:``
URIs, styles are inline, there is no script, and a Content-Security-Policy forbids
anything else, so even a string that slipped through could neither run nor fetch.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@cache
def _environment():
    from jinja2 import Environment, StrictUndefined

    return Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


@cache
def _template(name: str):
    text = resources.files("scalelab.report").joinpath("templates", name).read_text(encoding="utf-8")
    return _environment().from_string(text)


def render_page(**context) -> str:
    """The full report page (``templates/report.html.j2``)."""
    return _template("report.html.j2").render(csp=CSP, **context)


def render_fragment(template: str, /, **context) -> str:
    """A notebook fragment (``templates/TEMPLATE``): no ``<html>``, styles inline."""
    return _template(template).render(**context)
