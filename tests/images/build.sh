#!/usr/bin/env bash
# Build the local test images once per machine; reuse them while their build inputs are unchanged.
#
#   tests/images/build.sh [--force]      (root: debootstrap, chroot and docker)
#
# Prints one `name=ref` line per image on stdout (postgres, redis, standin, prometheus); progress goes to
# stderr. Every image carries the label org.mmstack.test-image.hash, the sha256 of its build
# inputs; an image whose label matches is not rebuilt. No registry is used: the Debian rootfs
# comes from debootstrap (the mirror of this machine's apt sources), the stand-in from the host's
# busybox-static, and both enter docker through `docker import`.
#
#   mmstack-test/trixie-base:1    debootstrap minbase trixie + postgresql + redis-server (the slow part)
#   mmstack-test/postgres:17      base + postgres/entrypoint.sh (PostgreSQL 17.x, as postgres:17.12-trixie)
#   mmstack-test/redis:8          base + redis/entrypoint.sh (redis-server 8.0.x, as redis:8.0.2)
#   mmstack-test/standin:1        /bin/busybox + applet links + standin/entrypoint.sh
#   mmstack-test/prometheus:1     base + Debian trixie's prometheus (2.53.x) and python3 (for the
#                                 OpenAI stand-in), installed with apt in a container
#   mmstack-test/curl:1           base + Debian's curl (bash and curl, as the Elasticsearch image
#                                 has them: the ELK healthcheck and one-shots run in it)
#
# Environment: MMSTACK_DEBIAN_MIRROR overrides the mirror; DOCKER (default: docker) the CLI.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LABEL=org.mmstack.test-image.hash
DOCKER=${DOCKER:-docker}
# The images follow the schema's pins: postgres:17.12-trixie and redis 8.0 are Debian trixie's
# postgresql-17 and redis-server. The mirror is looked up by this machine's own suite.
SUITE=trixie
MIRROR_SUITE=$(. /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-bookworm}")

BASE_REF=mmstack-test/trixie-base:1
POSTGRES_REF=mmstack-test/postgres:17
REDIS_REF=mmstack-test/redis:8
STANDIN_REF=mmstack-test/standin:1
PROMETHEUS_REF=mmstack-test/prometheus:1
CURL_REF=mmstack-test/curl:1

FORCE=0
[ "${1:-}" = --force ] && FORCE=1

log() { echo "[test-images] $*" >&2; }
die() { echo "[test-images] error: $*" >&2; exit 1; }

sha() { sha256sum | cut -c1-64; }

WORKDIRS=()
cleanup() {
  local d
  for d in "${WORKDIRS[@]}"; do
    # never follow a mount left behind by an interrupted chroot
    if grep -q " $d/" /proc/self/mounts 2>/dev/null; then umount -l "$d"/root/proc 2>/dev/null || true; fi
    rm -rf --one-file-system "$d"
  done
}
trap cleanup EXIT

# The Debian mirror apt uses here (deb822 .sources first, then one-line .list files).
debian_mirror() {
  if [ -n "${MMSTACK_DEBIAN_MIRROR:-}" ]; then echo "$MMSTACK_DEBIAN_MIRROR"; return; fi
  local found=""
  shopt -s nullglob
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    found=$(awk -v suite="$MIRROR_SUITE" '
      BEGIN { RS = ""; FS = "\n" }
      {
        types = ""; uris = ""; suites = ""
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^Types:/)  { types = substr($i, 7) }
          if ($i ~ /^URIs:/)   { uris = substr($i, 6) }
          if ($i ~ /^Suites:/) { suites = substr($i, 8) }
        }
        if ((" " types " ") ~ / deb / && (" " suites " ") ~ (" " suite " ")) {
          split(uris, u, " "); for (k in u) if (u[k] != "") { print u[k]; exit }
        }
      }' "$f")
    [ -n "$found" ] && break
  done
  if [ -z "$found" ]; then
    found=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      sed -E 's/\[[^]]*\]//' |
      awk -v suite="$MIRROR_SUITE" '$1 == "deb" && $3 == suite { print $2; exit }')
  fi
  shopt -u nullglob
  echo "${found:-http://deb.debian.org/debian}"
}

current_hash() {  # the label of an image, empty when absent
  "$DOCKER" image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true
}

up_to_date() {  # REF HASH
  [ "$FORCE" = 0 ] && [ "$(current_hash "$1")" = "$2" ]
}

changes_args() {  # turn lines of Dockerfile instructions into --change arguments
  local line
  CHANGES=()
  while IFS= read -r line; do
    [ -n "$line" ] && CHANGES+=(--change "$line")
  done <<<"$1"
}

