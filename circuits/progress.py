"""Progress bars that suit where the code runs, shared by discovery, training and the study.

In a terminal: tqdm's text bar. In Jupyter with ipywidgets installed: tqdm's notebook widget (``tqdm.auto``), one
output updated in place. In Jupyter WITHOUT ipywidgets (it is optional: ``pip install hooked-bimt[notebook]``):
a text bar refreshed at most every ``NOTEBOOK_TEXT_INTERVAL`` seconds, because a notebook keeps every refresh of a
text bar as output (an executed notebook grew to 625 KB with tqdm's default 0.1 s), and without ``tqdm.auto``'s
"IProgress not found" warning.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

NOTEBOOK_TEXT_INTERVAL = 30.0  # seconds between refreshes of a text bar inside a notebook


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (tqdm.autonotebook's test: an IPython with an ``IPKernelApp``)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def has_widgets() -> bool:
    return importlib.util.find_spec("ipywidgets") is not None


def progress_bar(iterable: Any = None, **kwargs: Any) -> Any:
    """A tqdm bar over ``iterable`` (tqdm's keyword arguments), chosen as the module docstring says."""
    if in_notebook() and not has_widgets():
        from tqdm.std import tqdm

        kwargs["mininterval"] = max(float(kwargs.get("mininterval", 0.1)), NOTEBOOK_TEXT_INTERVAL)
        return tqdm(iterable, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)
