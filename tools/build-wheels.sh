#!/bin/bash
# Build the wheel set that the fleetsafe.backup.agent role installs on hosts:
# the agent, every runtime dependency and pip itself (hosts have no internet and
# may lack ensurepip, so the role runs pip from its wheel).  Writes SHA256SUMS,
# which the role compares to decide whether to reinstall, and
# fleetsafe-wheels.tar (the wheels plus SHA256SUMS), which the role unpacks.
#
#   tools/build-wheels.sh [OUTDIR]        (default build/wheels)
#
# Versions are pinned by the "agent runtime deps" block of requirements-dev.txt.
# The wheels match the controller's Python (ABI); hosts must run the same
# Python minor version (Debian 12: 3.11), or build per host Python.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/wheels}
pip=${PIP:-.venv/bin/pip}
tmp=$(mktemp -d build/.wheels.XXXXXX 2>/dev/null || { mkdir -p build && mktemp -d build/.wheels.XXXXXX; })
trap 'rm -rf "$tmp"' EXIT
# Reproducible: the same source gives byte-identical wheels (zip timestamps from
# SOURCE_DATE_EPOCH), so a rebuild or another clone of the same commit does not
# make the role reinstall the agent on every host (the epoch is the last commit
# that touched agent/, so other commits leave the wheel as it was).
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct -- agent 2>/dev/null || echo 315532800)}
sed -n '/^# agent runtime deps/,$p' requirements-dev.txt | grep -v '^#' | grep -v '^$' >"$tmp/constraints.txt"
"$pip" wheel --quiet --disable-pip-version-check -w "$tmp/wheels" -c "$tmp/constraints.txt" ./agent pip
(cd "$tmp/wheels" && sha256sum -- *.whl >SHA256SUMS)
# One archive of the whole set: the role transfers it in one step instead of
# one module run per wheel.
tar -C "$tmp/wheels" -cf "$tmp/fleetsafe-wheels.tar" -- SHA256SUMS $(cd "$tmp/wheels" && ls -- *.whl)
mv "$tmp/fleetsafe-wheels.tar" "$tmp/wheels/fleetsafe-wheels.tar"
rm -rf "$out"
mkdir -p "$(dirname "$out")"
mv "$tmp/wheels" "$out"
echo "wheels: $(ls "$out"/*.whl | wc -l) in $out"
