# ts-segmenter — the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 9090
export PORT

.DEFAULT_GOAL := help
.PHONY: help venv tools run test test-fast lint bench label-studio kube-apiserver chart-lint kind-up kind-e2e kind-down clean

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch==2.13.0 is pinned in pyproject.toml; pip (not uv/poetry) finds its CPU wheel.
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed ## create the project venv (only when missing or pyproject.toml changed)

run: venv ## start the embedded default on :$(PORT) (gateway + local KServe predictor + trainer processes)
	$(PY) -m gateway

label-studio: ## real Label Studio venv + migrated data template for e2e tests (cached under ~/.cache/ts-segmenter)
	scripts/install-label-studio.sh

kube-apiserver: ## real kube-apiserver + etcd for Kubernetes tests (built once, cached under ~/.cache/ts-segmenter)
	scripts/build-kube-apiserver.sh

tools: ## system tools the tests use (shellcheck), installed with apt when missing
	@command -v shellcheck >/dev/null || { apt-get update -qq && apt-get install -y -qq shellcheck; }

chart-lint: venv ## Helm lint + render every ci/ scenario, static checks of Dockerfile and k8s/
	$(PY) -m pytest -q tests/charts -m "not k8s"

test: venv tools label-studio kube-apiserver ## run every test (unit, KServe server, Helm chart, real kube-apiserver, real Label Studio)
	$(PY) -m ruff check .
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

test-fast: venv ## unit and component tests only (no Label Studio, no API server)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "not e2e and not k8s"

lint: venv ## ruff
	$(PY) -m ruff check .

bench: venv label-studio ## quality and speed benchmark vs the seed's algorithm (writes bench/results, docs/benchmarks.md)
	OMP_NUM_THREADS=1 $(PY) -m bench

kind-up: ## local kind cluster with cert-manager, KServe (Standard mode) and the chart (needs docker, kind, helm, kubectl)
	k8s/kind-up.sh

kind-e2e: ## run the Label Studio end-to-end test against the chart on kind
	k8s/kind-e2e.sh

kind-down: ## delete the kind cluster
	k8s/kind-down.sh

clean: ## remove the venv and local models
	rm -rf $(VENV) models
