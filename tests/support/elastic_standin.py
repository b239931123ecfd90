"""Stand-ins for Elasticsearch 9.x and Kibana 9.x: the HTTP calls mmstack's setup steps make.

No registry is reachable and Debian ships neither, so the one-shots' scripts run against these.
They answer the way the real ones do for the requests in question, and refuse what those refuse:

Elasticsearch (security on): every request needs HTTP basic auth of a known user (401 with
``WWW-Authenticate`` otherwise); the security and template APIs need a superuser (403); a body
needs ``Content-Type: application/json`` (406, as Elasticsearch answers curl's default
form-urlencoded type); reserved users (``kibana_system`` ...) only take a new password through
``_password`` (400 on PUT); a new user needs a password of 6 characters or more; roles take only
the privilege names Elasticsearch defines; unknown body fields are a parse error (400); a
composable template that overlaps the built-in ``logs`` template (``logs-*-*``) with the same
priority is refused.

Kibana: basic auth as well; every non-GET request needs a ``kbn-xsrf`` header (400); a data view
needs a title; creating one whose title or id exists fails (400 / 409) unless ``override``.

Every request is recorded; ``argv_leaks`` lists the processes whose command line held one of
the ``watch`` values while a request was being served (read from ``/proc/*/cmdline``).
"""

from __future__ import annotations

import base64
import json
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

RESERVED_USERS = frozenset({"elastic", "kibana", "kibana_system", "logstash_system", "beats_system",
                            "apm_system", "remote_monitoring_user"})
CLUSTER_PRIVILEGES = frozenset({
    "all", "cancel_task", "create_snapshot", "cross_cluster_replication", "cross_cluster_search",
    "delegate_pki", "grant_api_key", "manage", "manage_api_key", "manage_autoscaling", "manage_ccr",
    "manage_data_frame_transforms", "manage_data_stream_global_retention", "manage_enrich",
    "manage_ilm", "manage_index_templates", "manage_inference", "manage_ingest_pipelines",
    "manage_logstash_pipelines", "manage_ml", "manage_oidc", "manage_own_api_key", "manage_pipeline",
    "manage_rollup", "manage_saml", "manage_search_application", "manage_security",
    "manage_service_account", "manage_slm", "manage_token", "manage_transform", "manage_user_profile",
    "manage_watcher", "monitor", "monitor_data_frame_transforms", "monitor_enrich",
    "monitor_inference", "monitor_ml", "monitor_rollup", "monitor_snapshot", "monitor_text_structure",
    "monitor_transform", "monitor_watcher", "none", "post_behavioral_analytics_event", "read_ccr",
    "read_fleet_secrets", "read_ilm", "read_pipeline", "read_security", "read_slm", "transport_client",
    "write_connector_secrets", "write_fleet_secrets",
})
INDEX_PRIVILEGES = frozenset({
    "all", "auto_configure", "create", "create_doc", "create_index", "cross_cluster_replication",
    "cross_cluster_replication_internal", "delete", "delete_index", "index", "maintenance", "manage",
    "manage_data_stream_lifecycle", "manage_failure_store", "manage_follow_index", "manage_ilm",
    "manage_leader_index", "monitor", "none", "read", "read_cross_cluster", "read_failure_store",
    "view_index_metadata", "write",
})
USER_FIELDS = frozenset({"password", "password_hash", "roles", "full_name", "email", "metadata", "enabled"})
ROLE_FIELDS = frozenset({"cluster", "indices", "applications", "run_as", "metadata", "global",
                         "remote_indices", "remote_cluster", "description", "transient_metadata"})
TEMPLATE_FIELDS = frozenset({"index_patterns", "template", "composed_of", "priority", "version",
                             "_meta", "data_stream", "allow_auto_create", "ignore_missing_component_templates",
                             "deprecated"})
DATA_VIEW_FIELDS = frozenset({"id", "title", "name", "timeFieldName", "sourceFilters", "fieldFormats",
                              "type", "typeMeta", "fields", "runtimeFieldMap", "allowNoIndex",
                              "fieldAttrs", "namespaces", "version", "allowHidden"})
DATA_VIEW_UPDATE_FIELDS = DATA_VIEW_FIELDS - {"id", "namespaces", "version", "fieldAttrs", "fields"} | {"fields"}
BUILTIN_LOGS = {"patterns": ["logs-*-*"], "priority": 100}


class Refused(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _es_error(status: int, kind: str, reason: str) -> Refused:
    return Refused(status, {"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind,
                                      "reason": reason}, "status": status})