# An image made from BASE: the entrypoint copied in, then committed with CHANGES_TEXT.
derive() {  # REF HASH BASE ENTRYPOINT_FILE CHANGES_TEXT
  local ref=$1 hash=$2 base=$3 entry=$4 changes=$5 name
  name=mmstack-test-build-$$-$RANDOM
  changes_args "$changes"
  "$DOCKER" create --name "$name" "$base" /bin/true >/dev/null
  if ! { "$DOCKER" cp "$entry" "$name:/usr/local/bin/docker-entrypoint.sh" &&
         "$DOCKER" commit "${CHANGES[@]}" --change "LABEL $LABEL=$hash" "$name" "$ref" >/dev/null; }; then
    "$DOCKER" rm -f "$name" >/dev/null 2>&1 || true
    die "could not build $ref"
  fi
  "$DOCKER" rm -f "$name" >/dev/null
}

build_base() {  # HASH
  local hash=$1 work mirror
  command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
  [ "$(id -u)" = 0 ] || die "building $BASE_REF needs root (debootstrap, chroot)"
  mirror=$(debian_mirror)
  work=$(mktemp -d "${TMPDIR:-/var/tmp}/mmstack-rootfs.XXXXXX")
  WORKDIRS+=("$work")
  log "debootstrap --variant=minbase $SUITE from $mirror, + postgresql redis-server (a few minutes)"
  if ! bash "$HERE/debian-rootfs.sh" "$work/root" "$mirror" >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log" >&2
    die "the Debian rootfs could not be built (full log above, last 40 lines)"
  fi
  log "importing $BASE_REF"
  tar -C "$work/root" --numeric-owner -c . |
    "$DOCKER" import --change "LABEL $LABEL=$hash" - "$BASE_REF" >/dev/null
}

build_standin() {  # HASH
  local hash=$1 work applet busybox=/bin/busybox
  dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' ||
    die "busybox-static is not installed (apt-get install busybox-static)"
  work=$(mktemp -d "${TMPDIR:-/var/tmp}/mmstack-standin.XXXXXX")
  WORKDIRS+=("$work")
  mkdir -p "$work/root/bin" "$work/root/tmp" "$work/root/etc" "$work/root/usr/local/bin"
  chmod 1777 "$work/root/tmp"
  cp "$busybox" "$work/root/bin/busybox"
  for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$work/root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$work/root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$work/root/etc/group"
  install -m 0755 "$HERE/standin/entrypoint.sh" "$work/root/usr/local/bin/docker-entrypoint.sh"
  changes_args "$STANDIN_CHANGES"
  tar -C "$work/root" --numeric-owner --owner=0 --group=0 -c . |
    "$DOCKER" import "${CHANGES[@]}" --change "LABEL $LABEL=$hash" - "$STANDIN_REF" >/dev/null
}

