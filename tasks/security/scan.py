"""Pure scanners, one per kind of file: text in, `Finding`s out (no file system, no git).

Two roles decide what a value may be:

* ``plain``: files that should hold no secret at all (the schema, env templates, compose files,
  anything passed with ``--path``). A literal on a secret-like key, key material or a
  high-entropy string is a finding.
* ``store``: where secrets are supposed to live (generated env files, the secrets store). Their
  values are the secret store's output, so only *weak* values are findings there; modes and git
  tracking are checked by `validate`, which sees the file system.

Every message names the key and at most a masked value (`rules.mask`), never the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import yaml

from . import patterns as P
from ..schema.generate import ONE_SHOT_LABEL
from .rules import Finding, finding, mask
from .yamllines import YMap, YSeq, error_line, load_documents, merge

PLAIN, STORE = "plain", "store"
PRODUCTION_NAMES = frozenset({"production", "prod"})
_BOOL_WORDS = frozenset({"true", "false", "yes", "no", "on", "off"})
# Keys whose values describe how a secret is made, never a secret (schema `secrets:` entries).
_DECLARATION_KEYS = frozenset({"alphabet", "charset", "chars", "characters", "prefix", "suffix",
                               "kind", "length", "bytes", "description", "checksum", "digest"})
# Under a secret-like key, these children hold the value itself (`db_password: {value: x}`).
_INLINE_VALUE_KEYS = ("value", "default", "initial", "fallback", "content", "data", "plain")
_COMPOSE_TOP = frozenset({"version", "name", "services", "networks", "volumes", "secrets",
                          "configs", "include", "models"})
_COMPOSE_NAME = re.compile(r"^(?:docker-)?compose(?:\.([A-Za-z0-9_-]+))?(?:\.[A-Za-z0-9_-]+)*"
                           r"\.ya?ml$")
_CMD_FLAG = re.compile(r"(?:^|\s)--(requirepass|masterauth|password|passwd|pass|token|secret|"
                       r"api-key|apikey|api_key|auth-token)(?:=|\s+)(\"[^\"]*\"|'[^']*'|\S+)")
_CMD_FLAG_ALONE = re.compile(r"^--(requirepass|masterauth|password|passwd|pass|token|secret|"
                             r"api-key|apikey|api_key|auth-token)(?:=(.*))?$")
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.\-]*)\s*=\s?(.*)$")
_JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.S)
_JINJA_ANY = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)


@dataclass
class _Out:
    """Findings for one file; remembers which lines already carry a secret finding so that
    the key-material rules do not report the same value twice."""

    file: str
    role: str
    findings: list[Finding] = field(default_factory=list)
    secret_lines: set[int] = field(default_factory=set)

    def add(self, rule_id: str, line: int | None, message: str, file: str | None = None) -> None:
        # One finding per rule and line: a YAML anchor merged elsewhere, or two ports in one
        # flow list, are one thing to fix.
        f = finding(rule_id, file or self.file, line, message)
        if not any((g.rule_id, g.file, g.line) == (f.rule_id, f.file, f.line) for g in self.findings):
            self.findings.append(f)
        if rule_id[3] in "12" and line is not None and (file is None or file == self.file):
            self.secret_lines.add(line)


# ----------------------------------------------------------------------------------------------
# One key = value pair (YAML entry, env line, template line)
# ----------------------------------------------------------------------------------------------

def _check_pair(out: _Out, key: Any, value: Any, line: int, *, label: str, literal_rule: str,
                declared: frozenset[str] = frozenset(), all_secret: bool = False) -> None:
    """The value-level rules for one key and its value. ``label`` names the key in messages;
    ``literal_rule`` is MMS101 (YAML) or MMS102 (env/template line); ``all_secret`` treats every
    non-user key as a secret (the secrets store, whose every value is one)."""
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        return
    v = P.unquote(str(value))
    if P.PRIVATE_KEY.search(v):
        return  # the key-material scan reports it, at the BEGIN line
    fallbacks = P.fallback_defaults(v, key)
    if fallbacks:
        names = ", ".join(fallbacks)
        out.add("MMS103", line, f"{label}: `${{{fallbacks[0]}:-…}}` gives the secret {names} "
                                f"a default value")
        return
    if P.jinja_secret_defaults(v, key):
        out.add("MMS104", line, f"{label}: `default(...)` gives a secret a fallback value")
        return
    secret = (all_secret and not P.is_user_key(key)) or (
        P.is_secret_key(key) and key not in P.REFERENCE_KEYS)
    if secret:
        if P.is_reference(v) or v in declared or (v.lower() in _BOOL_WORDS and not all_secret):
            return
        reason = P.weak_reason(v)
        if reason:
            out.add("MMS201", line, f"{label}: {reason} {mask(v)}")
        elif out.role == PLAIN:
            out.add(literal_rule, line, f"{label}: literal secret value {mask(v)}")
        return
    if P.is_user_key(key) and v.lower() in P.DEFAULT_ADMIN_USERS:
        out.add("MMS202", line, f"{label}: default administrator user name {mask(v)}")
        return
    for pw in P.url_passwords(v):
        if P.is_reference(pw):
            continue
        reason = P.weak_reason(pw)
        if reason:
            out.add("MMS201", line, f"{label}: URL with a {reason} as password {mask(pw)}")
        elif out.role == PLAIN:
            out.add("MMS105", line, f"{label}: URL with a literal password {mask(pw)}")
        return


def _check_command_string(out: _Out, text: str, line: int, label: str) -> None:
    for m in _CMD_FLAG.finditer(text):
        _check_flag(out, m.group(1), m.group(2), line, label)


def _check_flag(out: _Out, flag: str, raw: str, line: int, label: str) -> None:
    v = P.unquote(raw)
    if P.is_reference(v):
        return
    reason = P.weak_reason(v)
    if reason:
        out.add("MMS201", line, f"{label}: `--{flag}` with a {reason} {mask(v)}")
    elif out.role == PLAIN:
        out.add("MMS101", line, f"{label}: `--{flag}` given a literal secret {mask(v)} on the "
                                f"command line")


# ----------------------------------------------------------------------------------------------
# Key material on raw lines (private keys, provider tokens, high entropy)
# ----------------------------------------------------------------------------------------------

def _key_material(out: _Out, lines: Iterable[tuple[int, str]]) -> None:
    in_pem = False
    for n, text in lines:
        # PEM blocks: a private key is one finding at its BEGIN line; the base64 body of any
        # block (certificates and public keys too) is not "high entropy" news.
        if "-----BEGIN " in text:
            if P.PRIVATE_KEY.search(text):
                out.add("MMS203", n, "private key block (-----BEGIN ... PRIVATE KEY-----)")
            in_pem = "-----END " not in text
            continue
        if in_pem:
            in_pem = "-----END " not in text
            continue
        if n in out.secret_lines:
            continue
        tokens = P.provider_tokens(text)
        if tokens:
            provider, tok = tokens[0]
            out.add("MMS204", n, f"{provider} token {mask(tok)}")
            continue
        strings = P.high_entropy_strings(text)
        if strings:
            s = strings[0]
            out.add("MMS205", n, f"high-entropy string {mask(s)} ({len(s)} characters, "
                                 f"{P.entropy(s):.1f} bits/char)")


# ----------------------------------------------------------------------------------------------
# Env files and env templates (line based)
# ----------------------------------------------------------------------------------------------

def _env_value(raw: str) -> str:
    raw = raw.strip()
    if raw and raw[0] in "'\"":
        end = raw.find(raw[0], 1)
        return raw[: end + 1] if end > 0 else raw
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def scan_env(text: str, file: str, *, generated: bool = True) -> list[Finding]:
    """A ``KEY=value`` env file. ``generated``: written by `inv render-env` (values come from
    the secrets store, so only weak values are findings); otherwise a hand-written env file,
    where a literal secret should have come from the store."""
    out = _Out(file, STORE if generated else PLAIN)
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _ENV_LINE.match(line)
        if m:
            _check_pair(out, m.group(1), _env_value(m.group(2)), n, label=m.group(1),
                        literal_rule="MMS102")
    if not generated:
        _key_material(out, enumerate(text.splitlines(), 1))
    return out.findings


def env_has_secrets(text: str) -> bool:
    """Does a hand-written env file hold any secret (a secret-like key with a value)?"""
    for line in text.splitlines():
        m = _ENV_LINE.match(line)
        if m and not line.lstrip().startswith("#") and P.is_secret_key(m.group(1)) \
                and P.unquote(_env_value(m.group(2))):
            return True
    return False


def _blank_comments(text: str) -> str:
    """Remove ``{# ... #}`` comments, keeping their newlines so line numbers stay true."""
    return _JINJA_COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def scan_template(text: str, file: str) -> list[Finding]:
    """A Jinja2 env template: secrets must be ``{{ secrets.NAME }}``, without a default."""
    out = _Out(file, PLAIN)
    lines = _blank_comments(text).splitlines()
    for n, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _ENV_LINE.match(line)
        if m:
            _check_pair(out, m.group(1), _env_value(m.group(2)), n, label=m.group(1),
                        literal_rule="MMS102")
        elif P.jinja_secret_defaults(line) or P.fallback_defaults(line):
            # A line whose key is itself templated (`{{ name }}={{ value | default(...) }}`).
            _check_pair(out, None, line, n, label=f"line {n}", literal_rule="MMS102")
    # Key material outside the template expressions (`{{ ... }}` only names things).
    _key_material(out, ((n, _JINJA_ANY.sub(" ", line)) for n, line in enumerate(lines, 1)))
    return out.findings


def scan_text(text: str, file: str) -> list[Finding]:
    """Any other text file that should hold no secret: key material and URL credentials."""
    out = _Out(file, PLAIN)
    for n, line in enumerate(text.splitlines(), 1):
        for pw in P.url_passwords(line):
            # In free text (docs, scripts) a weak-looking password is a placeholder
            # (`user:PASSWORD@host`); only a literal that looks real is a finding.
            if not (P.is_reference(pw) or P.weak_reason(pw)):
                out.add("MMS105", n, f"line {n}: URL with a literal password {mask(pw)}")
                break
    _key_material(out, enumerate(text.splitlines(), 1))
    return out.findings


# ----------------------------------------------------------------------------------------------
# YAML (the schema, compose files, any YAML)
# ----------------------------------------------------------------------------------------------

def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _YamlWalk:
    """Walks one document: value rules on every entry, plus image/privileged/socket rules."""

    def __init__(self, out: _Out, declared: frozenset[str]) -> None:
        self.out, self.declared = out, declared
        # Values of declaration keys (`alphabet: ...`) by line: blanked before the key-material
        # scan, which reads raw lines (comments included).
        self.declaration_values: dict[int, list[str]] = {}

    def pair(self, key: Any, value: Any, line: int, path: tuple[Any, ...]) -> None:
        _check_pair(self.out, key, value, line, label=_dotted(path), literal_rule="MMS101",
                    declared=self.declared)

    def walk(self, node: Any, path: tuple[Any, ...] = ()) -> None:
        if isinstance(node, YMap):
            for key, value in node.items():
                _file, line = node.loc(key)
                if key in _DECLARATION_KEYS and isinstance(value, (str, int)):
                    self.declaration_values.setdefault(line, []).append(str(value))
                self.entry(node, key, value, line, path + (key,))
        elif isinstance(node, YSeq):
            for i, item in enumerate(node):
                if isinstance(item, (YMap, YSeq)):
                    self.walk(item, path + (i,))

    def entry(self, parent: YMap, key: Any, value: Any, line: int, path: tuple[Any, ...]) -> None:
        label = _dotted(path)
        if isinstance(value, YMap):
            if P.is_secret_key(key) and key not in P.REFERENCE_KEYS:
                for child in _INLINE_VALUE_KEYS:
                    if child in value and not isinstance(value[child], (YMap, YSeq)):
                        self.pair(key, value[child], value.loc(child)[1], path + (child,))
            self.walk(value, path)
            return
        if isinstance(value, YSeq):
            self.sequence(key, value, path)
            self.walk(value, path)
            return
        self.pair(key, value, line, path)
        if isinstance(value, str):
            _check_command_string(self.out, value, line, label)
            if key == "image":
                self.image(value, line, label)
            elif len(path) == 2 and path[0] in ("images", "custom_images") and key != "registry":
                tag = value if key == "tag" else None
                if tag is not None and (tag.lower() in P.FLOATING_TAGS or not tag):
                    self.out.add("MMS301", line, f"{label}: floating tag {tag!r} for every "
                                                 f"custom image")
                elif key != "tag":
                    self.image(value, line, label)
        if key == "privileged" and (value is True or str(value).lower() == "true"):
            self.out.add("MMS302", line, f"{label}: privileged container")

    def image(self, image: str, line: int, label: str) -> None:
        tag = P.unpinned_tag(image)
        if tag:
            what = "no tag (means latest)" if tag == "none" else f"floating tag {tag!r}"
            self.out.add("MMS301", line, f"{label}: image {image!r} has {what}")

    def sequence(self, key: Any, seq: YSeq, path: tuple[Any, ...]) -> None:
        label = _dotted(path)
        if key == "environment" or key == "args":
            for i, item in enumerate(seq):
                if isinstance(item, str) and "=" in item:
                    k, _, v = item.partition("=")
                    self.pair(k.strip(), v, seq.loc(i)[1], path + (k.strip(),))
        elif key in ("command", "entrypoint", "test"):
            for i, item in enumerate(seq):
                if not isinstance(item, str):
                    continue
                m = _CMD_FLAG_ALONE.match(item)
                if m and m.group(2) is not None:
                    _check_flag(self.out, m.group(1), m.group(2), seq.loc(i)[1], label)
                elif m and i + 1 < len(seq) and isinstance(seq[i + 1], str):
                    _check_flag(self.out, m.group(1), seq[i + 1], seq.loc(i + 1)[1], label)
                else:
                    _check_command_string(self.out, item, seq.loc(i)[1], label)
        elif key == "volumes":
            for i, item in enumerate(seq):
                source = item.get("source") if isinstance(item, YMap) else item
                if isinstance(source, str) and "docker.sock" in source.split(":", 1)[0]:
                    self.out.add("MMS303", seq.loc(i)[1], f"{label}[{i}]: mounts the Docker socket")
        elif P.is_secret_key(key) and key not in P.REFERENCE_KEYS:
            for i, item in enumerate(seq):
                if not isinstance(item, (YMap, YSeq)):
                    self.pair(key, item, seq.loc(i)[1], path + (i,))


def is_schema_document(doc: Any) -> bool:
    return (isinstance(doc, YMap) and isinstance(doc.get("services"), YMap)
            and ("environments" in doc or "stacks" in doc))


def is_compose_document(doc: Any, file_name: str = "") -> bool:
    """A Compose file: named like one, or shaped like one (only Compose's top-level keys)."""
    if not isinstance(doc, YMap) or not isinstance(doc.get("services"), YMap):
        return False
    if _COMPOSE_NAME.match(file_name.rsplit("/", 1)[-1]):
        return True
    return all(isinstance(k, str) and (k in _COMPOSE_TOP or k.startswith("x-")) for k in doc)


def compose_environment(file_name: str) -> str | None:
    """``compose.production.yml`` -> ``production``; None for a base file."""
    m = _COMPOSE_NAME.match(file_name.rsplit("/", 1)[-1])
    return m.group(1) if m else None


def is_production(environment: str | None) -> bool:
    return (environment or "").lower() in PRODUCTION_NAMES


def _declared_secrets(doc: Any) -> frozenset[str]:
    secrets = doc.get("secrets") if isinstance(doc, YMap) else None
    return frozenset(k for k in secrets if isinstance(k, str)) if isinstance(secrets, YMap) else frozenset()


def scan_yaml(text: str, file: str, *, environment: str | None = None,
              production_rules: bool = True) -> list[Finding]:
    """Any YAML file. Compose files (by name or shape) in production also get the port and
    healthcheck rules, unless ``production_rules`` is off because a merged view covers them;
    the schema gets them for its ``production`` environment."""
    out = _Out(file, PLAIN)
    try:
        docs = load_documents(text, file)
    except yaml.YAMLError as exc:
        # PyYAML's message quotes the offending line, which may hold a secret: say only where.
        out.add("MMS001", error_line(exc), f"not valid YAML ({type(exc).__name__}); not scanned")
        return out.findings
    declaration_values: dict[int, list[str]] = {}
    for doc in docs:
        walk = _YamlWalk(out, _declared_secrets(doc))
        walk.walk(doc)
        for line, values in walk.declaration_values.items():
            declaration_values.setdefault(line, []).extend(values)
        if is_schema_document(doc):
            _schema_production(out, doc)
        elif (production_rules and is_compose_document(doc, file)
              and is_production(environment or compose_environment(file))):
            _compose_production(out, doc["services"], only_defined=True)
    # Key material on the raw lines (comments included), minus the values of keys that only
    # declare how a secret is generated (`alphabet:` is high-entropy by design).
    def without_declarations(n: int, line: str) -> str:
        for value in declaration_values.get(n, ()):
            line = line.replace(value, " ")
        return line

    _key_material(out, ((n, without_declarations(n, line))
                        for n, line in enumerate(text.splitlines(), 1)))
    return out.findings


def scan_store(text: str, file: str) -> list[Finding]:
    """A plain secrets-store file (``.mmstack/secrets/<env>.yaml``): every value is a secret,
    so only weak values and default admin user names are findings."""
    out = _Out(file, STORE)
    try:
        docs = load_documents(text, file)
    except yaml.YAMLError as exc:
        out.add("MMS001", error_line(exc), f"not valid YAML ({type(exc).__name__}); not scanned")
        return out.findings
    for doc in docs:
        secrets = doc.get("secrets") if isinstance(doc, YMap) else None
        if not isinstance(secrets, YMap):
            continue
        for name, value in secrets.items():
            _check_pair(out, name, value, secrets.loc(name)[1], label=f"secrets.{name}",
                        literal_rule="MMS101", all_secret=True)
    return out.findings


# ----------------------------------------------------------------------------------------------
# Production rules: published datastore ports, healthchecks
# ----------------------------------------------------------------------------------------------

def parse_short_port(spec: str) -> tuple[str | None, str | None, list[int]]:
    """``[host_ip:][published:]target[/proto]`` -> (host_ip, published, targets)."""
    spec = spec.split("/", 1)[0].strip()
    ip: str | None = None
    m = re.match(r"^\[([^\]]*)\]:(.*)$", spec)
    if m:
        ip, spec = m.group(1), m.group(2)
    parts = spec.rsplit(":", 2) if ip is None else spec.split(":", 1)
    if ip is None and len(parts) == 3:
        ip, published, target = parts
    elif len(parts) == 2:
        published, target = parts
    else:
        published, target = None, parts[-1]
    return ip, published, _port_range(target)


def _port_range(text: Any) -> list[int]:
    text = str(text).strip()
    try:
        if "-" in text:
            lo, hi = (int(x) for x in text.split("-", 1))
            return list(range(lo, min(hi, lo + 1000) + 1))
        return [int(text)]
    except ValueError:
        return []


def _datastore(targets: list[int], published: Any) -> tuple[int, str] | None:
    for port in targets + _port_range(published if published is not None else ""):
        if port in P.DATASTORE_PORTS:
            return port, P.DATASTORE_PORTS[port]
    return None


def _public(ip: Any) -> bool | None:
    """True when bound on all interfaces, None when it depends on a variable."""
    if ip is None:
        return True
    resolved = P.resolve_default(str(ip))
    if resolved is None:
        return None
    return resolved.strip() in P.PUBLIC_ADDRESSES


def _compose_production(out: _Out, services: YMap, *, only_defined: bool) -> None:
    for name, spec in services.items():
        if not isinstance(spec, YMap):
            continue
        svc_file, svc_line = services.loc(name)
        ports = spec.get("ports")
        if isinstance(ports, YSeq):
            for i, item in enumerate(ports):
                if isinstance(item, YMap):
                    ip, published = item.get("host_ip"), item.get("published")
                    targets = _port_range(item.get("target", ""))
                else:
                    ip, published, targets = parse_short_port(str(item))
                store = _datastore(targets, published)
                if store and _public(ip):
                    port_file, port_line = ports.loc(i)
                    where = "all interfaces" if ip in (None, "") else str(ip)
                    out.add("MMS304", port_line, f"services.{name}.ports[{i}]: {store[1]} "
                                                 f"({store[0]}) published on {where} in production",
                            file=port_file)
        if only_defined and "image" not in spec and "build" not in spec:
            continue  # an overlay that only adjusts a service defined elsewhere
        hc = spec.get("healthcheck")
        disabled = isinstance(hc, YMap) and (hc.get("disable") is True or hc.get("test") in
                                             (["NONE"], "NONE"))
        labels = spec.get("labels")
        one_shot = isinstance(labels, YMap) and labels.get(ONE_SHOT_LABEL) == "true"
        if (hc is None or disabled) and not one_shot:
            why = "disabled" if disabled else "none"
            line_file, line = (spec.loc("healthcheck") if disabled else (svc_file, svc_line))
            out.add("MMS305", line, f"services.{name}: no healthcheck in production ({why})",
                    file=line_file)


def scan_compose_merged(parts: list[tuple[str, str]], environment: str = "production") -> list[Finding]:
    """The production rules on ``docker compose -f base -f overlay ...`` merged; each finding
    points at the file and line that put the setting there. Parse errors are left to the
    per-file scan."""
    services: Any = None
    for file, text in parts:
        try:
            docs = load_documents(text, file)
        except yaml.YAMLError:
            continue
        for doc in docs:
            if isinstance(doc, YMap) and isinstance(doc.get("services"), YMap):
                services = merge(services, doc["services"])
    out = _Out(parts[0][0] if parts else "", PLAIN)
    if isinstance(services, YMap) and is_production(environment):
        _compose_production(out, services, only_defined=False)
    return out.findings


def _schema_production(out: _Out, doc: YMap) -> None:
    """The schema's own `production` environment: which datastore ports it publishes on all
    interfaces, and which of its services have no healthcheck."""
    envs = doc.get("environments")
    if not isinstance(envs, YMap):
        return
    env_name = next((k for k in envs if is_production(str(k))), None)
    env = envs.get(env_name) if env_name is not None else None
    if not isinstance(env, YMap):
        return
    services, stacks = doc["services"], doc.get("stacks")
    selected: list[str] = []
    for stack in env.get("stacks") or []:
        members = stacks.get(stack, {}).get("services") if isinstance(stacks, YMap) else None
        selected += [s for s in (members or []) if isinstance(s, str)]
    selected += [s for s in (env.get("services") or []) if isinstance(s, str)]
    settings = env.get("settings") if isinstance(env.get("settings"), YMap) else YMap(out.file, 0)
    bind = settings.get("bind_address", "127.0.0.1")  # mmstack's default bind (generate.py)
    bind_line = settings.loc("bind_address")[1] if "bind_address" in settings else None
    overrides = env.get("overrides") if isinstance(env.get("overrides"), YMap) else YMap(out.file, 0)
    over_services = overrides.get("services") if isinstance(overrides.get("services"), YMap) else YMap(out.file, 0)
    for name in dict.fromkeys(selected):
        spec = services.get(name)
        if not isinstance(spec, YMap):
            continue
        over = over_services.get(name) if isinstance(over_services.get(name), YMap) else YMap(out.file, 0)
        for item, line in _schema_ports(spec.get("ports"), over.get("ports")):
            container = item.get("container")
            store = _datastore(_port_range(container), None) if container is not None else None
            if store is None or item.get("host") is None:
                continue
            ip = item.get("host_ip", bind)
            if _public(ip):
                at = line if "host_ip" in item or bind_line is None else bind_line
                out.add("MMS304", at, f"environments.{env_name}: {store[1]} ({store[0]}) of "
                                      f"{name} published on {ip or 'all interfaces'} in production")
        hc = over.get("healthcheck", spec.get("healthcheck"))
        # A one-shot (another service waits for it to complete, or it says one_shot: true) has
        # no running state to check.
        one_shot = (isinstance(spec, YMap) and spec.get("one_shot") is True) or any(
            isinstance(other, YMap) and isinstance(other.get("depends_on"), YMap)
            and other["depends_on"].get(name) == "completed" for other in services.values())
        if (hc is None or (isinstance(hc, YMap) and hc.get("disable") is True)) and not one_shot:
            out.add("MMS305", services.loc(name)[1], f"services.{name}: no healthcheck, and it "
                                                     f"runs in {env_name}")


def _schema_ports(base: Any, over: Any) -> list[tuple[YMap, int]]:
    """The port entries production ends up with, each with its line (schema list operators)."""
    def items(seq: Any) -> list[tuple[YMap, int]]:
        return [(p, seq.loc(i)[1]) for i, p in enumerate(seq) if isinstance(p, YMap)] \
            if isinstance(seq, YSeq) else []

    result = items(base)
    if isinstance(over, YSeq):
        return items(over)
    if isinstance(over, YMap):
        if "$replace" in over:
            return items(over["$replace"])
        if "$append" in over:
            result = result + items(over["$append"])
    return result


__all__ = ["scan_env", "env_has_secrets", "scan_template", "scan_text", "scan_yaml", "scan_store",
           "scan_compose_merged", "is_compose_document", "compose_environment", "is_production",
           "parse_short_port", "PLAIN", "STORE"]
