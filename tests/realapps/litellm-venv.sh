#!/usr/bin/env bash
# Build (once) a cached virtual environment holding the real LiteLLM proxy, for tests/realapps.
#
#   bash tests/realapps/litellm-venv.sh          # builds if needed; prints the venv's python path
#   bash tests/realapps/litellm-venv.sh --check  # never builds: prints the path and exits 0 when
#                                                # the venv is built and current, else exits 1
#
# The venv lives at ${MMSTACK_APP_CACHE:-/var/cache/mmstack-apps}/litellm-<version>. It is rebuilt
# when its stamp (version, extras, Python version, sha256 of this script) differs; the build goes
# into a temporary directory beside it and is renamed into place, under a flock, so a half-built
# venv is never seen and concurrent callers wait for one build. Progress goes to stderr.
#
# What goes in mirrors the official image (ghcr.io/berriai/litellm), which installs LiteLLM with
# the proxy, proxy-runtime and extra_proxy extras (plus semantic-router, left out here: it only
# serves the auto-router) and starts `litellm --port 4000`. extra_proxy brings the `prisma`
# package, without which the proxy answers a request lacking a valid Bearer header with a 500
# instead of an auth error; proxy-runtime brings prometheus_client for /metrics.
set -euo pipefail

# Never 1.107.0: that release was compromised. 1.110.x is the newest release, but its `proxy`
# extra pins distributions PyPI does not serve (litellm-proxy==1.110.x at all,
# litellm-proxy-extras==0.4.114.post1, litellm-enterprise==0.1.83.post1), and 1.108.8-1.109.3 pin
# litellm-proxy-extras/litellm-enterprise releases that are missing likewise, so
# `pip install 'litellm[proxy]==X'` cannot resolve for them. 1.108.7 is the newest release whose
# `proxy` extra installs as published.
LITELLM_VERSION=1.108.7
LITELLM_EXTRAS=proxy,proxy-runtime,extra_proxy
PYTHON=${MMSTACK_APP_PYTHON:-python3.11}
CACHE=${MMSTACK_APP_CACHE:-/var/cache/mmstack-apps}
DEST="$CACHE/litellm-$LITELLM_VERSION"
STAMP_FILE=.mmstack-stamp
SPEC="litellm[$LITELLM_EXTRAS]==$LITELLM_VERSION"

log() { echo "[litellm-venv] $*" >&2; }

script_hash=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-64)
want="$SPEC $("$PYTHON" -c 'import sys; print(sys.version.split()[0])') $script_hash"

up_to_date() {
  [ -x "$DEST/bin/python" ] && [ -x "$DEST/bin/litellm" ] &&
    [ "$(cat "$DEST/$STAMP_FILE" 2>/dev/null)" = "$want" ]
}

if up_to_date; then
  echo "$DEST/bin/python"
  exit 0
fi
[ "${1:-}" = --check ] && exit 1

mkdir -p "$CACHE"
exec 9>"$CACHE/.litellm-$LITELLM_VERSION.lock"
flock 9

if ! up_to_date; then            # someone else may have built it while we waited
  t=$SECONDS
  tmp=$(mktemp -d "$CACHE/.litellm-$LITELLM_VERSION.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  log "building $DEST with $PYTHON ($SPEC)"
  "$PYTHON" -m venv "$tmp/venv" >&2
  pip=("$tmp/venv/bin/python" -m pip --disable-pip-version-check --no-input)
  # -q hides the per-package lines; pip's warnings about this machine's unused local indexes stay.
  "${pip[@]}" install -q --upgrade pip >&2
  # --no-compile: bytecode compiled here would name the temporary path; it is compiled at $DEST.
  "${pip[@]}" install -q --no-compile "$SPEC" >&2
  # The LITELLM_LOCAL_* switches keep the import from fetching LiteLLM's model cost map (and the
  # like) from GitHub; no bytecode is written from the temporary path.
  env PYTHONDONTWRITEBYTECODE=1 LITELLM_LOCAL_MODEL_COST_MAP=True \
    LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS=True LITELLM_LOCAL_BLOG_POSTS=True \
    LITELLM_LOCAL_AUTOROUTER_PRESETS=True LITELLM_LOCAL_POLICY_TEMPLATES=True \
    "$tmp/venv/bin/python" -c 'import litellm.proxy.proxy_server, prisma, prometheus_client' >&2 ||
    { log "the proxy does not import"; exit 1; }
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
