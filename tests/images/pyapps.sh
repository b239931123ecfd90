#!/usr/bin/env bash
# Build mmstack-test/pyapps:1 once; reuse it while its inputs are unchanged.
#
#   tests/images/pyapps.sh [--force]      (after tests/images/build.sh and tests/realapps/*-venv.sh)
#
# Prints `pyapps=REF` on stdout. mmstack-test/pyapps-base:1 is mmstack-test/trixie-base:1 plus the
# cached Python the app venvs were made with and the real LiteLLM 1.108.7 and Open WebUI 0.12.4
# venvs (at the same absolute paths, so their interpreters resolve); mmstack-test/pyapps:1 adds
# busybox (for the healthchecks' wget), the stand-ins in pyapps/standins/ and the entrypoint (see
# pyapps/entrypoint.sh). Label org.mmstack.test-image.hash is the sha256 of each one's inputs; an
# image whose label matches is not rebuilt, so a stand-in edit rebuilds only the small top.
set -euo pipefail
REF=mmstack-test/pyapps:1
APPS_REF=mmstack-test/pyapps-base:1
NAME=pyapps
. "$(dirname "${BASH_SOURCE[0]}")/layered.sh"

litellm=$(bash "$REPO/tests/realapps/litellm-venv.sh" --check) || die "build the LiteLLM venv first (tests/realapps/litellm-venv.sh)"
openwebui=$(bash "$REPO/tests/realapps/openwebui-venv.sh" --check) || die "build the Open WebUI venv first (tests/realapps/openwebui-venv.sh)"
litellm=$(dirname "$(dirname "$litellm")"); openwebui=$(dirname "$(dirname "$openwebui")")
python_home=$(dirname "$(dirname "$(readlink -f "$litellm/bin/python")")")
[ "$python_home" = "$(dirname "$(dirname "$(readlink -f "$openwebui/bin/python")")")" ] ||
  die "the LiteLLM and Open WebUI venvs were made with different Pythons"

layered_start "$@"

# 1. The big, rarely changing part: Python and the app venvs (a few minutes, once per venv build).
base_hash=$( { "$DOCKER" image inspect --format '{{.Id}}' "$BASE_REF";
               cat "$litellm/.mmstack-stamp" "$openwebui/.mmstack-stamp" 2>/dev/null; echo "$python_home $litellm $openwebui"; } |
             sha256sum | cut -c1-64)
if [ "$FORCE" = 0 ] && [ "$(label_of "$APPS_REF")" = "$base_hash" ]; then
  log "$APPS_REF is up to date"
else
  mkdir -p "$work/apps"
  cat > "$work/apps/Dockerfile" <<DOCKERFILE
FROM $BASE_REF
COPY ${python_home#/} $python_home
COPY ${litellm#/} $litellm
COPY ${openwebui#/} $openwebui
LABEL $LABEL=$base_hash
DOCKERFILE
  log "building $APPS_REF (copies the app venvs: a few minutes the first time)"
  tar -C "$work/apps" -cf - Dockerfile -C / "${python_home#/}" "${litellm#/}" "${openwebui#/}" |
    DOCKER_BUILDKIT=0 "$DOCKER" build -q -t "$APPS_REF" - >/dev/null
fi

# 2. The entrypoint and the stand-ins on top (seconds).
hash=$( { echo "$base_hash"; "$DOCKER" image inspect --format '{{.Id}}' "$STANDIN_REF";
          cat "$HERE/pyapps/entrypoint.sh" "$0" "$HERE/layered.sh" "$REPO/tests/support/openai_standin.py" "$HERE"/pyapps/standins/*.py; } |
        sha256sum | cut -c1-64)
if [ "$FORCE" = 0 ] && [ "$(label_of "$REF")" = "$hash" ]; then
  log "$REF is up to date"; echo "pyapps=$REF"; exit 0
fi
mkdir -p "$work/ctx/standins"
sed -e "s|@LITELLM@|$litellm|g" -e "s|@OPENWEBUI@|$openwebui|g" "$HERE/pyapps/entrypoint.sh" > "$work/ctx/entrypoint.sh"
cp "$HERE"/pyapps/standins/*.py "$REPO/tests/support/openai_standin.py" "$work/ctx/standins/"
cat > "$work/ctx/Dockerfile" <<DOCKERFILE
FROM $STANDIN_REF AS busybox
FROM $APPS_REF
COPY --from=busybox /bin/busybox /bin/busybox
RUN ln -sf /bin/busybox /usr/local/bin/wget
COPY standins /opt/standins
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["/bin/sh", "/usr/local/bin/docker-entrypoint.sh"]
LABEL $LABEL=$hash
DOCKERFILE
tar -C "$work/ctx" -cf - Dockerfile entrypoint.sh standins | DOCKER_BUILDKIT=0 "$DOCKER" build -q -t "$REF" - >/dev/null
log "$REF built"
echo "pyapps=$REF"
