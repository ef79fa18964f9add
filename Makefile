# defender-agent: developer entry points. Everything runs from a local .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The install a gateway gets (`pip install .`, no extras), rebuilt for every `make test`.
BASE_VENV := .venv-base

.PHONY: deb deb-deps debian-install foreign-deps node-exporter systemd-test tpm-check base-venv faults install uninstall check-units docs help venv mosquitto demo test lint typecheck bench faults sample-config clean

help:
	@echo "make demo    - real reports over mTLS to a local broker and Device Defender, a topic sink, a textfile"
	@echo "               and one on-device violation raised and cleared"
	@echo "make test    - lint, type check and the full test suite (starts its own mosquitto; also builds"
	@echo "               .venv-base, the base install without extras, and the .deb, installs it on this"
	@echo "               machine (apt, root or sudo) and runs the installed commands on both library sets)"
	@echo "make lint    - ruff and mypy only"
	@echo "make bench   - benchmarks (docs/BENCHMARKS.md)"
	@echo "make faults  - the fault campaign (docs/RELIABILITY.md)"
	@echo "make docs    - regenerate config/agent.example.yaml, docs/CONFIGURATION.md and docs/COLLECTORS.md"
	@echo "make deb     - dist/defender-agent_VERSION_all.deb on Debian's python3-* libraries (lintian-checked)"
	@echo "make systemd-test - that package under a real systemd 252 in a bookworm container (root; docs/SYSTEMD-TEST.md)"
	@echo "make tpm-check - a device key on a simulated TPM 2.0 (swtpm), reports accepted on both awscrt versions (docs/HARDWARE-KEYS.md)"
	@echo "make install - install on this gateway (as root): user, /opt venv, systemd units (docs/INSTALL.md)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

base-venv:
	rm -rf $(BASE_VENV) build/lib build/bdist.*  # setuptools would put what an earlier build left there in the wheel
	$(PYTHON) -m venv $(BASE_VENV)
	$(BASE_VENV)/bin/python -m pip install -q --disable-pip-version-check .

# Installed, never started as services (policy-rc.d answers 101 while apt runs): the tests start their own
# mosquitto on a free loopback port, and sshd and rsyslog in private namespaces (tests/collectors/test_logins_sshd.py).
mosquitto:
	@missing=""; \
	  { command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto; } || missing="$$missing mosquitto"; \
	  command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	  command -v strace >/dev/null 2>&1 || missing="$$missing strace"; \
	  test -x /usr/sbin/sshd || missing="$$missing openssh-server"; \
	  test -x /usr/sbin/rsyslogd || missing="$$missing rsyslog"; \
	  command -v sshpass >/dev/null 2>&1 || missing="$$missing sshpass"; \
	  command -v softhsm2-util >/dev/null 2>&1 || missing="$$missing softhsm2"; \
	  command -v pkcs11-tool >/dev/null 2>&1 || missing="$$missing opensc"; \
	  if [ -n "$$missing" ]; then \
	    echo "Installing$$missing (broker tests, throwaway certificates, fsync counts, a real sshd's failed logins, PKCS#11 tokens)"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); guard=""; \
	    if [ ! -e /usr/sbin/policy-rc.d ]; then \
	      printf '#!/bin/sh\nexit 101\n' | $$SUDO tee /usr/sbin/policy-rc.d >/dev/null && $$SUDO chmod 755 /usr/sbin/policy-rc.d && guard=1; \
	    fi; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	    status=$$?; [ -z "$$guard" ] || $$SUDO rm -f /usr/sbin/policy-rc.d; exit $$status; \
	  fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

demo: $(STAMP) mosquitto
	$(BIN)/python -m devkit demo

# Raspberry Pi OS's armhf and arm64 userlands run under qemu-user (tests/install/test_foreign_arch.py).
foreign-deps:
	@command -v debootstrap >/dev/null && command -v qemu-arm-static >/dev/null && command -v qemu-aarch64-static >/dev/null \
	  || { echo "Installing debootstrap, qemu-user-static (armhf/arm64 tests)"; \
	       $(APT_GET) update -qq && $(APT_GET) install -y -qq debootstrap qemu-user-static >/dev/null; }

# Debian's node_exporter for tests/sinks/test_textfile_node_exporter.py, unpacked, never started as a service:
# the machine's own when the package is installed, else `apt-get download` + `dpkg-deb -x` (no root).
NODE_EXPORTER_DIR := build/debian-tools/prometheus-node-exporter
NODE_EXPORTER = $(shell test -x /usr/bin/prometheus-node-exporter && echo /usr/bin/prometheus-node-exporter \
  || echo $(CURDIR)/$(NODE_EXPORTER_DIR)/usr/bin/prometheus-node-exporter)

node-exporter:
	@test -x $(NODE_EXPORTER) || { echo "Unpacking Debian's prometheus-node-exporter into $(NODE_EXPORTER_DIR) (textfile test)"; \
	  rm -rf $(NODE_EXPORTER_DIR) && mkdir -p $(NODE_EXPORTER_DIR)/deb && chmod 777 $(NODE_EXPORTER_DIR)/deb && \
	  ( cd $(NODE_EXPORTER_DIR)/deb && apt-get download prometheus-node-exporter >/dev/null 2>&1 \
	    || { $(APT_GET) update -qq && apt-get download prometheus-node-exporter >/dev/null; } ) && \
	  dpkg-deb -x $(NODE_EXPORTER_DIR)/deb/prometheus-node-exporter_*.deb $(NODE_EXPORTER_DIR) && \
	  test -x $(NODE_EXPORTER); }

