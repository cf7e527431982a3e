# modelrollout: every target installs or builds what it needs, and each is safe to run again.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MODEL_VENV := .venv-model-server
export PATH := $(CURDIR)/.cache/bin/current:$(CURDIR)/$(VENV)/bin:$(PATH)
export KUBECONFIG := $(CURDIR)/.localcluster/kubeconfig

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# ------------------------------------------------------------------ set-up

.PHONY: system-deps
system-deps: ## Debian packages: openssl, Prometheus (installed once, skipped when present)
	@missing=""; for pkg in openssl prometheus; do \
	  dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  systemctl disable --now prometheus >/dev/null 2>&1 || true; \
	fi

$(VENV)/.stamp: pyproject.toml
	@test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

.PHONY: venv
venv: $(VENV)/.stamp ## the operator's virtual environment (.venv)
	@# an editable install made from another checkout points there: re-point it here
	@$(PY) -c "import modelrollout, pathlib, sys; sys.exit(pathlib.Path('operator').resolve() not in pathlib.Path(modelrollout.__file__).resolve().parents)" 2>/dev/null \
	  || $(PY) -m pip install -q --no-deps -e .

.PHONY: model-server-env
model-server-env: ## the model server's own virtual environment (.venv-model-server)
	bash model_server/setup-env.sh

.PHONY: helm
helm: ## build (or reuse) the pinned Helm CLI from the Go module proxy
	bash localcluster/build-helm.sh >/dev/null

.PHONY: chart-crds
chart-crds: ## copy crds/ into the Helm chart (a test fails when they differ)
	bash charts/sync-crds.sh

.PHONY: kind-up kind-test kind-down
kind-up: ## kind cluster with Istio, Seldon Core v1, Prometheus and the chart (needs a Docker engine)
	bash kind/up.sh
kind-test: ## smoke rollout under Locust, then e2e and chaos, against the kind cluster
	bash kind/run-scenarios.sh
kind-down: ## delete the kind cluster
	bash kind/down.sh

.PHONY: models
models: model-server-env ## train the digits model versions into models/ (reproducible, seconds)
	$(MODEL_VENV)/bin/python -m modelserver.train --out models

.PHONY: controlplane
controlplane: ## build (or reuse) kube-apiserver, etcd and kubectl from the Go module proxy
	bash localcluster/build-controlplane.sh >/dev/null

# ------------------------------------------------------------------ local cluster

.PHONY: cluster-up
cluster-up: system-deps venv controlplane models ## etcd, kube-apiserver, CRDs, the Seldon data plane, Prometheus
	$(PY) -m localcluster.controlplane up
	kubectl apply --server-side -f crds/ -f localcluster/fixtures/ >/dev/null
	kubectl wait --for=condition=Established --timeout=60s crd --all >/dev/null
	$(PY) -m localcluster.services up
	@echo "cluster up: export KUBECONFIG=$(KUBECONFIG)"

.PHONY: cluster-down
cluster-down: ## stop the local cluster's processes and forget its data
	@if [ -x $(PY) ]; then $(PY) -m localcluster.services down; $(PY) -m localcluster.controlplane down; \
	 else $(PYTHON_BOOTSTRAP) -m localcluster.controlplane down; fi

# ------------------------------------------------------------------ the two commands

.PHONY: demo
demo: cluster-up ## the main job: a ModelRollout on the local cluster, with live progress
	$(PY) -m localcluster.demo

.PHONY: lint
lint: venv ## ruff, mypy and the import contracts (ARCHITECTURE.md)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	PYTHONPATH=operator:. $(VENV)/bin/lint-imports --no-cache

.PHONY: test-model-server
test-model-server: model-server-env ## the model server's suite, in its own environment
	$(MODEL_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/model_server

.PHONY: bench
bench: cluster-up ## benchmarks that print figures: reaction, rollback and blast radius, data plane, one model server
	$(PY) -m loadtests.bench_reaction
	$(PY) -m loadtests.bench_rollouts
	$(PY) -m loadtests.bench_dataplane
	bash loadtests/bench_model_server.sh

.PHONY: chaos
chaos: cluster-up ## fault scenarios on the local cluster, each checking its invariant (not the API server restart)
	$(PY) -m chaos.kill_model_server
	$(PY) -m chaos.inject_faults
	$(PY) -m chaos.prometheus_outage
	$(PY) -m chaos.operator_restart

.PHONY: test
test: system-deps venv model-server-env models controlplane helm lint ## everything: set-up, lint, unit, integration, e2e
	$(PY) -m pytest -q -p no:cacheprovider tests --ignore=tests/model_server
	$(MODEL_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/model_server
