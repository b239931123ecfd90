#!/usr/bin/env bash
# Make the Debian rootfs shared by the postgres and redis test images:
#   debian-rootfs.sh TARGET_DIR MIRROR
# debootstrap --variant=minbase trixie, then Debian's postgresql and redis-server installed
# inside it with apt (no service is started: policy-rc.d refuses, and the postgresql package is
# told not to create its "main" cluster; the image entrypoints run initdb themselves).
# The content hash of the base image covers this file: edit it and the base is rebuilt.
set -euo pipefail

SUITE=trixie
PACKAGES=(postgresql redis-server)

target=$1
mirror=$2

mounted=""
cleanup() {
  if [ -n "$mounted" ]; then umount "$target/proc" 2>/dev/null || umount -l "$target/proc" || true; fi
}
trap cleanup EXIT

debootstrap --variant=minbase "$SUITE" "$target" "$mirror"

# No daemon may start inside the chroot.
printf '#!/bin/sh\nexit 101\n' > "$target/usr/sbin/policy-rc.d"
chmod 0755 "$target/usr/sbin/policy-rc.d"
mkdir -p "$target/etc/postgresql-common"
echo "create_main_cluster = false" > "$target/etc/postgresql-common/createcluster.conf"
# Documentation and translations are not needed in a test image.
cat > "$target/etc/dpkg/dpkg.cfg.d/01-mmstack-nodoc" <<'CFG'
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
CFG
cp -L /etc/resolv.conf "$target/etc/resolv.conf"

mount -t proc proc "$target/proc"
mounted=1
chroot "$target" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  apt-get -q -o Acquire::Retries=3 update
chroot "$target" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  apt-get -q -y -o Acquire::Retries=3 install --no-install-recommends "${PACKAGES[@]}"
chroot "$target" apt-get clean
umount "$target/proc"
mounted=""

rm -rf "$target"/var/lib/apt/lists/* "$target"/var/cache/apt/*.bin "$target"/var/log/apt/* \
       "$target"/usr/share/doc/* "$target"/usr/share/man/* "$target"/tmp/* \
       "$target"/var/lib/postgresql/* "$target"/var/log/postgresql/* "$target"/var/log/redis/*
: > "$target/etc/resolv.conf"       # docker provides its own
printf 'mmstack-test\n' > "$target/etc/hostname"
