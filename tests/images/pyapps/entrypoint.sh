#!/bin/sh
# Entrypoint of mmstack-test/pyapps:1: the real LiteLLM proxy and Open WebUI from their cached
# venvs, and Python stand-ins that follow the real APIs of the services no registry here serves.
#
#   MMSTACK_APP=litellm    exec litellm "$@" (the official image's ENTRYPOINT is `litellm "$@"`;
#                          the schema's command is `--config /app/config.yaml --port 4000`).
#                          DATABASE_URL is dropped: outside the official image LiteLLM's database
#                          client fetches its Prisma engines from the internet.
#   MMSTACK_APP=openwebui  open-webui serve on 0.0.0.0:8080, data in /app/backend/data, as the
#                          official image's start.sh runs it (slim install, offline).
#   MMSTACK_APP=NAME       the stand-in /opt/standins/NAME.py with the service's own arguments
#                          (vllm, qdrant, s3, prometheus, grafana, elasticsearch).
set -eu
app=${MMSTACK_APP:?set MMSTACK_APP}
export LANG=C.UTF-8 PYTHONUNBUFFERED=1 HOME=${HOME:-/root}
case "$app" in
  litellm)
    export LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS=True \
      LITELLM_LOCAL_BLOG_POSTS=True LITELLM_LOCAL_AUTOROUTER_PRESETS=True LITELLM_LOCAL_POLICY_TEMPLATES=True
    unset DATABASE_URL
    cd /tmp
    exec @LITELLM@/bin/litellm "$@" ;;
  openwebui)
    mkdir -p /app/backend/data /tmp/webui-static
    export DATA_DIR=/app/backend/data STATIC_DIR=/tmp/webui-static USE_SLIM_DOCKER=true \
      OFFLINE_MODE=true HF_HUB_OFFLINE=1
    cd /tmp
    exec @OPENWEBUI@/bin/open-webui serve --host 0.0.0.0 --port 8080 ;;
  *)
    exec @LITELLM@/bin/python /opt/standins/"$app".py "$@" ;;
esac
