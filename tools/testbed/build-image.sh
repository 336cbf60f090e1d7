#!/bin/bash
# Build the systemd test-host image from Debian's mirror (no container registry needed).
# Usage: build-image.sh [IMAGE]      default localhost/fleetsafe-host:bookworm
#        FORCE=1 build-image.sh      rebuild even if the cached image is current
#
# Cached: the image carries a label with the sha256 of this script; when an image with
# the same label exists the build (~2 min) is skipped.
set -euo pipefail
IMAGE=${1:-${FLEET_IMAGE:-localhost/fleetsafe-host:bookworm}}
SELF_HASH=$(sha256sum "$0" | cut -d' ' -f1)
LABEL=org.fleetsafe.build-hash

if [ -z "${FORCE:-}" ] && podman image exists "$IMAGE"; then
  have=$(podman image inspect --format "{{ index .Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null || true)
  if [ "$have" = "$SELF_HASH" ]; then
    echo "build-image: $IMAGE is current (build hash ${SELF_HASH:0:12})"
    exit 0
  fi
  echo "build-image: $IMAGE is stale (label '${have:0:12}', script ${SELF_HASH:0:12}); rebuilding"
fi

ROOTFS=$(mktemp -d /var/tmp/fleetsafe-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
start=$(date +%s)
# python3-venv: the agent role creates /opt/fleetsafe/venv on the host.
# sudo: the non-root SSH user escalates with become.  cron: the role's fallback scheduler.
debootstrap --variant=minbase \
  --include=openssh-server,python3,python3-venv,sudo,systemd,systemd-sysv,cron,procps,zstd \
  bookworm "$ROOTFS" >/dev/null

# The containers share the host network: sshd must never listen on 0.0.0.0:22. It starts
# only when a per-container /etc/ssh/sshd_config.d/10-listen.conf (Port + ListenAddress
# 127.0.0.1) is mounted, and every container generates its own host keys at first boot.
mkdir -p "$ROOTFS/etc/systemd/system/ssh.service.d"
cat > "$ROOTFS/etc/systemd/system/ssh.service.d/10-testbed.conf" <<'UNIT'
[Unit]
ConditionPathExists=/etc/ssh/sshd_config.d/10-listen.conf
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
rm -f "$ROOTFS"/etc/ssh/ssh_host_*
# Units that cannot work in a container and only make the system "degraded".
for u in systemd-remount-fs.service systemd-firstboot.service; do
  ln -sf /dev/null "$ROOTFS/etc/systemd/system/$u"
done
# A non-root operator account for the "SSH user with become" case; its key is mounted
# at run time (tools/fleet), and sudo needs no password (as with an AWX machine credential
# without a become password).
chroot "$ROOTFS" useradd -m -s /bin/bash -U ops
echo 'ops ALL=(ALL) NOPASSWD: ALL' > "$ROOTFS/etc/sudoers.d/ops"
chmod 0440 "$ROOTFS/etc/sudoers.d/ops"
chroot "$ROOTFS" install -d -m 0700 -o ops -g ops /home/ops/.ssh
apt_clean() { rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*; }
apt_clean

tar -C "$ROOTFS" -c . | podman import \
  --change 'CMD ["/sbin/init"]' \
  --change "LABEL $LABEL=$SELF_HASH" \
  - "$IMAGE" >/dev/null
echo "build-image: built $IMAGE in $(( $(date +%s) - start )) s"
