"""The stack's logs: Docker's gelf driver -> Logstash -> Elasticsearch, seen in Kibana and Grafana.

Where an environment runs Logstash, every other service of it logs through Docker's ``gelf``
driver to Logstash's GELF input (UDP, published on the host's loopback: the Docker daemon, not
the container, sends the messages). Why gelf over UDP rather than a shipper or a TCP driver:

* Nothing extra runs: the daemon already reads every container's output; a shipper would need
  the host's ``/var/lib/docker/containers`` and the daemon socket mounted into a container.
* A stopped or restarting Logstash never stops the stack: UDP is fire-and-forget and the driver
  runs in ``non-blocking`` mode (a bounded buffer), whereas a TCP gelf or syslog driver makes a
  container fail to *start* while its log server is unreachable. What is sent while Logstash
  is down is lost from Elasticsearch, not from the host.
* ``docker logs``, ``inv logs`` and ``inv status``'s log tails keep working: since Docker 20.10
  the daemon keeps a local copy of every container's output whatever the driver ("dual logging").

Logstash itself keeps the json-file driver: shipping its own warnings to itself would turn one
rejected document into an endless stream of them.

Logstash's pipeline (``logstash-pipeline.conf``) and its Ruby filter (``logstash-filter.rb``, see
logfilter.py) set
``service.name``, ``service.environment`` and ``log.level`` (lower case) on every event, and mask
secrets before anything is stored: the shapes `tasks.security.patterns.LOG_MASKING_PATTERNS`
knows (tokens, URL passwords, ``password=...``), and every value of the secrets store, recognised
by its SHA-256 digest (``MMSTACK_SECRET_DIGESTS`` in Logstash's 0600 env file): Logstash never
holds the secrets themselves.

``elasticsearch-setup.sh`` (a one-shot before Kibana and Logstash start) sets ``kibana_system``'s
password, creates the Logstash writer and Grafana's read-only user with roles limited to the
log data streams, and the index template; ``kibana-setup.sh`` (a one-shot once Kibana is healthy)
creates the data view. Both pass every password to curl on its standard input.

Pure: nothing is read or written here. Imports stay light (the schema rules import this module).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .configfiles import RenderedConfig
    from .model import Environment, Stack

# The config files this module generates (the schema's config_files may name them).
SETUP_SCRIPT = "elasticsearch-setup.sh"
KIBANA_SETUP_SCRIPT = "kibana-setup.sh"
KIBANA_YML = "kibana.yml"
PIPELINE = "logstash-pipeline.conf"
RUBY_FILTER = "logstash-filter.rb"
GRAFANA_DATASOURCE = "grafana-datasource-elasticsearch.yaml"
CONFIG_FILES = (SETUP_SCRIPT, KIBANA_SETUP_SCRIPT, KIBANA_YML, PIPELINE, RUBY_FILTER, GRAFANA_DATASOURCE)

LOG_RECEIVER = "logstash"
GELF_PORT = 12201
ES_URL = "http://elasticsearch:9200"
KIBANA_URL = "http://kibana:5601"
RUBY_FILTER_TARGET = "/usr/share/logstash/mmstack/filter.rb"

WRITER_ROLE, WRITER_USER = "mmstack_logs_writer", "mmstack_logstash_writer"
READER_ROLE, READER_USER = "mmstack_logs_reader", "mmstack_grafana_reader"
DATASET = "mmstack"
INDEX_PATTERN = f"logs-{DATASET}-*"
INDEX_TEMPLATE = "mmstack-logs"
# Above the built-in `logs` template (logs-*-*, priority 100): Elasticsearch refuses two
# overlapping templates of the same priority.
TEMPLATE_PRIORITY = 200
DEFAULT_RETENTION = "14d"
SECRET_DIGESTS_VAR = "MMSTACK_SECRET_DIGESTS"
MASK = "********"

# The names each consumer accepts for the schema's settings.log_level (debug/info/warning/error).
# Logstash (log.level) and Kibana (logging.root.level) refuse anything but their own lower-case
# names; Elasticsearch's logger.level takes log4j's names.
_LEVEL_NAMES = {
    "logstash": {"debug": "debug", "info": "info", "warning": "warn", "error": "error"},
    "kibana": {"debug": "debug", "info": "info", "warning": "warn", "error": "error"},
    "elasticsearch": {"debug": "debug", "info": "info", "warning": "warn", "error": "error"},
}


def log_level_for(level: str, consumer: str) -> str:
    """``settings.log_level`` in the form ``consumer`` reads (a Jinja filter in the env templates)."""
    return _LEVEL_NAMES[consumer][str(level).lower()]


def secret_digests(secrets: dict[str, str]) -> str:
    """SHA-256 digests of the secret values (comma-separated), for the Logstash filter to mask."""
    values = {v for v in secrets.values() if v and v != MASK}
    return ",".join(sorted(hashlib.sha256(v.encode()).hexdigest() for v in values))


TEMPLATE_FILTERS = {"log_level_for": log_level_for, "secret_digests": secret_digests}


def namespace(env: str) -> str:
    """The data stream namespace of ``env`` (Elasticsearch allows no '-' there)."""
    return re.sub(r"[^a-z0-9_]", "_", env.lower())


def data_stream(env: str) -> str:
    return f"logs-{DATASET}-{namespace(env)}"


def data_view_id(env: str) -> str:
    return f"mmstack-logs-{env}"


# --------------------------------------------------------------------------------------------
# Compose: the logging driver of each service
# --------------------------------------------------------------------------------------------

def gelf_address(env: Environment, specs: dict[str, dict[str, Any]], offset: int) -> str | None:
    """Where the daemon sends GELF in ``env``: Logstash's published UDP port, or None."""
    if LOG_RECEIVER not in env.services:
        return None
    for port in specs[LOG_RECEIVER].get("ports") or []:
        if port.get("container") == GELF_PORT and port.get("protocol") == "udp" and port.get("host"):
            host_ip = port.get("host_ip") or env.settings.get("bind_address") or "127.0.0.1"
            if host_ip in ("0.0.0.0", "::"):
                host_ip = "127.0.0.1"
            return f"udp://{host_ip}:{port['host'] + offset}"
    return None


