# Orrery: the one entry point. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
# uv from the machine if it has one, else a private copy bootstrapped with the machine's Python.
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
PY := .venv/bin/python
NPM := npm --prefix web --no-audit --no-fund --loglevel=error

.PHONY: help install up test test-unit test-contract test-integration test-replay test-system \
        test-browser test-web lint format types bench clean agents

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: $(UV) uv.lock pyproject.toml libs/*/pyproject.toml services/*/pyproject.toml cli/pyproject.toml
	$(UV) sync --all-packages --frozen --python python3.11
	@touch $@

web/node_modules/.installed: web/package.json web/package-lock.json
	$(NPM) ci
	@touch $@

web/dist/index.html: web/node_modules/.installed $(shell find web/src -type f 2>/dev/null) web/index.html web/vite.config.ts
	$(NPM) run build

# The agent CLIs sessions drive (Claude Code, Codex, Gemini CLI, OpenCode), pinned with their
# lockfile (transitive packages too), into the checkout: about 1.2 GB, quick again from npm's
# cache. `install`, not `ci`: npm leaves other platforms' optional packages out of the lock,
# which `ci` then refuses as out of sync.
AGENTS := tools/agent-clis
$(AGENTS)/node_modules/.installed: $(AGENTS)/package.json $(AGENTS)/package-lock.json
	npm --prefix $(AGENTS) install --no-audit --no-fund --loglevel=error
	@touch $@

agents: $(AGENTS)/node_modules/.installed ## install the pinned agent CLIs into tools/agent-clis

# Browser tests drive Debian's Chromium (Playwright cannot download a browser here).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
/usr/bin/chromium:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium fonts-liberation >/dev/null

# The Docker environment runner is tested against podman's Docker-compatible API (no engine here).
/usr/bin/podman:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq podman runc busybox-static >/dev/null

install: .venv/.synced web/node_modules/.installed $(AGENTS)/node_modules/.installed ## install Python and web dependencies (idempotent)

up: install web/dist/index.html ## run the product: NATS, PostgreSQL, all services and the UI
	.venv/bin/orrery up $(ARGS)

test: install web/dist/index.html /usr/bin/chromium /usr/bin/podman ## run every test tier (installs what the tests need first)
	$(NPM) test
	@scripts/test-tier all

test-unit: .venv/.synced ## unit tests (no I/O)
	@scripts/test-tier unit
test-contract: .venv/.synced ## contract tests: event store contract, golden fixtures
	@scripts/test-tier contract
test-integration: .venv/.synced /usr/bin/podman ## adapters against real NATS and PostgreSQL
	@scripts/test-tier integration
test-replay: .venv/.synced ## recorded event logs replayed through projections
	@scripts/test-tier replay
test-system: .venv/.synced ## the whole stack as processes
	@scripts/test-tier system
test-browser: install web/dist/index.html /usr/bin/chromium ## Playwright against Debian's Chromium
	@scripts/test-tier browser
test-web: web/node_modules/.installed ## front-end unit tests (Vitest)
	$(NPM) test

lint: install ## ruff, mypy --strict, import-linter contracts, generated files, web typecheck
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports
	$(PY) scripts/gen_types.py --check
	$(NPM) run typecheck

format: .venv/.synced ## apply ruff's fixes and formatting
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

types: install ## regenerate docs/events.md, JSON Schema, web types and deploy/nats definitions
	$(PY) scripts/gen_types.py
	cd web && npx --no-install json2ts --unreachableDefinitions -i ../docs/events.schema.json -o src/gen/events.ts

bench: install ## benchmarks: ratios measured side by side in one run
	$(PY) bench/events.py $(ARGS)
	$(PY) bench/startup.py
	$(PY) bench/worktrees.py
	$(PY) bench/sessions.py

clean: ## remove installed dependencies and build outputs
	rm -rf .venv .tools web/node_modules web/dist $(AGENTS)/node_modules
