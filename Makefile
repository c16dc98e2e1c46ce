# The README's two commands: `make demo` and `make test`. Both set up .venv themselves.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
TORCH  ?= torch==2.13.0
DEMO_OUT ?= runs/demo

.PHONY: test demo venv browser bench clean

venv: $(STAMP)

# torch goes in first and pinned: an unpinned torch pulls several GB of CUDA wheels.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# Headless Chromium for the browser test; best effort (the test is skipped, with its reason, without it).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  ( [ "$$(id -u)" = 0 ] && (apt-get update -qq >/dev/null 2>&1; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1) ) || \
	  echo "note: chromium not installed; the browser test will be skipped"

test: $(STAMP) browser
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/hooked-bimt reproduce --preset quick --out $(DEMO_OUT) --executor local --jobs 2

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
