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
from typing import Any, Iterable

import yaml

from . import patterns as P
from .exposure import compose_production, is_production, schema_production
from .rules import PLAIN, STORE, Finding, FindingSink, mask
from .yamllines import YMap, YSeq, error_line, load_documents

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


# ----------------------------------------------------------------------------------------------
# One key = value pair (YAML entry, env line, template line)
# ----------------------------------------------------------------------------------------------

def _check_pair(out: FindingSink, key: Any, value: Any, line: int, *, label: str, literal_rule: str,
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


def _check_command_string(out: FindingSink, text: str, line: int, label: str) -> None:
    for m in _CMD_FLAG.finditer(text):
        _check_flag(out, m.group(1), m.group(2), line, label)


def _check_flag(out: FindingSink, flag: str, raw: str, line: int, label: str) -> None:
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

def _key_material(out: FindingSink, lines: Iterable[tuple[int, str]]) -> None:
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
    out = FindingSink(file, STORE if generated else PLAIN)
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
    out = FindingSink(file, PLAIN)
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
    out = FindingSink(file, PLAIN)
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

    def __init__(self, out: FindingSink, declared: frozenset[str]) -> None:
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


def _declared_secrets(doc: Any) -> frozenset[str]:
    secrets = doc.get("secrets") if isinstance(doc, YMap) else None
    return frozenset(k for k in secrets if isinstance(k, str)) if isinstance(secrets, YMap) else frozenset()


def _documents(out: FindingSink, text: str, file: str) -> list[Any] | None:
    """The YAML documents of ``text``; None (and an MMS001 finding) when it does not parse."""
    try:
        return load_documents(text, file)
    except yaml.YAMLError as exc:
        # PyYAML's message quotes the offending line, which may hold a secret: say only where.
        out.add("MMS001", error_line(exc), f"not valid YAML ({type(exc).__name__}); not scanned")
        return None


def scan_yaml(text: str, file: str, *, environment: str | None = None,
              production_rules: bool = True) -> list[Finding]:
    """Any YAML file. Compose files (by name or shape) in production also get the port and
    healthcheck rules, unless ``production_rules`` is off because a merged view covers them;
    the schema gets them for its ``production`` environment."""
    out = FindingSink(file, PLAIN)
    docs = _documents(out, text, file)
    if docs is None:
        return out.findings
    declaration_values: dict[int, list[str]] = {}
    for doc in docs:
        walk = _YamlWalk(out, _declared_secrets(doc))
        walk.walk(doc)
        for line, values in walk.declaration_values.items():
            declaration_values.setdefault(line, []).extend(values)
        if is_schema_document(doc):
            schema_production(out, text)
        elif (production_rules and is_compose_document(doc, file)
              and is_production(environment or compose_environment(file))):
            compose_production(out, doc["services"], only_defined=True)
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
    out = FindingSink(file, STORE)
    docs = _documents(out, text, file)
    if docs is None:
        return out.findings
    for doc in docs:
        secrets = doc.get("secrets") if isinstance(doc, YMap) else None
        if not isinstance(secrets, YMap):
            continue
        for name, value in secrets.items():
            _check_pair(out, name, value, secrets.loc(name)[1], label=f"secrets.{name}",
                        literal_rule="MMS101", all_secret=True)
    return out.findings


__all__ = ["scan_env", "env_has_secrets", "scan_template", "scan_text", "scan_yaml", "scan_store",
           "is_compose_document", "compose_environment", "is_production", "PLAIN", "STORE"]
