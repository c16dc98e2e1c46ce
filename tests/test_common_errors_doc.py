"""docs/common_errors.md shows the messages the code actually gives (issue 13)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("make_common_errors", ROOT / "docs" / "make_common_errors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_common_errors_page_is_current_and_every_case_is_refused():
    gen = _generator()
    text = gen.render()
    assert (ROOT / "docs" / "common_errors.md").read_text() == text, "rerun: PYTHONPATH=. python docs/make_common_errors.py"
    messages = re.findall(r"^    (.+)$", text, flags=re.M)
    assert len(messages) == len(gen.CASES)
    assert not [m for m in messages if "(no error)" in m or "Traceback" in m]
    assert all(re.match(r"(hooked-bimt \w+: error|\w+(Error|Warning)): ", m) for m in messages), messages


def test_readme_links_the_page():
    assert "(docs/common_errors.md)" in (ROOT / "README.md").read_text()
