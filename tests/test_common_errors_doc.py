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


def test_the_page_lists_a_transformer_users_mistakes():
    """Issue 24: the Transformers section names each mistake a transformer user meets (the page's messages are the
    code's own: the test above)."""
    text = (ROOT / "docs" / "common_errors.md").read_text()
    section = text.split("\n## Transformers\n", 1)[1]
    for what in ("past the vocabulary", "negative token id", "longer than the context", "rotary context",
                 "different token lengths", "attention_mask", "meta device", "pad token", "not wrapped in a bridge",
                 "metric returning NaN", "one value per example", "`logit_diff(y, y)`", "clean identical to corrupted",
                 "`pos` past the sequence", "`eap_then_acdc`", "over an existing page"):
        assert what in section, what
