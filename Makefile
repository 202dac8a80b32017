# prelabel -- `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
FACENET := facenet-pytorch==2.6.0

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## Create the virtualenv and install everything (idempotent)

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -r requirements.txt -r requirements-dev.txt
	# facenet-pytorch's metadata pins torch<2.3; it runs with ours (see README).
	$(PY) -m pip install --no-deps $(FACENET)
	$(PY) -m pip install --no-deps -e .
	touch $@

system-deps: ## Install promtool/prometheus and kubectl when missing (Debian, needs root)
	bash scripts/ensure_system_deps.sh

protos: $(VENV)/.installed ## Regenerate prelabel/v1 from protos/
	PYTHON=$(PY) bash scripts/gen_protos.sh

check-protos: protos ## Fail when the generated code in git is stale
	@git diff --exit-code --stat -- prelabel/v1 || { echo "generated code is stale: run 'make protos' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- prelabel/v1)" || { git status --porcelain -- prelabel/v1; echo "untracked generated files: run 'make protos' and commit"; exit 1; }

models: venv ## Fetch, verify and convert the CPU-profile models into the cache (~/.cache/prelabel/models; seconds when cached)
	$(VENV)/bin/prelabel models pull --profile cpu

models-gpu: venv ## Fetch the GPU profile's published torchvision weights (needs a network; verified by hash)
	$(VENV)/bin/prelabel models pull --profile gpu

tool-venvs: venv ## Virtualenvs of the annotation tools the tests load outputs into (cached in ~/.cache/prelabel/tools)
	$(PY) scripts/tool_venv.py --all

lint: venv ## ruff (pyflakes + pycodestyle errors)
	$(VENV)/bin/ruff check .

typecheck: venv ## mypy over prelabel/, services/ and bench/
	$(VENV)/bin/mypy

test: venv system-deps check-protos lint typecheck models tool-venvs ## Run the whole test suite (unit, integration with a real Triton, manifests, rules)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv models ## Unit tests only (no servers)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

run: venv models ## Start embedded Triton + the services on localhost, pre-label sample photos, serve until Ctrl-C
	$(PY) -m services.devstack

bench: venv models ## Benchmarks side by side (suite vs bare Triton, batching on/off, hops, payload): bench/results/
	$(PY) -m bench
	$(PY) -m bench.clicks --out bench/results/clicks.json
	$(PY) -m bench.sam_clicks --out bench/results/sam_clicks.json

bench-gpu: ## GPU benchmark on a machine with one NVIDIA GPU (see bench/gpu.sh)
	bash bench/gpu.sh

fuzz: venv ## Longer atheris fuzzing run over image decoding and request validation (10 min)
	mkdir -p .fuzz/corpus .fuzz/artifacts
	$(PY) fuzz/fuzz_decode.py -max_total_time=600 -rss_limit_mb=2048 -timeout=10 -artifact_prefix=.fuzz/artifacts/ .fuzz/corpus fuzz/corpus

reliability-report: venv ## Re-run the reliability tests and write their figures into README
	$(PY) -m pytest -q tests/reliability tests/fuzz
	$(PY) scripts/reliability_report.py

.PHONY: help venv system-deps protos check-protos models models-gpu tool-venvs lint typecheck test test-unit run bench bench-gpu fuzz reliability-report