def log_shipping(env: Environment, specs: dict[str, dict[str, Any]], service: str,
                 offset: int) -> dict[str, Any] | None:
    """The compose ``logging:`` of ``service`` in ``env``: gelf to Logstash, or None (unchanged)."""
    if service == LOG_RECEIVER:
        return None
    address = gelf_address(env, specs, offset)
    if address is None:
        return None
    return {"driver": "gelf", "options": {
        "gelf-address": address,
        # The daemon adds these as _org.mmstack.service, _org.mmstack.stack and _MMSTACK_ENV.
        "labels": "org.mmstack.service,org.mmstack.stack",
        "env": "MMSTACK_ENV",
        # Never block a container on its log output: at worst, lines are dropped.
        "mode": "non-blocking",
        "max-buffer-size": "4m",
    }}


# --------------------------------------------------------------------------------------------
# Config files
# --------------------------------------------------------------------------------------------

def render_logging_configs(stack: Stack, env: str, wanted: set[str]) -> list[RenderedConfig]:
    from .configfiles import RenderedConfig
    from .generate import config_dir
    from .logfilter import ruby_filter

    settings = stack.environment(env).settings
    retention = str(settings.get("log_retention") or DEFAULT_RETENTION)
    level = str(settings.get("log_level") or "info")
    bodies = {
        SETUP_SCRIPT: (lambda: elasticsearch_setup_script(env, retention), 0o755),
        KIBANA_SETUP_SCRIPT: (lambda: kibana_setup_script(env), 0o755),
        KIBANA_YML: (lambda: kibana_yml(level), 0o644),
        PIPELINE: (lambda: logstash_pipeline(env), 0o644),
        RUBY_FILTER: (lambda: ruby_filter(MASK, SECRET_DIGESTS_VAR), 0o644),
        GRAFANA_DATASOURCE: (lambda: grafana_datasource(), 0o644),
    }
    return [RenderedConfig(f"{config_dir(env)}/{name}", make(), mode)
            for name, (make, mode) in bodies.items() if name in wanted]


