# Two commands on a fresh machine (Python >= 3.11 and a Rust toolchain on PATH):
#
#   make up     set up what running needs, then `tessera up` (the whole system, two regions)
#   make test   set up what testing needs, then the Rust suite and pytest; fails when a test fails
#
# Each setup step is skipped when already done: the virtualenv exists, the install's stamp is
# newer than everything the install is made from, chromium is at /usr/bin/chromium. Arguments:
# `make up ARGS='--regions 3'`, `make test PYTEST_ARGS='tests/unit -x'`.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

PYTHON ?= python3
VENV := .venv
ARGS ?=
PYTEST_ARGS ?=
CHROMIUM := /usr/bin/chromium
# axe-core, which the browser test injects into the page (tests/e2e/package.json pins it).
AXE := tests/e2e/node_modules/axe-core/axe.min.js

# What `pip install -e` turns into installed files: the metadata and dependency lists, and the
# Rust extension (with its stubs) that maturin compiles. Python sources are not among them: the
# editable install reads those from the working tree, so editing one needs no reinstall.
INSTALL_INPUTS := pyproject.toml Cargo.toml Cargo.lock core_rs/Cargo.toml tessera_core.pyi \
	$(shell find core_rs/src -type f)

# Inside the virtualenv, so that deleting it forgets them too.
LOCAL_STAMP := $(VENV)/.tessera-installed-local
DEV_STAMP := $(VENV)/.tessera-installed-dev

# maturin compiles the extension during the install: say what is missing before pip starts.
REQUIRE_CARGO := command -v cargo >/dev/null || { echo "make: cargo is not on PATH: install a \
Rust toolchain (https://rustup.rs), then run make again" >&2; exit 1; }

.PHONY: help up test setup setup-dev

help:
	@echo "make up     run the whole system on this machine (sets itself up first)"
	@echo "make test   run every test: cargo test, then pytest (sets itself up first)"

up: setup
	$(VENV)/bin/tessera up $(ARGS)

test: setup-dev
	cargo test --workspace
	$(VENV)/bin/pytest $(PYTEST_ARGS)

setup: $(LOCAL_STAMP)

setup-dev: $(DEV_STAMP) $(CHROMIUM) $(AXE)

# pip is the last thing venv creates, so a creation that failed halfway is retried.
$(VENV)/bin/pip:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "make: Tessera \
	needs Python >= 3.11 and $(PYTHON) is older: make PYTHON=python3.11 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# The virtualenv is order-only: its absence forces an install, its age does not.
$(LOCAL_STAMP): $(INSTALL_INPUTS) | $(VENV)/bin/pip
	@$(REQUIRE_CARGO)
	$(VENV)/bin/pip install -e '.[local]'
	touch $@

# [dev] includes [local], so the dev install brings the local stamp up to date as well.
$(DEV_STAMP): $(INSTALL_INPUTS) | $(VENV)/bin/pip
	@$(REQUIRE_CARGO)
	$(VENV)/bin/pip install -e '.[dev]'
	touch $@ $(LOCAL_STAMP)

# From the npm registry with the machine's npm, exactly as locked; touched so that a lock older
# than an earlier install does not reinstall every time.
$(AXE): tests/e2e/package.json tests/e2e/package-lock.json
	@command -v npm >/dev/null || { echo "make: the browser test's axe-core needs npm: \
	apt-get install -y npm" >&2; exit 1; }
	npm ci --prefix tests/e2e --no-audit --no-fund
	touch $@

# The browser test drives Debian's chromium, never a browser Playwright downloads. apt needs
# root: used directly as root, through sudo when there is one; otherwise say what to run.
$(CHROMIUM):
	@if ! command -v apt-get >/dev/null; then \
		echo "make: the browser test needs Debian's chromium at $@, and there is no apt-get" >&2; \
		exit 1; \
	elif [ "$$(id -u)" -eq 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null; then sudo="sudo"; \
	else \
		echo "make: the browser test needs Debian's chromium at $@; as root, run:" >&2; \
		echo "  apt-get update && apt-get install -y chromium" >&2; \
		exit 1; \
	fi; \
	set -x; \
	$$sudo apt-get update -q; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
