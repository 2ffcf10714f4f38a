# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
#
#   make demo   set up (first run only) and run the main job on the bundled sample drive
#   make test   set up (first run only) and run the test suite
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV := source scripts/env.sh
PYTEST_ARGS ?=

.PHONY: help setup build demo test test-fast lint clean

help:
	@echo "make demo   - run SAM4D on the bundled sample drive through the ROS 2 node (does setup on first use)"
	@echo "make test   - run the tests (does setup on first use)"
	@echo "make setup  - create .venv, install ROS 2 wheels/Python deps, colcon build (idempotent)"
	@echo "make lint   - ruff + header checks"

setup:
	@bash scripts/setup.sh

build: setup

demo: setup
	@$(ENV) && python -m sam4d_ros.demo --out out/demo

test: setup
	@$(ENV) && python -m pytest test $(PYTEST_ARGS)

test-fast: setup
	@$(ENV) && python -m pytest test -m "not slow" $(PYTEST_ARGS)

lint: setup
	@$(ENV) && python -m pytest test/test_lint.py $(PYTEST_ARGS)

clean:
	rm -rf build install log .dev_ws out
