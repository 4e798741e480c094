"""Self-contained HTML output: every page works offline (no CDN, no network)."""

from lenslab.report.html import Page, escape, figure_to_svg, table_html

__all__ = ["Page", "escape", "figure_to_svg", "table_html"]