def writer_role() -> dict[str, Any]:
    # monitor: the output reads the cluster's version and license at start. create_doc and
    # auto_configure: append to (and create) the log data streams; nothing may be read,
    # overwritten or deleted.
    return {"cluster": ["monitor"],
            "indices": [{"names": [INDEX_PATTERN], "privileges": ["create_doc", "auto_configure"]}],
            "metadata": {"managed_by": "mmstack"}}


def reader_role() -> dict[str, Any]:
    # Grafana's Elasticsearch datasource reads the version (monitor), mappings and documents.
    return {"cluster": ["monitor"],
            "indices": [{"names": [INDEX_PATTERN], "privileges": ["read", "view_index_metadata"]}],
            "metadata": {"managed_by": "mmstack"}}


def index_template(retention: str) -> dict[str, Any]:
    keyword = {"type": "keyword", "ignore_above": 1024}
    return {
        "index_patterns": [INDEX_PATTERN],
        "data_stream": {},
        "priority": TEMPLATE_PRIORITY,
        "template": {
            # One node: a replica could never be allocated and would keep the health yellow.
            "settings": {"index": {"number_of_replicas": 0}},
            "mappings": {
                "dynamic_templates": [{"strings_as_keyword": {
                    "match_mapping_type": "string", "mapping": keyword}}],
                "properties": {
                    "@timestamp": {"type": "date"},
                    "message": {"type": "match_only_text"},
                    "service": {"properties": {"name": {"type": "keyword"},
                                               "environment": {"type": "keyword"},
                                               "type": {"type": "keyword"}}},
                    "log": {"properties": {"level": {"type": "keyword"}}},
                    "container": {"properties": {"name": {"type": "keyword"}, "id": {"type": "keyword"},
                                                 "image": {"properties": {"name": {"type": "keyword"}}}}},
                    "host": {"properties": {"name": {"type": "keyword"}}},
                    "data_stream": {"properties": {"type": {"type": "constant_keyword"},
                                                   "dataset": {"type": "constant_keyword"},
                                                   "namespace": {"type": "constant_keyword"}}},
                },
            },
            "lifecycle": {"data_retention": retention},
        },
        "_meta": {"managed_by": "mmstack", "description": "the stack's container logs"},
    }


def _with_password(var: str, body: dict[str, Any]) -> str:
    """A shell word: ``body`` as JSON with ``"password"`` first, taken from ``$var`` when it runs."""
    rest = ("," if body else "") + json.dumps(body, separators=(",", ":"))[1:]
    return "'{\"password\":\"'\"$" + var + "\"'\"" + rest.replace("'", "'\\''") + "'"


def _user(role: str, full_name: str) -> dict[str, Any]:
    return {"roles": [role], "full_name": full_name, "metadata": {"managed_by": "mmstack"}}


def _sq(text: str) -> str:
    """A shell single-quoted word."""
    return "'" + text.replace("'", "'\\''") + "'"


