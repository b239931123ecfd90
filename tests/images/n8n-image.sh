#!/usr/bin/env bash
# Build mmstack-test/n8n:1 once; reuse it while its inputs are unchanged.
#
#   tests/images/n8n-image.sh [--force]   (after tests/images/build.sh and tests/realapps/n8n-app.sh)
#
# Prints `n8n=REF` on stdout. mmstack-test/n8n-app:1 is mmstack-test/trixie-base:1 plus the cached real n8n
# (node 24 and n8n from npm, at the same absolute path) and busybox (the healthcheck's wget, as in
# the official Alpine-based image); mmstack-test/n8n:1 on top follows the official image's contract: user node (uid
# 1000) with HOME=/home/node and its settings folder /home/node/.n8n (the stack's n8n-data
# volume), NODE_ENV=production, N8N_RELEASE_TYPE=stable, entrypoint `n8n` (which is `n8n start`),
# port 5678. Label org.mmstack.test-image.hash is the sha256 of each one's inputs; an image whose
# label matches is not rebuilt, so an edit of this script rebuilds only the small top.
set -euo pipefail
REF=mmstack-test/n8n:1
APP_REF=mmstack-test/n8n-app:1
NAME=n8n-image
. "$(dirname "${BASH_SOURCE[0]}")/layered.sh"

app=$(bash "$REPO/tests/realapps/n8n-app.sh" --check) || die "build n8n first (tests/realapps/n8n-app.sh)"
layered_start "$@"

# 1. The big, rarely changing part: the n8n install (274k files, about 3 GB; Docker's legacy
#    builder copies it in about 20 minutes on 2 busy cores), rebuilt only when the install is.
base_hash=$( { "$DOCKER" image inspect --format '{{.Id}}' "$BASE_REF" "$STANDIN_REF"; cat "$app/.mmstack-stamp";
               echo "$app"; } | sha256sum | cut -c1-64)
if [ "$FORCE" = 0 ] && [ "$(label_of "$APP_REF")" = "$base_hash" ]; then
  log "$APP_REF is up to date"
else
  mkdir -p "$work/app"
  cat > "$work/app/Dockerfile" <<DOCKERFILE
FROM $STANDIN_REF AS busybox
FROM $BASE_REF
COPY --from=busybox /bin/busybox /bin/busybox
RUN ln -sf /bin/busybox /usr/local/bin/wget && useradd --uid 1000 --create-home --shell /bin/sh node \\
 && mkdir -p /home/node/.n8n && chown node:node /home/node/.n8n
COPY ${app#/} $app
LABEL $LABEL=$base_hash
DOCKERFILE
  t=$SECONDS
  log "building $APP_REF (copies the n8n install: many minutes the first time)"
  tar -C "$work/app" -cf - Dockerfile -C / "${app#/}" | DOCKER_BUILDKIT=0 "$DOCKER" build -q -t "$APP_REF" - >/dev/null
  log "$APP_REF built in $((SECONDS - t))s"
fi

# 2. The image's contract on top (seconds).
hash=$( { echo "$base_hash"; cat "$0" "$HERE/layered.sh"; } | sha256sum | cut -c1-64)
if [ "$FORCE" = 0 ] && [ "$(label_of "$REF")" = "$hash" ]; then
  log "$REF is up to date"; echo "n8n=$REF"; exit 0
fi
mkdir -p "$work/top"
cat > "$work/top/Dockerfile" <<DOCKERFILE
FROM $APP_REF
USER root
# bin/n8n finds node and n8n relative to its own path: call it there, not through a link. node
# must be on PATH too: n8n spawns its JS task runner as `node` (the official image has
# /usr/local/bin/node).
RUN rm -f /usr/local/bin/n8n
ENV NODE_ENV=production N8N_RELEASE_TYPE=stable HOME=/home/node \\
    PATH=$app/node/bin:$app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER node
WORKDIR /home/node
EXPOSE 5678
ENTRYPOINT ["$app/bin/n8n"]
LABEL $LABEL=$hash
DOCKERFILE
tar -C "$work/top" -cf - Dockerfile | DOCKER_BUILDKIT=0 "$DOCKER" build -q -t "$REF" - >/dev/null
log "$REF built"
echo "n8n=$REF"
