#!/bin/bash
# Entrypoint of mmstack-test/postgres:17: the environment contract of the official postgres image,
# for Debian's PostgreSQL 17.
#
#   POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE)  superuser password; required unless
#                                                  POSTGRES_HOST_AUTH_METHOD=trust
#   POSTGRES_USER (or _FILE)                       superuser name, default "postgres"
#   POSTGRES_DB (or _FILE)                         database created at init, default POSTGRES_USER
#   POSTGRES_INITDB_ARGS                           extra initdb arguments
#   POSTGRES_HOST_AUTH_METHOD                      TCP auth method, default scram-sha-256
#   PGDATA                                         default /var/lib/postgresql/data (the volume)
#   /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz run once, on a fresh data directory
#
# Differences from the official image, on purpose:
#   - every TCP connection (loopback included) must authenticate; the Unix socket is trusted;
#   - while initialising, the temporary server listens on a private socket directory, so
#     `pg_isready` (the healthcheck) only succeeds once the real server is up;
#   - SIGTERM from `docker stop` is turned into a fast shutdown (SIGINT), since `docker import`
#     cannot set STOPSIGNAL.
set -Eeuo pipefail

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"

# file_env VAR [DEFAULT]: VAR from $VAR or the file named by $VAR_FILE.
file_env() {
  local var=$1 file_var="${1}_FILE" def=${2:-}
  if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
    echo "error: both $var and $file_var are set (but are exclusive)" >&2
    exit 1
  fi
  local val=$def
  if [ -n "${!var:-}" ]; then
    val=${!var}
  elif [ -n "${!file_var:-}" ]; then
    val=$(<"${!file_var}")
  fi
  export "$var"="$val"
  unset "$file_var"
}

if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi

# Anything but the server (and the server asked only for its version or help) runs as is.
if [ "$1" != postgres ]; then
  exec "$@"
fi
for arg in "${@:2}"; do
  case "$arg" in -'?'|--help|--describe-config|-V|--version|-C) exec "$@" ;; esac
done

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres /var/run/postgresql
  chmod 3777 /var/run/postgresql
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  chmod 0700 "$PGDATA" || :
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

file_env POSTGRES_USER postgres
file_env POSTGRES_PASSWORD
file_env POSTGRES_DB "$POSTGRES_USER"
POSTGRES_HOST_AUTH_METHOD=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}

init_database() {
  if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    cat >&2 <<'MSG'
error: database is uninitialized and superuser password is not specified.
       Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) to a non-empty value,
       or POSTGRES_HOST_AUTH_METHOD=trust to allow all connections without a password.
MSG
    exit 1
  fi
  echo "initialising database cluster in $PGDATA"
  local pwfile
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words
  initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
         --auth-host="$POSTGRES_HOST_AUTH_METHOD" --encoding=UTF8 --locale=C.UTF-8 \
         ${POSTGRES_INITDB_ARGS:-} >/dev/null
  rm -f "$pwfile"

  {
    echo
    echo "listen_addresses = '*'"
    echo "password_encryption = '$([ "$POSTGRES_HOST_AUTH_METHOD" = md5 ] && echo md5 || echo scram-sha-256)'"
  } >> "$PGDATA/postgresql.conf"
  {
    echo
    echo "# mmstack-test: every TCP client authenticates"
    echo "host all all all $POSTGRES_HOST_AUTH_METHOD"
  } >> "$PGDATA/pg_hba.conf"

  # Temporary server: no TCP, and a private socket so health checks do not pass yet.
  local sockdir
  sockdir=$(mktemp -d)
  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -c unix_socket_directories='$sockdir'" start >/dev/null
  export PGHOST=$sockdir PGPORT=5432
  local psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  if [ "$POSTGRES_DB" != postgres ]; then
    "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";' >/dev/null
  fi
  local f
  for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    case "$f" in
      *.sh) echo "running $f"; if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
      *.sql) echo "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" >/dev/null ;;
      *.sql.gz) echo "running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" >/dev/null ;;
      *) echo "ignoring $f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  unset PGHOST PGPORT
  rmdir "$sockdir" 2>/dev/null || :
  echo "database initialised: user=$POSTGRES_USER db=$POSTGRES_DB"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  init_database
fi
unset POSTGRES_PASSWORD

# Run the server as a child so that SIGTERM becomes a fast shutdown.
postgres "${@:2}" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null' TERM INT
trap 'kill -QUIT "$pid" 2>/dev/null' QUIT
status=0
while kill -0 "$pid" 2>/dev/null; do
  wait "$pid" && status=0 || status=$?
done
exit "$status"
