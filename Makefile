# `make test` and `make demo` do all set-up themselves (hack/setup.sh): system packages when run
# as root, the virtual environment, and the collection under .build/ansible_collections/.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
export PYTHON VENV

.PHONY: all setup test test-py312 sanity units localnet integration molecule demo changelog clean

all: test

setup:
	@hack/setup.sh

# Python 3.11 / ansible-core 2.19: every stage; then Python 3.12 / ansible-core 2.21: sanity and units.
test: setup
	@hack/test.sh
	@hack/test-py312.sh

test-py312:
	@hack/test-py312.sh

sanity units localnet integration molecule: setup
	@hack/test.sh $@

demo: setup
	@hack/demo.sh

changelog: setup
	@$(VENV)/bin/antsibull-changelog lint

clean:
	rm -rf .build tests/output
