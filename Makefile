# defender-agent: developer entry points. Everything runs from a local .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The install a gateway gets (`pip install .`, no extras), rebuilt for every `make test`.
BASE_VENV := .venv-base

.PHONY: base-venv faults install uninstall check-units docs help venv mosquitto demo test lint typecheck bench faults sample-config clean

help:
	@echo "make demo    - the agent sending real reports over mTLS to a local broker and Device Defender responder"
	@echo "make test    - lint, type check and the full test suite (starts its own mosquitto; also builds"
	@echo "               .venv-base, the base install without extras, and runs the commands from it)"
	@echo "make lint    - ruff and mypy only"
	@echo "make bench   - benchmarks (docs/BENCHMARKS.md)"
	@echo "make faults  - the fault campaign (docs/RELIABILITY.md)"
	@echo "make install - install on this gateway (as root): user, /opt venv, systemd units (docs/INSTALL.md)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

base-venv:
	rm -rf $(BASE_VENV)
	$(PYTHON) -m venv $(BASE_VENV)
	$(BASE_VENV)/bin/python -m pip install -q --disable-pip-version-check .

mosquitto:
	@missing=""; \
	  { command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto; } || missing="$$missing mosquitto"; \
	  command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	  command -v strace >/dev/null 2>&1 || missing="$$missing strace"; \
	  if [ -n "$$missing" ]; then \
	    echo "Installing$$missing (broker tests, throwaway certificates, fsync counts)"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	  fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

demo: $(STAMP) mosquitto
	$(BIN)/defender-agent demo

test: $(STAMP) mosquitto lint base-venv
	DEFENDER_AGENT_BASE_VENV=$(CURDIR)/$(BASE_VENV) $(BIN)/pytest --cov=agent --cov-report=term:skip-covered

sample-config: $(STAMP)
	$(BIN)/defender-agent sample-config > config/agent.example.yaml

bench: $(STAMP) mosquitto
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python -m benchmarks.run

faults: $(STAMP) mosquitto
	$(BIN)/python -m benchmarks.faults

clean:
	rm -rf .demo .venv-base .pytest_cache .mypy_cache .ruff_cache .coverage

docs: $(STAMP)
	$(BIN)/defender-agent sample-config > config/agent.example.yaml
	$(BIN)/python -c 'import agent.docs as d; d.main(["README.md"])'

install:  ## install on this gateway (run as root): user, /opt venv, systemd units
	scripts/install.sh $(INSTALL_ARGS)

uninstall:  ## keeps /etc/defender-agent and /var/lib/defender-agent; INSTALL_ARGS=--purge removes them
	scripts/install.sh --uninstall $(INSTALL_ARGS)

check-units:
	systemd-analyze security --offline=yes --threshold=20 systemd/defender-agent.service
	systemd-analyze security --offline=yes --threshold=20 systemd/defender-agent-bootstrap.service
