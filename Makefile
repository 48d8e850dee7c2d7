# The two commands of the README's quick start are `make up` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= local

.PHONY: help bootstrap tools lint test test-unit up preview destroy policy checkov cost cost-diff prices bench lock lock-upgrade cluster-up cluster-down render diagram

help:
	@echo "make up       set up everything, start the local Kubernetes control plane, pulumi up the local stack into it"
	@echo "make render   the local stack rendered to YAML instead (build/manifests/local, kubectl apply -k ready)"
	@echo "make diagram  redraw docs/architecture.svg from the engine's graph of the local stack"
	@echo "make test     set up everything, then lint, type-check and run every test"
	@echo "make policy STACK=prod   run the policy pack over a stack under mocks"
	@echo "make checkov  checkov over dev and prod under mocks; every failure must be accepted in policies/README.md"
	@echo "make cost STACK=prod     print the stack's estimated monthly cost"
	@echo "make cost-diff BASE=origin/main   the cost change of dev and prod since BASE, as Markdown"
	@echo "make prices OFFERS='AmazonEC2.json ...'   refresh the price table from AWS offer files"
	@echo "make bench   measure speed, scale and resilience; writes benchmarks/RESULTS.md"
	@echo "make lock     re-lock after editing pyproject.toml (keeps every pin still allowed)"
	@echo "make lock-upgrade   move every locked package to the newest version pyproject.toml allows"

bootstrap:
	@scripts/bootstrap

lint: bootstrap
	scripts/lock --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/mypy examples/consumer/__main__.py  # its own __main__, apart from the program's

# The lock files (requirements*.lock) that scripts/bootstrap, the image and the deploy
# jobs install; commit them with the pyproject.toml change that needed them.
lock: bootstrap
	scripts/lock

lock-upgrade: bootstrap
	scripts/lock --upgrade

# Tools built from Go modules, or installed into their own virtualenv (checkov), on first
# use (minutes cold, cached after): built here so that no test spends its timeout on it.
tools: bootstrap
	scripts/checkov ensure
	scripts/promtool --version >/dev/null
	scripts/actionlint -version >/dev/null
	scripts/pulumi-engine ensure
	scripts/local-cluster build

test: lint tools
	$(VENV)/bin/pytest

test-unit: bootstrap
	$(VENV)/bin/pytest -m "not engine"

# The main job: the real engine, `pulumi up` on the local stack with the policy pack, into
# the local control plane (scripts/local-cluster, started and built on first use).
up: bootstrap
	scripts/pulumi-engine ensure
	scripts/pulumi-local up

render: bootstrap
	scripts/pulumi-engine ensure
	scripts/pulumi-local render

# docs/architecture.dot and .svg from `pulumi stack graph` of the local program, deployed
# in render mode into a throwaway directory (stacks/diagram.py); the engine tests fail
# when the committed diagram is not what the program gives.
diagram: bootstrap
	scripts/pulumi-engine ensure
	$(PY) -m stacks.diagram

# The local Kubernetes control plane (scripts/local-cluster): start it, stop it (data kept).
cluster-up:
	scripts/local-cluster up

cluster-down:
	scripts/local-cluster down

preview: bootstrap
	scripts/pulumi-local preview

destroy: bootstrap
	scripts/pulumi-local destroy

# The whole policy pack over a stack, under mocks: no engine, no cloud account.
# Both as `up` sees the stack and as `preview` does, with values still unknown.
policy: bootstrap
	$(PY) -m policies.harness --stack $(STACK)
	$(PY) -m policies.harness --stack $(STACK) --preview

# checkov (pinned in tools/checkov/requirements.lock, its own virtualenv) over the dev and
# prod stacks under mocks: Kubernetes objects and the AWS resources as a Terraform plan.
# Fails on a failed check that policies/README.md does not accept, or an accepted one
# that passes now.
checkov: bootstrap
	scripts/checkov ensure
	$(PY) -m policies.checkov_scan

cost: bootstrap
	$(PY) -m policies.cost --stack $(STACK)

# The change in estimated monthly cost from the git ref BASE to this checkout, as the
# Markdown table the PR workflow posts: each side priced by its own program, config and
# price table. OUT=file also writes it there.
BASE ?= origin/main
COST_STACKS ?= dev prod
cost-diff: bootstrap
	$(PY) -m policies.cost --diff $(BASE) $(foreach s,$(COST_STACKS),--stack $(s)) $(if $(OUT),--output $(OUT))

# Refresh costing/data/aws-prices-us-east-1.json from AWS Price List offer files you
# downloaded (AmazonEC2, AmazonElastiCache, AmazonEKS, AWSELB; see costing/update_prices.py).
prices: bootstrap
	$(PY) -m costing.update_prices $(foreach f,$(OFFERS),--offer $(f))

# Speed and scale of the program, the policy pack, the engine, `make up` into a local control
# plane of its own against render mode, the agent app, and the fault campaign's figures, and
# the app beside LiteLLM's proxy per core (benchmarks/peer, in a locked venv of its own under
# ~/.cache/agent-platform); writes benchmarks/RESULTS.md (about 24 minutes on 2 cores;
# `ONLY=peer` alone about 3, plus a minute the first time to install LiteLLM; `ONLY=up` 2).
# `make bench ONLY=app` re-measures one section and keeps the others.
ONLY ?= infra,up,app,peer,campaign
bench: bootstrap
	scripts/pulumi-engine ensure
	$(PY) -m benchmarks.run --only $(ONLY)
