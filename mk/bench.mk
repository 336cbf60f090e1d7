# Benchmark (not a test): fleetsafe vs restic vs BorgBackup on one ~1 GiB dataset.
BENCH_SIZE_MIB ?= 1024
.PHONY: bench
bench: venv
	@for p in restic borgbackup time; do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq $$missing; fi
	$(PY) bench/bench.py --size-mib $(BENCH_SIZE_MIB)
