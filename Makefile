# The two commands: `make tour` and `make test`. Each creates .venv when missing and installs
# the project into it (torch pinned to the CPU wheel through constraints.txt).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt
STAMP   := $(VENV)/.stamp-install
THREADS ?= 2

.PHONY: tour test install replicate bench clean browser

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

tour: $(STAMP)
	$(BIN)/lenslab tour --out runs/tour

test: $(STAMP) browser
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -x --durations=15

# The viewer's hostile-token test runs in headless Chromium (Debian's package).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || \
	    echo "warning: could not install chromium; browser tests will be skipped"; }

# Published results reproduced on this CPU, each ending PASS NAME or FAIL NAME: why.
replicate: $(STAMP)
	$(BIN)/lenslab replicate all --out runs/replicate -q

bench: $(STAMP)
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/attention_capture.py
	$(BIN)/python benchmarks/scaling_fit.py

clean:
	rm -rf $(VENV) runs build *.egg-info
