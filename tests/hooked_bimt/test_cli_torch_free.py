"""Issue 24: every argument error of ``hooked-bimt train`` and ``reproduce`` (an unwritable or impossible --out, a
misspelt device, a count below one) is printed before torch is imported, so it answers in a fraction of a second
instead of the 6-7 s torch takes. Run in a fresh interpreter: ``sys.modules`` then says what was imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "numpy", "transformer_lens", "matplotlib")

PROBE = """
import json, sys, time
from hooked_bimt.cli import main
t0 = time.perf_counter()
code = main(sys.argv[1:])
print(json.dumps({"code": code, "seconds": time.perf_counter() - t0,
                  "loaded": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


def _run(argv: list[str]) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


CASES = {
    "unwritable-out": (["--out", "/proc/x"], "output path /proc/x: /proc is not writable"),
    "out-under-a-file": (["--out", "{tmp}/afile/run"], "which is a file, not a directory"),
    "out-is-a-file": (["--out", "{tmp}/afile"], "is an existing file, not a directory"),
    "unknown-device": (["--out", "{tmp}/run", "--device", "gpu"], "unknown device 'gpu'; expected 'cpu' or 'cuda[:N]'"),
    "unsupported-device": (["--out", "{tmp}/run", "--device", "mps"], "unsupported device 'mps'"),
}
TRAIN_ONLY = {
    "steps": (["--out", "{tmp}/run", "--steps", "0"], "--steps must be positive, got 0"),
    "threads": (["--out", "{tmp}/run", "--threads", "0"], "--threads must be positive, got 0"),
}


@pytest.mark.parametrize("command, case", [(c, k) for c in ("train", "reproduce") for k in CASES]
                         + [("train", k) for k in TRAIN_ONLY])
def test_argument_errors_are_printed_before_torch_is_imported(tmp_path, command, case):
    if case == "unwritable-out" and not Path("/proc/self").exists():
        pytest.skip("needs Linux's /proc (a folder nothing can be written in)")
    (tmp_path / "afile").write_text("x")
    argv, message = {**CASES, **TRAIN_ONLY}[case]
    head = ["train", "--regime", "bimt", "--no-progress"] if command == "train" else ["reproduce", "--no-progress"]
    result, err = _run([*head, *(a.format(tmp=tmp_path) for a in argv)])
    assert result["code"] == 2 and message in err and f"hooked-bimt {command}: error: " in err, (result, err)
    assert "Traceback" not in err
    assert result["loaded"] == [], result  # nothing heavy: the error did not wait for torch
    assert result["seconds"] < 2.0, result
    assert not (tmp_path / "run").exists()


def test_the_device_spelling_is_checked_without_torch_and_agrees_with_check_device():
    from hooked_bimt.validate import check_device, check_device_name

    for good in ("cpu", "cuda", "cuda:1", "cpu:0"):
        assert check_device_name(good) == good
    for bad, word in (("gpu", "unknown"), ("CUDA", "unknown"), ("cuda:x", "unknown"), ("mps", "unsupported"),
                      ("meta", "unsupported"), (" cpu", "unknown")):
        with pytest.raises(ValueError, match=f"{word} device"):
            check_device_name(bad)
        with pytest.raises(ValueError, match=f"{word} device"):
            check_device(bad)
    with pytest.raises(TypeError, match="device must be a string"):
        check_device_name(0)
    assert check_device("cpu") == "cpu"
