#!/bin/sh
# Entrypoint of mmstack-test/standin:1, a stand-in for any HTTP service of the stack.
#
#   STANDIN_PORTS="8000 8001"   serve HTTP on each port (busybox httpd): GET /health and GET /
#                               answer 200 "ok" (any other path is a 404)
#   STANDIN_HEALTH_DELAY=N      /health appears only N seconds after the start (default 0)
#   STANDIN_UNHEALTHY=1         /health is never served (the healthcheck keeps failing)
#   STANDIN_EXIT_CODE=N         exit with N after STANDIN_EXIT_AFTER seconds (default: never)
#
# Arguments (the command of the service it replaces) are logged and ignored; use --entrypoint
# to run something else in this image (busybox applets: sh, wget, nc, sleep, cat, ...).
# SIGTERM/SIGINT stop it at once.
set -eu

[ $# -eq 0 ] || echo "standin: ignoring arguments: $*"
root=/tmp/standin-www
mkdir -p "$root"
echo ok > "$root/index.html"

pids=""
stop() {
  # shellcheck disable=SC2086
  [ -z "$pids" ] || kill $pids 2>/dev/null || true
  exit 0
}
trap stop TERM INT

for port in ${STANDIN_PORTS:-}; do
  httpd -f -p "$port" -h "$root" &
  pids="$pids $!"
  echo "standin: serving http on port $port"
done

if [ "${STANDIN_UNHEALTHY:-0}" != 1 ]; then
  if [ "${STANDIN_HEALTH_DELAY:-0}" = 0 ]; then
    echo ok > "$root/health"
  else
    (sleep "$STANDIN_HEALTH_DELAY"; echo ok > "$root/health") &
    pids="$pids $!"
  fi
fi

if [ -n "${STANDIN_EXIT_AFTER:-}" ]; then
  sleep "$STANDIN_EXIT_AFTER" &
  wait $! || true
  # shellcheck disable=SC2086
  [ -z "$pids" ] || kill $pids 2>/dev/null || true
  exit "${STANDIN_EXIT_CODE:-0}"
fi

# Stay alive; `wait` returns as soon as a trapped signal arrives.
while :; do
  sleep 3600 &
  wait $! || true
done
