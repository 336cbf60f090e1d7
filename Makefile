# fleetsafe — the two commands: `make demo` and `make test` (README.md).
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
PIP   := $(VENV)/bin/pip
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: venv deps test demo lint clean

# Debian packages the suite and the demo need (idempotent, quick when present).
APT_PACKAGES := python3-venv openssh-server openssl zstd
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

$(VENV)/.installed: requirements-dev.txt agent/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -r requirements-dev.txt
	$(PIP) install -q --no-deps -e agent
	touch $@

venv: deps $(VENV)/.installed

test: venv
	$(VENV)/bin/pytest -q tests

clean:
	rm -rf build reports state

# Feature makefiles (demo fleet, benchmarks, …) add their targets here.
-include mk/*.mk
