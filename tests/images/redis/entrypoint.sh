#!/bin/bash
# Entrypoint of mmstack-test/redis:7: Debian's redis-server with the environment contract
# mmstack's compose files use.
#
#   REDIS_PASSWORD (or REDIS_PASSWORD_FILE)  requirepass, when set; the password goes into a
#                                            config file readable by redis only, never on a
#                                            command line
#   /data                                    working directory (RDB snapshots), the volume
#
# `redis-server [ARGS...]` (the default command) or `--flag value ...` starts the server with
# the generated config first and ARGS after it; any other command is run as is. Health checks:
#   REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli ping
set -Eeuo pipefail

if [ -n "${REDIS_PASSWORD:-}" ] && [ -n "${REDIS_PASSWORD_FILE:-}" ]; then
  echo "error: both REDIS_PASSWORD and REDIS_PASSWORD_FILE are set (but are exclusive)" >&2
  exit 1
fi
if [ -n "${REDIS_PASSWORD_FILE:-}" ]; then
  REDIS_PASSWORD=$(<"$REDIS_PASSWORD_FILE")
fi

if [ "${1:0:1}" = '-' ] || [ "${1:-}" = "" ]; then
  set -- redis-server "$@"
fi
if [ "$1" != redis-server ]; then
  exec "$@"
fi
case "${2:-}" in -v|--version|-h|--help|--test-memory) exec "$@" ;; esac

conf_dir=/run/mmstack-redis
mkdir -p /data "$conf_dir"
conf=$conf_dir/redis.conf
{
  echo "bind * -::*"
  echo "protected-mode no"
  echo "port 6379"
  echo "dir /data"
  echo "daemonize no"
  echo "logfile \"\""
  if [ -n "${REDIS_PASSWORD:-}" ]; then
    # Quoted as redis expects: backslash and double quote escaped.
    esc=${REDIS_PASSWORD//\\/\\\\}
    esc=${esc//\"/\\\"}
    printf 'requirepass "%s"\n' "$esc"
  fi
} > "$conf"
chmod 0600 "$conf"
unset REDIS_PASSWORD REDIS_PASSWORD_FILE

if [ "$(id -u)" = 0 ]; then
  chown -R redis:redis "$conf_dir"
  find /data \! -user redis -exec chown redis:redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups redis-server "$conf" "${@:2}"
fi
exec redis-server "$conf" "${@:2}"
