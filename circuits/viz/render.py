"""``OfflineHTML``: circuitsvis's ``RenderedHTML`` protocol, without the CDN and without the network check.

circuitsvis's ``RenderedHTML._repr_html_`` probes the internet and then returns HTML that imports its
JavaScript from a CDN. Every visual of this package is a self-contained fragment instead (inline JS
and CSS, data embedded as JSON), so ``_repr_html_``, ``show_code`` and ``str`` all return it, and
``save`` writes it as a standalone page, atomically, never over an existing file unless asked.
"""

from __future__ import annotations

import html
from pathlib import Path

from circuitsvis.utils.render import RenderedHTML

from circuits._io import atomic_write_text
from circuits.validate import check_output_file


class OfflineHTML(RenderedHTML):
    """A visual that renders in Jupyter like any circuitsvis visual and needs no network."""

    def __init__(self, fragment: str, title: str = "hooked-bimt") -> None:
        super().__init__(local_src=fragment, cdn_src=fragment)
        self.title = title

    def _repr_html_(self) -> str:
        return self.local_src

    def __html__(self) -> str:
        return self.local_src

    def show_code(self) -> str:
        return self.local_src

    def __str__(self) -> str:
        return self.local_src

    def page(self) -> str:
        """The fragment wrapped in a complete HTML document."""
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(self.title)}</title>\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            "<style>body { margin: 16px; background: #fff; }</style>\n</head>\n<body>\n"
            f"{self.local_src}\n</body>\n</html>\n"
        )

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the standalone page to ``path`` (atomic: a reader never sees half a file); an existing file is
        refused (``FileExistsError``) unless ``overwrite``."""
        return atomic_write_text(check_output_file(path, overwrite=overwrite), self.page())
