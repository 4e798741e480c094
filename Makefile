# The two commands: `make tour` and `make test`. Each creates .venv when missing and installs
# the project into it (torch pinned to the CPU wheel through constraints.txt).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
# uv installs what pip does, from the same constraints, in under a minute instead of over two
# (parallel downloads and bytecode compilation); pip installs uv. Bytecode is compiled at
# install time because a machine may set PYTHONDONTWRITEBYTECODE, and then every process of
# the tests would compile torch again (seconds each). A wheel folder pip is pointed at
# (PIP_FIND_LINKS: where a machine keeps its CPU build of torch) is passed on, so both pick the
# same torch.
UV      := $(BIN)/uv pip install --python $(BIN)/python -q --compile-bytecode -c constraints.txt \
           $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS))
STAMP   := $(VENV)/.stamp-install
# pytest-xdist workers: one more than cores, as many tests wait on subprocesses, Slurm or a browser
WORKERS ?= 3

.PHONY: tour test install replicate bench clean system

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q uv
	$(UV) torch==2.13.0
	$(UV) -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

tour: $(STAMP)
	$(BIN)/lenslab tour --out runs/tour

test: $(STAMP) system
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -x -n $(WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

# Debian packages some tests use: Chromium (the viewer's hostile-token test, in a real browser)
# and Slurm's daemons with munge (a real one-node Slurm for the sweep's cluster executor; the
# slurm-wlm metapackage would add every plugin and its -dev package through its recommends).
# Missing ones are installed in one apt-get call, without recommends; where that fails, those tests skip and say why.
system:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing="chromium"; \
	command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 || missing="$$missing slurmctld slurmd munge"; \
	[ -z "$$missing" ] || { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) >/dev/null 2>&1 || \
	  echo "warning: could not install$$missing; the tests that need them will be skipped"; }

# Published results reproduced on this CPU, each ending PASS NAME or FAIL NAME: why.
replicate: $(STAMP)
	$(BIN)/lenslab replicate all --out runs/replicate -q

bench: $(STAMP)
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/attention_capture.py
	$(BIN)/python benchmarks/scaling_fit.py
	$(BIN)/python benchmarks/sweep_workers.py

clean:
	rm -rf $(VENV) runs build *.egg-info
