#!/usr/bin/env bash
# Make sure a Docker engine answers on /var/run/docker.sock; start dockerd in the background when
# none does. Idempotent: an engine that already answers is left alone.
#
#   .ci/start-dockerd.sh            (root)
#
# The first configuration tried is dockerd's default one (overlay2 storage, iptables through
# iptables-nft, the docker0 bridge), which is what works on the CI machines. If that engine does
# not come up, or cannot run a container, it is stopped and the fallback is tried: vfs storage,
# no iptables rules (published ports still work through docker-proxy; containers cannot reach
# beyond the host, which the tests never need). MMSTACK_DOCKERD_ARGS replaces both with exactly
# the flags given.
#
# Log: $MMSTACK_DOCKERD_LOG (default /var/log/mmstack-dockerd.log).
set -euo pipefail

LOG=${MMSTACK_DOCKERD_LOG:-/var/log/mmstack-dockerd.log}
PIDFILE=${MMSTACK_DOCKERD_PIDFILE:-/var/run/docker.pid}
WAIT_S=${MMSTACK_DOCKERD_WAIT_S:-90}
DOCKERD=$(command -v dockerd || echo /usr/sbin/dockerd)

say() { echo "[dockerd] $*" >&2; }

engine_up() { timeout 10 docker info >/dev/null 2>&1; }

if engine_up; then
  say "engine already running ($(docker info --format '{{.ServerVersion}}, storage {{.Driver}}'))"
  exit 0
fi

[ "$(id -u)" = 0 ] || { say "error: starting dockerd needs root"; exit 1; }
[ -x "$DOCKERD" ] || { say "error: dockerd not found (apt-get install docker.io)"; exit 1; }
command -v docker >/dev/null || { say "error: the docker CLI is missing (apt-get install docker.io)"; exit 1; }

# A dockerd that is starting already (e.g. launched by docker.io's init script when the package
# was installed; live pid file, or a dockerd process): wait for it instead of racing it.
running=""
if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  running=$(cat "$PIDFILE")
elif [ -z "${MMSTACK_DOCKERD_ARGS:-}" ] && command -v pgrep >/dev/null; then
  running=$(pgrep -x dockerd | head -n 1 || true)
fi
if [ -n "$running" ]; then
  say "dockerd (pid $running) is running but not answering yet; waiting up to ${WAIT_S}s"
  for _ in $(seq 1 "$WAIT_S"); do engine_up && exit 0; sleep 1; done
  say "error: dockerd pid $running never answered (its log: $LOG or /var/log/docker.log)"
  exit 1
fi
rm -f "$PIDFILE"

# Debian's docker.io starts its own containerd; cgroup v1 hierarchies must be mounted, which
# they are on the CI machines (a tmpfs /sys/fs/cgroup with one mount per controller).

start() {  # ARGS... ; returns 0 when the engine answers and runs a container
  : >>"$LOG"
  say "starting $DOCKERD $* (log: $LOG)"
  echo "==== $(date -u +%FT%TZ) $DOCKERD $*" >>"$LOG"
  setsid nohup "$DOCKERD" "$@" >>"$LOG" 2>&1 </dev/null &
  local pid=$! i
  for i in $(seq 1 "$WAIT_S"); do
    if ! kill -0 "$pid" 2>/dev/null; then
      say "dockerd exited during start-up; last lines of $LOG:"
      grep -v "module=grpc" "$LOG" | tail -n 15 >&2
      return 1
    fi
    if engine_up; then
      say "engine up after ${i}s: $(docker info --format '{{.ServerVersion}}, storage {{.Driver}}, cgroup {{.CgroupDriver}} v{{.CgroupVersion}}')"
      if smoke_test; then return 0; fi
      say "the engine cannot run a container with these flags"
      stop "$pid"
      return 1
    fi
    sleep 1
  done
  say "dockerd did not answer within ${WAIT_S}s; last lines of $LOG:"
  grep -v "module=grpc" "$LOG" | tail -n 15 >&2
  stop "$pid"
  return 1
}

stop() {
  kill "$1" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.5; done
  kill -9 "$1" 2>/dev/null || true
  rm -f "$PIDFILE"
}

# A throw-away image of the host's static busybox: can a container start, with a network?
smoke_test() {
  local bb=/bin/busybox dir ok=0
  [ -x "$bb" ] || { say "no $bb to smoke-test with (busybox-static); skipping the run check"; return 0; }
  dir=$(mktemp -d)
  mkdir -p "$dir/bin" && cp "$bb" "$dir/bin/busybox" && ln -s busybox "$dir/bin/sh"
  if tar -C "$dir" -c . | docker import - mmstack-ci/smoke:1 >/dev/null &&
     timeout 60 docker run --rm mmstack-ci/smoke:1 /bin/busybox true; then
    ok=1
  fi
  docker rmi mmstack-ci/smoke:1 >/dev/null 2>&1 || true
  rm -rf "$dir"
  [ "$ok" = 1 ]
}

if [ -n "${MMSTACK_DOCKERD_ARGS:-}" ]; then
  # shellcheck disable=SC2086
  start $MMSTACK_DOCKERD_ARGS && exit 0
else
  start && exit 0
  say "falling back to vfs storage without iptables"
  start --storage-driver=vfs --iptables=false --ip-masq=false && exit 0
fi

say "error: the Docker engine never came up; see $LOG (kernel: $(uname -r))"
exit 1