_CURL_HELPERS = r'''
# curl reads the credentials from a 0600 file written by printf (a builtin) and each request
# body from its standard input: no password is ever an argument of a process.
auth=$(mktemp)
response=$(mktemp)
trap 'rm -f "$auth" "$response"' EXIT
printf 'user = "elastic:%s"\n' "$ELASTIC_PASSWORD" > "$auth"

# call NAME METHOD URL [BODY]: sets $code; the response body is in $response.
call() {
  local name=$1 method=$2 url=$3 body=${4-}
  code=$(printf '%s' "$body" | curl -sS -K "$auth" -X "$method" -H 'Content-Type: application/json' \
           -H 'kbn-xsrf: mmstack' --data-binary @- -o "$response" -w '%{http_code}' "$url") || code=000
}

# must NAME METHOD URL [BODY]: the call, which must succeed (2xx); says what it did.
must() {
  call "$@"
  case $code in
    2??) echo "$PROG: $1: ok" ;;
    *) echo "$PROG: $1: $2 ${3#"$BASE"} failed with HTTP $code: $(head -c 600 "$response")" >&2; exit 1 ;;
  esac
}

# wait_for URL: until it answers 200 with these credentials (about five minutes at most).
wait_for() {
  local i
  for i in $(seq 1 100); do
    call wait GET "$1"
    [ "$code" = 200 ] && return 0
    sleep 3
  done
  echo "$PROG: $1 did not answer 200 (last: HTTP $code)" >&2
  exit 1
}
'''


def elasticsearch_setup_script(env: str, retention: str) -> str:
    template = json.dumps(index_template(retention), separators=(",", ":"))
    return "\n".join([
        "#!/bin/bash",
        "# Generated by mmstack: Elasticsearch's users, roles and the log index template. Run by",
        "# the elasticsearch-setup one-shot at every start; every call converges, so it is safe",
        "# to run again (a rotated password is simply set anew).",
        "set -euo pipefail",
        "umask 077",
        "PROG=elasticsearch-setup",
        f'BASE=${{MMSTACK_ES_URL:-{ES_URL}}}',
        ': "${ELASTIC_PASSWORD:?is not set}" "${KIBANA_SYSTEM_PASSWORD:?is not set}"',
        ': "${LOGSTASH_WRITER_PASSWORD:?is not set}" "${GRAFANA_ES_READER_PASSWORD:?is not set}"',
        _CURL_HELPERS,
        'wait_for "$BASE/_security/_authenticate"',
        "",
        "# Kibana signs in as the built-in kibana_system user; only its password can be set.",
        'must "kibana_system password" POST "$BASE/_security/user/kibana_system/_password" '
        + _with_password("KIBANA_SYSTEM_PASSWORD", {}),
        f'must "role {WRITER_ROLE}" PUT "$BASE/_security/role/{WRITER_ROLE}" '
        f"{_sq(json.dumps(writer_role(), separators=(',', ':')))}",
        f'must "user {WRITER_USER}" PUT "$BASE/_security/user/{WRITER_USER}" '
        + _with_password("LOGSTASH_WRITER_PASSWORD", _user(WRITER_ROLE, "Logstash (mmstack)")),
        f'must "role {READER_ROLE}" PUT "$BASE/_security/role/{READER_ROLE}" '
        f"{_sq(json.dumps(reader_role(), separators=(',', ':')))}",
        f'must "user {READER_USER}" PUT "$BASE/_security/user/{READER_USER}" '
        + _with_password("GRAFANA_ES_READER_PASSWORD", _user(READER_ROLE, "Grafana (mmstack, read-only)")),
        f'must "index template {INDEX_TEMPLATE}" PUT "$BASE/_index_template/{INDEX_TEMPLATE}" {_sq(template)}',
        f'echo "$PROG: logs go to the data stream {data_stream(env)}"',
        "",
    ])


