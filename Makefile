# fleetsafe — the two commands: `make demo` and `make test` (README.md).
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
PIP   := $(VENV)/bin/pip
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: venv deps test demo lint clean wheels collections

# Debian packages the suite and the demo need (idempotent, quick when present).
# chromium: the report's HTML is checked in a real browser (tests/integration/report).
APT_PACKAGES := python3-venv openssh-server openssl zstd chromium
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq $$missing; fi

$(VENV)/.installed: requirements-dev.txt agent/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -r requirements-dev.txt
	$(PIP) install -q --no-deps -e agent
	touch $@

venv: deps $(VENV)/.installed

# FLEETSAFE_REQUIRE_SERVICES=1: a missing sshd/SeaweedFS/SMTP fails the run instead of skipping.
test: venv
	FLEETSAFE_REQUIRE_SERVICES=1 $(VENV)/bin/pytest -q tests

# --- the demo: this machine as a one-host fleet ------------------------------
# Ansible finds this working tree as the collection fleetsafe.backup through a
# symlink (TESTBED §2); ansible.cfg points there too.
COLLECTIONS := $(CURDIR)/build/collections
ANSIBLE_ENV := ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS) ANSIBLE_CONFIG=$(CURDIR)/ansible.cfg
WHEELS      := build/wheels
AGENT_SRC   := $(shell find agent/fleetsafe -name '*.py' 2>/dev/null) agent/pyproject.toml

collections:
	@mkdir -p $(COLLECTIONS)/ansible_collections/fleetsafe
	@ln -sfn $(CURDIR) $(COLLECTIONS)/ansible_collections/fleetsafe/backup

# Wheels of the agent, all its dependencies and pip, rebuilt when the agent changes.
$(WHEELS)/SHA256SUMS: $(AGENT_SRC) requirements-dev.txt tools/build-wheels.sh | $(VENV)/.installed
	PIP=$(PIP) tools/build-wheels.sh $(WHEELS)

wheels: venv $(WHEELS)/SHA256SUMS

# make demo: recovery key pair (once), then the site playbook on inventories/local.
# A first run takes a full and an incremental backup; a re-run within the
# FREQ-FULL window (7 days) takes one more incremental.
demo: venv wheels collections
	$(ANSIBLE_ENV) $(VENV)/bin/ansible-playbook -i inventories/local playbooks/recovery_key.yml
	$(ANSIBLE_ENV) $(VENV)/bin/ansible-playbook -i inventories/local playbooks/site.yml
	@echo; /usr/local/bin/fleetsafe snapshots | tail -n 6 || true
	@echo "report: $(CURDIR)/reports/latest/index.html  ($(CURDIR)/reports/latest/fleet.json)"

lint: venv collections
	$(ANSIBLE_ENV) $(VENV)/bin/ansible-lint
	$(VENV)/bin/antsibull-changelog lint

clean:
	rm -rf build reports state

# Feature makefiles (demo fleet, benchmarks, …) add their targets here.
-include mk/*.mk
