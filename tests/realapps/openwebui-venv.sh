#!/usr/bin/env bash
# Build (once) a cached virtual environment holding the real Open WebUI server, for tests.
#
#   bash tests/realapps/openwebui-venv.sh          # builds if needed; prints the venv's python path
#   bash tests/realapps/openwebui-venv.sh --check  # never builds: prints the path and exits 0 when
#                                                  # the venv is built and current, else exits 1
#
# The venv lives at ${MMSTACK_APP_CACHE:-/var/cache/mmstack-apps}/openwebui-<version>. It is
# rebuilt when its stamp (version, Python version, sha256 of this script) differs; the build goes
# into a temporary directory beside it and is renamed into place, under a flock, so a half-built
# venv is never seen and concurrent callers wait for one build. Progress goes to stderr.
#
# What goes in is Open WebUI's slim set. The wheel's own Requires-Dist pulls torch,
# sentence-transformers and the like (several GB, with CUDA); the wheel also ships
# requirements-slim.txt, exact pins for a server that leaves AI to external services ("No
# Playwright, Azure/GCS storage SDKs, or other database clients"): SQLite/PostgreSQL app data,
# the OpenAI-compatible client, auth. So the wheel is downloaded, its requirements-slim.txt
# installed, then the wheel itself with --no-deps. It is to be run with USE_SLIM_DOCKER=true,
# Open WebUI's switch for that set (no torch device probe; VECTOR_DB defaults to pgvector, as
# chromadb is not in it). The stack's image (ghcr.io/open-webui/open-webui:v0.12.4) is the full
# one; the auth, user and OpenAI-connection code the tests exercise is the same in both.
# Cold build: ~2.5 min (a 106 MB wheel plus ~150 pinned packages); the venv is ~770 MB.
# Warm (stamp matches): instant.
set -euo pipefail

OPENWEBUI_VERSION=0.12.4
PYTHON=${MMSTACK_APP_PYTHON:-python3.11}
CACHE=${MMSTACK_APP_CACHE:-/var/cache/mmstack-apps}
DEST="$CACHE/openwebui-$OPENWEBUI_VERSION"
STAMP_FILE=.mmstack-stamp
SPEC="open-webui==$OPENWEBUI_VERSION"

log() { echo "[openwebui-venv] $*" >&2; }

script_hash=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-64)
want="$SPEC slim $("$PYTHON" -c 'import sys; print(sys.version.split()[0])') $script_hash"

up_to_date() {
  [ -x "$DEST/bin/python" ] && [ -x "$DEST/bin/open-webui" ] &&
    [ "$(cat "$DEST/$STAMP_FILE" 2>/dev/null)" = "$want" ]
}

if up_to_date; then
  echo "$DEST/bin/python"
  exit 0
fi
[ "${1:-}" = --check ] && exit 1

mkdir -p "$CACHE"
exec 9>"$CACHE/.openwebui-$OPENWEBUI_VERSION.lock"
flock 9

if ! up_to_date; then            # someone else may have built it while we waited
  t=$SECONDS
  tmp=$(mktemp -d "$CACHE/.openwebui-$OPENWEBUI_VERSION.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  log "building $DEST with $PYTHON ($SPEC, slim requirements)"
  "$PYTHON" -m venv "$tmp/venv" >&2
  pip=("$tmp/venv/bin/python" -m pip --disable-pip-version-check --no-input)
  # -q hides the per-package lines; pip's warnings about this machine's unused local indexes stay.
  "${pip[@]}" install -q --upgrade pip >&2
  "${pip[@]}" download -q --no-deps --dest "$tmp/dl" "$SPEC" >&2
  wheel=("$tmp/dl"/open_webui-"$OPENWEBUI_VERSION"-*.whl)
  [ -f "${wheel[0]}" ] || { log "pip download brought no open_webui $OPENWEBUI_VERSION wheel"; exit 1; }
  "$tmp/venv/bin/python" - "${wheel[0]}" "$tmp/requirements-slim.txt" <<'EOF' ||
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("requirements-slim.txt"))
EOF
    { log "the wheel has no requirements-slim.txt"; exit 1; }
  # --no-compile: bytecode compiled here would name the temporary path; it is compiled at $DEST.
  "${pip[@]}" install -q --no-compile -r "$tmp/requirements-slim.txt" >&2
  "${pip[@]}" install -q --no-compile --no-deps "${wheel[0]}" >&2
  # Importing open_webui.main loads its config, runs its database migrations and copies its
  # static assets: as `open-webui serve` does it (FROM_INIT_PY=true: the wheel's layout), with
  # a throwaway data and static folder, off the network (OFFLINE_MODE, as the tests run it).
  mkdir "$tmp/smoke"
  (cd "$tmp/smoke" && env -i PATH="$tmp/venv/bin:/usr/bin:/bin" HOME="$tmp/smoke" LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 FROM_INIT_PY=true DATA_DIR="$tmp/smoke/data" \
    STATIC_DIR="$tmp/smoke/static" WEBUI_SECRET_KEY=smoke-test \
    USE_SLIM_DOCKER=true OFFLINE_MODE=true HF_HUB_OFFLINE=1 ENABLE_OLLAMA_API=false \
    "$tmp/venv/bin/python" -c 'import open_webui.main' >"$tmp/smoke.log" 2>&1) ||
    { tail -n 40 "$tmp/smoke.log" >&2; log "open_webui.main does not import"; exit 1; }
  rm -rf "$tmp/smoke" "$tmp/smoke.log" "$tmp/dl"
  # The venv was made under the temporary name: point its scripts' shebangs, activate scripts and
  # pyvenv.cfg at $DEST, where it is about to live.
  grep -rlI --null -F -- "$tmp/venv" "$tmp/venv/bin" "$tmp/venv/pyvenv.cfg" |
    xargs -0 -r sed -i "s#$tmp/venv#$DEST#g"
  echo "$want" > "$tmp/venv/$STAMP_FILE"
  rm -rf "$DEST.old"
  if [ -e "$DEST" ]; then mv "$DEST" "$DEST.old"; fi
  mv "$tmp/venv" "$DEST"
  rm -rf "$DEST.old" "$tmp"
  trap - EXIT
  "$DEST/bin/python" -m compileall -q -j 0 "$DEST/lib" >/dev/null 2>&1 || true
  log "built in $((SECONDS - t))s, $(du -sh "$DEST" | cut -f1)"
fi
echo "$DEST/bin/python"