@dataclass
class State:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {password, roles, ...}
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_views: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_data_view: str | None = None
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    watch: tuple[str, ...] = ()
    argv_leaks: list[str] = field(default_factory=list)
    # Kibana before it is ready answers every request 503 "Kibana server is not ready yet".
    ready: bool = True


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        state = self.server.state
        self._scan_argv(state)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        try:
            if not state.ready:
                raise Refused(503, {"statusCode": 503, "error": "Service Unavailable",
                                    "message": "Kibana server is not ready yet"})
            user = self._authenticate(state)
            status, body = self.server.app(self, state, user, self.command, url.path, url.query, raw)
            headers: dict[str, str] = {}
        except Refused as exc:
            status, body, headers = exc.status, exc.body, exc.headers
        state.requests.append((self.command, url.path, status))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def _authenticate(self, state: State) -> str:
        header = self.headers.get("Authorization") or ""
        challenge = {"WWW-Authenticate": 'Basic realm="security", charset="UTF-8"'}
        if not header.startswith("Basic "):
            raise Refused(401, self.server.unauthenticated("missing authentication credentials"), challenge)
        name, _, password = base64.b64decode(header[6:]).decode().partition(":")
        if state.users.get(name, {}).get("password") != password:
            raise Refused(401, self.server.unauthenticated(f"unable to authenticate user [{name}]"), challenge)
        return name

    def _scan_argv(self, state: State) -> None:
        if not state.watch:
            return
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    argv = fh.read().decode(errors="replace").replace("\0", " ")
            except OSError:
                continue
            if any(v in argv for v in state.watch):
                state.argv_leaks.append(f"pid {pid}: {argv.split(' ')[0]}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app: Any, state: State, unauthenticated: Any) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.app, self.state, self.unauthenticated = app, state, unauthenticated


def _json_body(handler: _Handler, raw: bytes, *, es: bool) -> Any:
    ctype = (handler.headers.get("Content-Type") or "").split(";")[0].strip()
    if es and raw and ctype not in ("application/json", "application/x-ndjson", "application/vnd.elasticsearch+json"):
        raise Refused(406, {"error": f"Content-Type header [{ctype}] is not supported", "status": 406})
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        if es:
            raise _es_error(400, "parse_exception", "request body is required or malformed") from None
        raise Refused(400, {"statusCode": 400, "error": "Bad Request", "message": "Invalid JSON"}) from None


def _superuser(state: State, user: str) -> None:
    if user != "elastic" and "superuser" not in state.users.get(user, {}).get("roles", []):
        raise _es_error(403, "security_exception", f"action is unauthorized for user [{user}]")


def _unknown(body: dict[str, Any], allowed: frozenset[str], what: str) -> None:
    for key in body:
        if key not in allowed:
            raise _es_error(400, "x_content_parse_exception", f"[{what}] unknown field [{key}]")


def _glob_overlap(a: str, b: str) -> bool:
    """Could an index name match both patterns? (Enough for logs-*-* against logs-mmstack-*.)"""
    import fnmatch

    probe_a = a.replace("*", "x")
    probe_b = b.replace("*", "x")
    return fnmatch.fnmatchcase(probe_a, b) or fnmatch.fnmatchcase(probe_b, a)


def elasticsearch_app(handler: _Handler, state: State, user: str, method: str, path: str,
                      query: str, raw: bytes) -> tuple[int, Any]:
    parts = [p for p in path.split("/") if p]
    if method == "GET" and parts == ["_security", "_authenticate"]:
        return 200, {"username": user, "roles": state.users[user].get("roles", []), "enabled": True}
    if method == "GET" and parts == ["_cluster", "health"]:
        return 200, {"cluster_name": "standin", "status": "green", "number_of_nodes": 1}
    if method == "GET" and not parts:
        return 200, {"name": "standin", "version": {"number": "9.5.5"}, "tagline": "You Know, for Search"}
    body = _json_body(handler, raw, es=True)
    if len(parts) == 4 and parts[:2] == ["_security", "user"] and parts[3] == "_password" and method in ("POST", "PUT"):
        _superuser(state, user)
        _unknown(body, frozenset({"password", "password_hash"}), "change password")
        if len(body.get("password") or "") < 6:
            raise _es_error(400, "action_request_validation_exception",
                            "Validation Failed: 1: passwords must be at least [6] characters long;")
        if parts[2] not in state.users:
            raise _es_error(404, "resource_not_found_exception", f"user [{parts[2]}] does not exist")
        state.users[parts[2]]["password"] = body["password"]
        return 200, {}
    if len(parts) == 3 and parts[:2] == ["_security", "user"] and method in ("POST", "PUT"):
        _superuser(state, user)
        name = parts[2]
        if name in RESERVED_USERS:
            raise _es_error(400, "illegal_argument_exception",
                            f"user [{name}] is reserved and only the password can be changed")
        _unknown(body, USER_FIELDS, "user")
        created = name not in state.users
        password = body.get("password")
        if created and not password:
            raise _es_error(400, "action_request_validation_exception",
                            "Validation Failed: 1: password must be specified unless you are updating an existing user;")
        if password is not None and len(password) < 6:
            raise _es_error(400, "action_request_validation_exception",
                            "Validation Failed: 1: passwords must be at least [6] characters long;")
        for role in body.get("roles") or []:
            if role not in state.roles and role != "superuser":
                pass  # Elasticsearch accepts unknown role names (they grant nothing)
        entry = dict(state.users.get(name, {}))
        entry.update({k: v for k, v in body.items()})
        state.users[name] = entry
        return 200, {"created": created}
    if len(parts) == 3 and parts[:2] == ["_security", "role"] and method in ("POST", "PUT"):
        _superuser(state, user)
        _unknown(body, ROLE_FIELDS, "role")
        for priv in body.get("cluster") or []:
            if priv not in CLUSTER_PRIVILEGES:
                raise _es_error(400, "illegal_argument_exception", f"unknown cluster privilege [{priv}]")
        for entry in body.get("indices") or []:
            _unknown(entry, frozenset({"names", "privileges", "field_security", "query",
                                       "allow_restricted_indices"}), "indices")
            if not entry.get("names") or not entry.get("privileges"):
                raise _es_error(400, "parse_exception", "failed to parse indices privileges: missing names or privileges")
            for priv in entry["privileges"]:
                if priv not in INDEX_PRIVILEGES:
                    raise _es_error(400, "illegal_argument_exception", f"unknown index privilege [{priv}]")
        created = parts[2] not in state.roles
        state.roles[parts[2]] = body
        return 200, {"role": {"created": created}}
    if len(parts) == 2 and parts[0] == "_index_template" and method in ("POST", "PUT"):
        _superuser(state, user)
        _unknown(body, TEMPLATE_FIELDS, "index_template")
        patterns = body.get("index_patterns")
        if not patterns:
            raise _es_error(400, "action_request_validation_exception",
                            "Validation Failed: 1: index patterns are missing;")
        priority = body.get("priority", 0)
        if priority == BUILTIN_LOGS["priority"] and any(_glob_overlap(p, q) for p in patterns
                                                        for q in BUILTIN_LOGS["patterns"]):
            raise _es_error(400, "illegal_argument_exception",
                            f"index template [{parts[1]}] has index patterns {patterns} matching patterns "
                            "from existing templates [logs] with patterns (logs => [logs-*-*]) that have "
                            "the same priority [100]")
        template = body.get("template") or {}
        _unknown(template, frozenset({"settings", "mappings", "aliases", "lifecycle", "data_stream_options"}), "template")
        if "lifecycle" in template and body.get("data_stream") is None:
            raise _es_error(400, "illegal_argument_exception",
                            "Lifecycle can only be used in combination with a data stream")
        if body.get("data_stream") is not None:
            props = ((template.get("mappings") or {}).get("properties") or {})
            ts = props.get("@timestamp")
            if ts is not None and ts.get("type") not in ("date", "date_nanos"):
                raise _es_error(400, "illegal_argument_exception",
                                "data stream timestamp field [@timestamp] is of type [%s], but [date,date_nanos] is expected" % ts.get("type"))
        state.templates[parts[1]] = body
        return 200, {"acknowledged": True}
    raise _es_error(400, "illegal_argument_exception", f"request [{method} {path}] is not handled by the stand-in")


def kibana_app(handler: _Handler, state: State, user: str, method: str, path: str,
               query: str, raw: bytes) -> tuple[int, Any]:
    if method != "GET" and not handler.headers.get("kbn-xsrf"):
        raise Refused(400, {"statusCode": 400, "error": "Bad Request",
                            "message": "Request must contain a kbn-xsrf header."})
    parts = [p for p in path.split("/") if p]
    if method == "GET" and parts == ["api", "status"]:
        return 200, {"name": "standin", "version": {"number": "9.5.5"},
                     "status": {"overall": {"level": "available"}}}
    body = _json_body(handler, raw, es=False) if method != "GET" else {}
    if parts[:3] == ["api", "data_views", "data_view"]:
        if len(parts) == 4 and method == "GET":
            view = state.data_views.get(parts[3])
            if view is None:
                raise Refused(404, {"statusCode": 404, "error": "Not Found",
                                    "message": f"Saved object [index-pattern/{parts[3]}] not found"})
            return 200, {"data_view": view}
        spec = body.get("data_view")
        if not isinstance(spec, dict):
            raise Refused(400, {"statusCode": 400, "error": "Bad Request",
                                "message": "[request body.data_view]: expected a plain object value"})
        if len(parts) == 3 and method == "POST":
            for key in set(body) - {"data_view", "override"}:
                raise Refused(400, {"statusCode": 400, "error": "Bad Request",
                                    "message": f"[request body.{key}]: definition for this key is missing"})
            for key in spec:
                if key not in DATA_VIEW_FIELDS:
                    raise Refused(400, {"statusCode": 400, "error": "Bad Request",
                                        "message": f"[request body.data_view.{key}]: definition for this key is missing"})
            if not spec.get("title"):
                raise Refused(400, {"statusCode": 400, "error": "Bad Request",
                                    "message": "[request body.data_view.title]: expected value of type [string] but got [undefined]"})
            same_title = [k for k, v in state.data_views.items() if v["title"] == spec["title"]]
            if same_title and not body.get("override"):
                raise Refused(400, {"statusCode": 400, "error": "Bad Request",
                                    "message": f"Duplicate data view: {spec['title']}"})
            view_id = spec.get("id") or f"generated-{len(state.data_views) + 1}"
            if view_id in state.data_views and not body.get("override"):
                raise Refused(409, {"statusCode": 409, "error": "Conflict",
                                    "message": f"Saved object [index-pattern/{view_id}] conflict"})
            for k in same_title:
                del state.data_views[k]
            state.data_views[view_id] = {**spec, "id": view_id}
            return 200, {"data_view": state.data_views[view_id]}
        if len(parts) == 4 and method == "POST":
            for key in set(body) - {"data_view", "refresh_fields"}:
                raise Refused(400, {"statusCode": 400, "error": "Bad Request",
                                    "message": f"[request body.{key}]: definition for this key is missing"})
            for key in spec:
                if key not in DATA_VIEW_UPDATE_FIELDS:
                    raise Refused(400, {"statusCode": 400, "error": "Bad Request",
                                        "message": f"[request body.data_view.{key}]: definition for this key is missing"})
            if parts[3] not in state.data_views:
                raise Refused(404, {"statusCode": 404, "error": "Not Found",
                                    "message": f"Saved object [index-pattern/{parts[3]}] not found"})
            state.data_views[parts[3]].update(spec)
            return 200, {"data_view": state.data_views[parts[3]]}
    if parts == ["api", "data_views", "default"] and method == "POST":
        for key in set(body) - {"data_view_id", "force"}:
            raise Refused(400, {"statusCode": 400, "error": "Bad Request",
                                "message": f"[request body.{key}]: definition for this key is missing"})
        if "data_view_id" not in body:
            raise Refused(400, {"statusCode": 400, "error": "Bad Request",
                                "message": "[request body.data_view_id]: expected value of type [string] but got [undefined]"})
        if state.default_data_view is None or body.get("force"):
            state.default_data_view = body["data_view_id"]
        return 200, {"acknowledged": True}
    raise Refused(404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"})


def _es_unauthenticated(reason: str) -> Any:
    return {"error": {"type": "security_exception", "reason": reason}, "status": 401}


def _kibana_unauthenticated(reason: str) -> Any:
    return {"statusCode": 401, "error": "Unauthorized", "message": reason}


class StandIn:
    """A running stand-in: ``url``, ``state``; a context manager that stops it on exit."""

    def __init__(self, kind: str, elastic_password: str, watch: tuple[str, ...] = ()) -> None:
        self.state = State(watch=watch)
        for name in RESERVED_USERS:
            self.state.users[name] = {"password": None, "roles": []}
        self.state.users["elastic"] = {"password": elastic_password, "roles": ["superuser"]}
        app, unauth = (elasticsearch_app, _es_unauthenticated) if kind == "elasticsearch" else \
            (kibana_app, _kibana_unauthenticated)
        self._server = _Server(app, self.state, unauth)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "StandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
