#!/bin/bash
# Prerequisites on the controller for the container fleet (Debian 12, root, no systemd
# as PID 1): podman + runc, debootstrap for the image, OpenSSH client/server.
# Idempotent and quick when everything is already present.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(podman runc debootstrap openssh-server openssh-client)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "host-setup: installing ${missing[*]}"
  # Wait for a dpkg lock held by another apt run (make deps, another clone) instead of failing.
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  # sshd is not started by the install: /usr/sbin/policy-rc.d refuses it on this machine.
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null
fi

# crun (podman's default runtime) fails on this kernel: "cgroups in hybrid mode not
# supported". The VM's hard RLIMIT_NOFILE is 20000 and cannot be raised, so podman's
# default (nofile=1048576) fails with "error setting rlimit type 7".
CONF=/etc/containers/containers.conf
WANT='[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"'
mkdir -p /etc/containers
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$WANT" ]; then
  if [ -f "$CONF" ] && ! grep -q 'runtime = "runc"' "$CONF"; then
    cp -p "$CONF" "$CONF.fleetsafe-backup"
  fi
  printf '%s\n' "$WANT" > "$CONF"
  echo "host-setup: wrote $CONF"
fi
mkdir -p /run/sshd   # privilege-separation dir for a host sshd (nothing creates it without systemd)
echo "host-setup: ok ($(podman --version))"
