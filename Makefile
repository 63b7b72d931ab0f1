# `make test` and `make demo` do all set-up themselves (hack/setup.sh): system packages when run
# as root, the virtual environment, and the collection under .build/ansible_collections/.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
export PYTHON VENV

.PHONY: all setup test sanity units localnet integration molecule demo changelog clean

all: test

setup:
	@hack/setup.sh

test: setup
	@hack/test.sh

sanity units localnet integration molecule: setup
	@hack/test.sh $@

demo: setup
	@hack/demo.sh

changelog: setup
	@$(VENV)/bin/antsibull-changelog lint

clean:
	rm -rf .build tests/output