# Debian's prometheus and python3 on top of the base, installed by apt in a container on the host's
# network (the same mirror the base came from); no service starts (the base's policy-rc.d).
# The image then looks like prom/prometheus: user nobody, /prometheus, /bin/prometheus.
PROMETHEUS_INSTALL='set -e
apt-get -q -o Acquire::Retries=3 update
apt-get -q -y -o Acquire::Retries=3 install --no-install-recommends prometheus python3
apt-get clean
rm -rf /var/lib/apt/lists/* /var/log/apt/* /usr/share/doc/* /usr/share/man/*
mkdir -p /prometheus
chown nobody:nogroup /prometheus
: > /etc/resolv.conf'

build_prometheus() {  # HASH
  local hash=$1 name
  name=mmstack-test-build-$$-$RANDOM
  changes_args "$PROMETHEUS_CHANGES"
  if ! { "$DOCKER" run --name "$name" --network host --user root -e DEBIAN_FRONTEND=noninteractive \
           --entrypoint /bin/sh "$BASE_REF" -c "$PROMETHEUS_INSTALL" >&2 &&
         "$DOCKER" commit "${CHANGES[@]}" --change "LABEL $LABEL=$hash" "$name" "$PROMETHEUS_REF" >/dev/null; }; then
    "$DOCKER" rm -f "$name" >/dev/null 2>&1 || true
    die "could not build $PROMETHEUS_REF"
  fi
  "$DOCKER" rm -f "$name" >/dev/null
}

# Debian's curl installed with apt inside a container of the base image (the mirror is reached
# from the container, as debootstrap reached it from the host).
CURL_INSTALL='apt-get -q -o Acquire::Retries=3 update && DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Acquire::Retries=3 install --no-install-recommends curl ca-certificates && apt-get clean && rm -rf /var/lib/apt/lists/*'

build_curl() {  # HASH
  local hash=$1 name
  name=mmstack-test-build-$$-$RANDOM
  if ! "$DOCKER" run --name "$name" "$BASE_REF" bash -c "$CURL_INSTALL" >&2 ||
     ! "$DOCKER" commit --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
         --change 'CMD ["bash"]' --change "LABEL $LABEL=$hash" "$name" "$CURL_REF" >/dev/null; then
    "$DOCKER" rm -f "$name" >/dev/null 2>&1 || true
    die "could not build $CURL_REF"
  fi
  "$DOCKER" rm -f "$name" >/dev/null
}

PROMETHEUS_CHANGES='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENV LANG=C.UTF-8
USER nobody
WORKDIR /prometheus
VOLUME /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'

POSTGRES_CHANGES='ENV PATH=/usr/lib/postgresql/17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENV LANG=C.UTF-8
ENV PGDATA=/var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]'

REDIS_CHANGES='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENV LANG=C.UTF-8
VOLUME /data
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["redis-server"]'

STANDIN_CHANGES='ENV PATH=/usr/local/bin:/bin
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD []'

main() {
  command -v "$DOCKER" >/dev/null || die "the docker CLI ($DOCKER) is missing"
  "$DOCKER" info >/dev/null 2>&1 || die "the docker engine is not reachable (is dockerd running?)"

  # One build at a time per machine (tests, benchmarks and .ci/run may race).
  exec 9>"${TMPDIR:-/tmp}/mmstack-test-images.lock"
  flock 9

  local base_hash pg_hash redis_hash standin_hash prometheus_hash busybox_version curl_hash
  base_hash=$(cat "$HERE/debian-rootfs.sh" | sha)
  pg_hash=$( { echo "$base_hash"; cat "$HERE/postgres/entrypoint.sh"; echo "$POSTGRES_CHANGES"; } | sha)
  redis_hash=$( { echo "$base_hash"; cat "$HERE/redis/entrypoint.sh"; echo "$REDIS_CHANGES"; } | sha)
  prometheus_hash=$( { echo "$base_hash"; echo "$PROMETHEUS_INSTALL"; declare -f build_prometheus;
                      echo "$PROMETHEUS_CHANGES"; } | sha)
  curl_hash=$( { echo "$base_hash"; echo "$CURL_INSTALL"; declare -f build_curl; } | sha)
  busybox_version=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || true)
  standin_hash=$( { echo "busybox-static $busybox_version"; declare -f build_standin;
                    cat "$HERE/standin/entrypoint.sh"; echo "$STANDIN_CHANGES"; } | sha)

  local t0=$SECONDS
  if ! up_to_date "$POSTGRES_REF" "$pg_hash" || ! up_to_date "$REDIS_REF" "$redis_hash" ||
     ! up_to_date "$PROMETHEUS_REF" "$prometheus_hash" || ! up_to_date "$CURL_REF" "$curl_hash"; then
    if up_to_date "$BASE_REF" "$base_hash"; then
      log "$BASE_REF is up to date"
    else
      build_base "$base_hash"
      log "$BASE_REF built in $((SECONDS - t0))s"
    fi
  fi
  if up_to_date "$POSTGRES_REF" "$pg_hash"; then
    log "$POSTGRES_REF is up to date"
  else
    derive "$POSTGRES_REF" "$pg_hash" "$BASE_REF" "$HERE/postgres/entrypoint.sh" "$POSTGRES_CHANGES"
    log "$POSTGRES_REF built"
  fi
  if up_to_date "$REDIS_REF" "$redis_hash"; then
    log "$REDIS_REF is up to date"
  else
    derive "$REDIS_REF" "$redis_hash" "$BASE_REF" "$HERE/redis/entrypoint.sh" "$REDIS_CHANGES"
    log "$REDIS_REF built"
  fi
  if up_to_date "$CURL_REF" "$curl_hash"; then
    log "$CURL_REF is up to date"
  else
    build_curl "$curl_hash"
    log "$CURL_REF built"
  fi
  if up_to_date "$STANDIN_REF" "$standin_hash"; then
    log "$STANDIN_REF is up to date"
  else
    build_standin "$standin_hash"
    log "$STANDIN_REF built"
  fi
  if up_to_date "$PROMETHEUS_REF" "$prometheus_hash"; then
    log "$PROMETHEUS_REF is up to date"
  else
    build_prometheus "$prometheus_hash"
    log "$PROMETHEUS_REF built"
  fi
  # Images replaced by a rebuild are left dangling: remove ours.
  "$DOCKER" image prune -f --filter "label=$LABEL" >/dev/null 2>&1 || true
  log "done in $((SECONDS - t0))s"

  echo "postgres=$POSTGRES_REF"
  echo "redis=$REDIS_REF"
  echo "standin=$STANDIN_REF"
  echo "prometheus=$PROMETHEUS_REF"
  echo "curl=$CURL_REF"
}

main "$@"