# Library sets: the newest from PyPI (.venv, .venv-base); Debian's (the .deb installed on this machine);
# Debian's armhf and arm64 builds under qemu-user.
test: $(STAMP) mosquitto lint base-venv debian-install foreign-deps node-exporter
	DEFENDER_AGENT_BASE_VENV=$(CURDIR)/$(BASE_VENV) DEFENDER_AGENT_DEB=$(CURDIR)/$(DEB) DEFENDER_AGENT_DEBIAN=1 \
	  DEFENDER_AGENT_FOREIGN=armhf,arm64 DEFENDER_AGENT_NODE_EXPORTER=$(NODE_EXPORTER) \
	  $(BIN)/pytest --cov=agent --cov-report=term:skip-covered

# The example config alone; `make docs` writes it too.
sample-config: $(STAMP)
	$(BIN)/defender-agent sample-config > config/agent.example.yaml

bench: $(STAMP) mosquitto
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python -m benchmarks.run

faults: $(STAMP) mosquitto
	$(BIN)/python -m benchmarks.faults

clean:
	rm -rf .demo .venv-base .pytest_cache .mypy_cache .ruff_cache .coverage build/deb dist

# Every generated page: config/agent.example.yaml, docs/CONFIGURATION.md, docs/COLLECTORS.md (agent/docs/);
# tests/docs/test_generated.py fails when one is stale.
docs: $(STAMP)
	$(BIN)/python -c 'import agent.docs.generate as g; g.main()'

# The Debian package, built with debhelper from a copy of the tree (tracked and new files, no venvs),
# so dpkg-buildpackage's output stays out of the checkout's parent directory.
VERSION = $(shell dpkg-parsechangelog -l debian/changelog -S Version 2>/dev/null || sed -n '1s/.*(\(.*\)).*/\1/p' debian/changelog)
DEB := dist/defender-agent_$(VERSION)_all.deb
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_GET = $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

deb-deps:
	@if [ "$$(dpkg-query -W -f='$${Status}\n' debhelper dh-python lintian 2>/dev/null | grep -c 'ok installed')" != 3 ]; then \
	  echo "Installing debhelper, dh-python, lintian (make deb)"; \
	  $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends debhelper dh-python lintian >/dev/null; fi

deb: deb-deps
	rm -rf build/deb && mkdir -p build/deb/src dist
	git ls-files -z --cached --others --exclude-standard | xargs -0 sh -c 'for f; do [ -e "$$f" ] && printf "%s\0" "$$f"; done' sh \
	  | xargs -0 cp --parents -t build/deb/src  # the working tree: tracked files deleted but not committed stay out
	cd build/deb/src && dpkg-buildpackage -us -uc -b >../build.log 2>&1 || { tail -40 ../build.log; exit 1; }
	mv build/deb/defender-agent_$(VERSION)_all.deb $(DEB)
	lintian --fail-on error --no-tag-display-limit $(DEB)
	@echo "built $(DEB)"

# The package installed on this machine (Debian's libraries, the system interpreter): the second library set
# `make test` runs the installed-program tests on (tests/install/test_debian_package.py).
debian-install: deb
	@dpkg-query -W -f='$${Status}\n' python3-awscrt 2>/dev/null | grep -q 'ok installed' || { $(APT_GET) update -qq; }
	$(APT_GET) install -y -qq --reinstall ./$(DEB) >/dev/null

systemd-test: $(STAMP) deb
	@command -v debootstrap >/dev/null && command -v systemd-nspawn >/dev/null \
	  || { $(APT_GET) update -qq && $(APT_GET) install -y -qq debootstrap systemd-container >/dev/null; }
	DEFENDER_AGENT_SYSTEMD_DEB=$(CURDIR)/$(DEB) $(BIN)/pytest tests/systemd -p no:cacheprovider -rs -v --timeout 900

# A device key on a simulated TPM 2.0, end to end, on both awscrt versions (docs/HARDWARE-KEYS.md): a manual
# check, not part of `make test`. tpm2-abrmd's service is never started (policy-rc.d 101 while apt runs).
TPM_PACKAGES := swtpm swtpm-tools tpm2-abrmd libtss2-tcti-tabrmd0 libtpm2-pkcs11-1 libtpm2-pkcs11-tools tpm2-tools tpm2-openssl softhsm2 opensc
tpm-check: $(STAMP) mosquitto
	@missing=$$(for p in $(TPM_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "Installing" $$missing; guard=""; \
	    if [ ! -e /usr/sbin/policy-rc.d ]; then \
	      printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null && $(SUDO) chmod 755 /usr/sbin/policy-rc.d && guard=1; \
	    fi; \
	    $(APT_GET) update -qq && $(APT_GET) install -y -qq $$missing >/dev/null; \
	    status=$$?; [ -z "$$guard" ] || $(SUDO) rm -f /usr/sbin/policy-rc.d; [ $$status = 0 ] || exit $$status; \
	  fi
	$(BIN)/python -m devkit.tpm_check

install:  ## install on this gateway (run as root): user, /opt venv, systemd units
	scripts/install.sh $(INSTALL_ARGS)

uninstall:  ## keeps /etc/defender-agent and /var/lib/defender-agent; INSTALL_ARGS=--purge removes them
	scripts/install.sh --uninstall $(INSTALL_ARGS)

check-units:
	systemd-analyze security --offline=yes --threshold=20 systemd/defender-agent.service
	systemd-analyze security --offline=yes --threshold=20 systemd/defender-agent-bootstrap.service
