# kcm-hook. Every target installs what it needs: run as root on Debian.
#   make demo    pin two real runc containers to their pools and show it
#   make test    lint, then unit and integration tests (runc, dockerd, Podman)
#   make bench   benchmarks, printed as one table, raw JSON under bench/results/
#                (BENCH_ARGS="--only 1,3 --runs 31" to choose)
#   make         (image) the Docker image `kcm`

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEBIAN_PACKAGES := runc busybox-static docker.io podman debootstrap
BASE_IMAGE ?= python:3.11-slim-bookworm

.PHONY: all image demo test lint unit integration bench debian-packages clean

all: image

debian-packages:
	@scripts/ensure-debian-packages $(DEBIAN_PACKAGES)

$(VENV)/.installed: setup.py requirements-dev.txt
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || scripts/ensure-debian-packages python3-venv
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e . -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

demo: debian-packages $(VENV)/.installed
	$(PY) scripts/demo.py

test: debian-packages $(VENV)/.installed lint
	$(PY) -m pytest tests integration

lint: $(VENV)/.installed
	$(PY) -m ruff check kcm_hook tests integration bench scripts

unit: $(VENV)/.installed
	$(PY) -m pytest tests

integration: debian-packages $(VENV)/.installed
	$(PY) -m pytest integration

bench: debian-packages $(VENV)/.installed
	$(PY) bench/run.py $(BENCH_ARGS)

image: debian-packages $(VENV)/.installed
	$(PY) scripts/build-image.py --base $(BASE_IMAGE) --tag kcm

clean:
	rm -rf $(VENV) build dist *.egg-info .demo bench/results
