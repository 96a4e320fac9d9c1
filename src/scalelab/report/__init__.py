"""The report: matplotlib figures and a self-contained HTML page, and notebook HTML.

>>> from scalelab.report import build_report
>>> build_report("demo-quick", store="scalelab-demo/scalelab.db").write("report.html")  # doctest: +SKIP
"""

from scalelab.report.build import Report, build_report, write_html
from scalelab.report.notebook import law_html, study_html

__all__ = ["Report", "build_report", "law_html", "study_html", "write_html"]