def kibana_setup_script(env: str) -> str:
    view_id = data_view_id(env)
    spec = {"title": INDEX_PATTERN, "name": f"mmstack logs ({env})", "timeFieldName": "@timestamp"}
    create = json.dumps({"data_view": {"id": view_id, **spec}}, separators=(",", ":"))
    update = json.dumps({"data_view": spec, "refresh_fields": True}, separators=(",", ":"))
    default = json.dumps({"data_view_id": view_id, "force": False}, separators=(",", ":"))
    return "\n".join([
        "#!/bin/bash",
        "# Generated by mmstack: the Kibana data view of the stack's logs. Run by the kibana-setup",
        "# one-shot at every start (once Kibana is healthy); safe to run again.",
        "set -euo pipefail",
        "umask 077",
        "PROG=kibana-setup",
        f'BASE=${{MMSTACK_KIBANA_URL:-{KIBANA_URL}}}',
        ': "${ELASTIC_PASSWORD:?is not set}"',
        _CURL_HELPERS,
        'wait_for "$BASE/api/status"',
        "",
        f'call "data view" GET "$BASE/api/data_views/data_view/{view_id}"',
        'case $code in',
        f'  200) must "data view {view_id}" POST "$BASE/api/data_views/data_view/{view_id}" {_sq(update)} ;;',
        f'  404) must "data view {view_id}" POST "$BASE/api/data_views/data_view" {_sq(create)} ;;',
        '  *) echo "$PROG: cannot read the data view: HTTP $code: $(head -c 600 "$response")" >&2; exit 1 ;;',
        'esac',
        "# The default data view, unless someone chose another (force: false).",
        f'must "default data view" POST "$BASE/api/data_views/default" {_sq(default)}',
        "",
    ])


def kibana_yml(level: str) -> str:
    # Kibana's image turns ELASTICSEARCH_PASSWORD & co. into --flags on its command line, where
    # `ps` shows them; this file names them as ${VAR} instead, which Kibana reads from its env.
    doc = {
        "server.host": "0.0.0.0",
        "server.shutdownTimeout": "5s",
        "elasticsearch.hosts": [ES_URL],
        "elasticsearch.username": "kibana_system",
        "elasticsearch.password": "${KIBANA_SYSTEM_PASSWORD}",
        "xpack.encryptedSavedObjects.encryptionKey": "${KIBANA_ENCRYPTION_KEY}",
        "monitoring.ui.container.elasticsearch.enabled": True,
        "telemetry.optIn": False,
        "logging.root.level": log_level_for(level, "kibana"),
    }
    import yaml

    return yaml.safe_dump(doc, sort_keys=False, width=100)


def logstash_pipeline(env: str) -> str:
    # Logstash substitutes ${VAR} from its environment when it loads the pipeline.
    return f'''# Generated by mmstack: the stack's container logs, from Docker's gelf driver to Elasticsearch.
input {{
  gelf {{
    id => "mmstack_gelf"
    host => "0.0.0.0"
    port => {GELF_PORT}
  }}
}}

filter {{
  # service.name, service.environment and log.level; secrets masked (see the file's comments).
  ruby {{
    id => "mmstack_fields_and_masking"
    path => "{RUBY_FILTER_TARGET}"
    script_params => {{ "environment" => "{env}" }}
  }}
}}

output {{
  elasticsearch {{
    id => "mmstack_elasticsearch"
    hosts => ["{ES_URL}"]
    user => "{WRITER_USER}"
    password => "${{LOGSTASH_WRITER_PASSWORD}}"
    data_stream => "true"
    data_stream_type => "logs"
    data_stream_dataset => "{DATASET}"
    data_stream_namespace => "{namespace(env)}"
  }}
}}
'''


def grafana_datasource() -> str:
    import yaml

    # Grafana replaces $VAR in provisioning files with its environment (the 0600 env file).
    doc = {"apiVersion": 1, "datasources": [{
        "name": "Elasticsearch (logs)",
        "uid": "mmstack-logs",
        "type": "elasticsearch",
        "access": "proxy",
        "url": ES_URL,
        "basicAuth": True,
        "basicAuthUser": READER_USER,
        "secureJsonData": {"basicAuthPassword": "$GRAFANA_ES_READER_PASSWORD"},
        "jsonData": {"index": INDEX_PATTERN, "timeField": "@timestamp",
                     "logMessageField": "message", "logLevelField": "log.level"},
        "editable": False,
    }]}
    return yaml.safe_dump(doc, sort_keys=False, width=100)
