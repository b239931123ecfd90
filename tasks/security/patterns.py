"""What counts as a secret-like key, a reference, a weak value, key material or a risky image.

Pure functions over strings, shared by every scanner. The word lists err on the side of a
finding a person can dismiss quickly (the message names the key) over a silent miss, but
declarations that are obviously not values (``*_FILE``, ``*_LENGTH``, ``JWT_ALGORITHM``) are
excluded so the project's own files stay clean.
"""

from __future__ import annotations

import math
import re
from collections import Counter

# -- keys ---------------------------------------------------------------------------------------
_SECRET_WORDS = frozenset({
    "password", "passwd", "pwd", "pw", "pass", "passphrase", "secret", "secrets", "token", "tokens",
    "apikey", "jwt", "salt", "credential", "credentials", "creds", "privatekey",
})
# Compound words ending like this are secret-like too (encryptionkey, masterkey, clientsecret).
_SECRET_SUFFIXES = ("password", "passwd", "secret", "token", "key", "salt", "credentials")
_NOT_SECRET_COMPOUNDS = frozenset({"monkey", "donkey", "turkey", "hockey", "jockey", "whiskey",
                                   "basalt", "hotkey", "keykey"})
# A key ending in one of these names *something about* a secret, not the secret itself.
_NON_VALUE_TAIL = frozenset({
    "file", "files", "path", "dir", "directory", "env", "var", "length", "len", "size", "bytes",
    "bits", "alphabet", "charset", "kind", "prefix", "suffix", "algorithm", "alg", "algo",
    "expire", "expires", "expiry", "expiration", "minutes", "seconds", "hours", "days", "ttl",
    "lifetime", "timeout", "enabled", "enable", "disabled", "disable", "active", "required",
    "type", "name", "names", "id", "header", "field", "format", "version", "count", "min", "max",
    "rotation", "policy", "host", "port", "url", "uri", "user", "username", "mode", "provider",
    "source", "store", "backend", "location", "audience", "issuer", "claims", "leeway", "hint",
    "description", "strength", "command", "cmd", "ref", "template", "limit", "limits", "budget",
    "capacity", "window", "retries", "rate", "quota", "interval", "endpoint", "scope", "scopes",
})
_USER_TAIL = frozenset({"user", "username", "login"})
DEFAULT_ADMIN_USERS = frozenset({"admin", "administrator", "root", "minioadmin", "postgres", "sa",
                                 "superuser", "guest"})
# Keys whose value is the *name* of a secret (Compose `secrets: [x]`, schema `secret: x`).
REFERENCE_KEYS = frozenset({"secret", "secrets", "secret_name", "secret_ref", "from_secret",
                            "secretname", "secretref"})


def key_tokens(key: str) -> list[str]:
    """``LITELLM_MASTER_KEY`` / ``litellmMasterKey`` / ``xpack.key`` -> lower-case words."""
    key = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    return [t for t in re.split(r"[^A-Za-z0-9]+", key.lower()) if t]


def _secret_word(token: str) -> bool:
    if token in _SECRET_WORDS:
        return True
    if token in _NOT_SECRET_COMPOUNDS:
        return False
    return any(token.endswith(s) and len(token) > len(s) for s in _SECRET_SUFFIXES)


def is_secret_key(key: object) -> bool:
    """Would a value under this key be a secret (password, token, api key, salt ...)?"""
    if not isinstance(key, str):
        return False
    tokens = key_tokens(key)
    if not tokens or tokens[-1] in _NON_VALUE_TAIL:
        return False
    if tokens == ["key"] or tokens == ["keys"]:  # bare `key:` is usually an identifier field
        return False
    # "api key", "secret key", "access key", "private key": two words, one secret.
    words = set(tokens)
    if "key" in words and words & {"api", "access", "secret", "private", "master", "encryption",
                                   "signing", "client", "session", "auth", "service", "license",
                                   "root"}:
        return True
    if tokens[-1] in {"key", "keys", "auth"} and len(tokens) > 1:  # SIGNING_KEY, REDISCLI_AUTH
        return True
    return any(_secret_word(t) for t in tokens)


def is_user_key(key: object) -> bool:
    return isinstance(key, str) and bool(key_tokens(key)) and key_tokens(key)[-1] in _USER_TAIL


# -- values -------------------------------------------------------------------------------------
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_INTERP = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*")
_EXTERNAL_REF = re.compile(r"^(?:vault|op|env|secret|ssm|awssm|gcpsm|azkv|file)(?::|://)", re.I)
_SECRET_PATH = re.compile(r"^/(?:run|var/run)/secrets/")
_DOTTED_SECRET = re.compile(r"^secrets\.[A-Za-z_][A-Za-z0-9_]*$")
_FORMAT_FIELD = re.compile(r"^(?:\{[A-Za-z_][\w.\[\]'\"]*\}|%\([A-Za-z_]\w*\)s|%s)$")


def is_reference(value: str) -> bool:
    """A value that points at a secret instead of being one: ``{{ secrets.x }}``, ``${VAR}``,
    ``secrets.x``, ``/run/secrets/x``, ``vault:...``, a format field (``{password}``, ``%s``)."""
    v = value.strip()
    return bool(_JINJA.search(v) or _INTERP.search(v) or _EXTERNAL_REF.match(v)
                or _SECRET_PATH.match(v) or _DOTTED_SECRET.match(v) or _FORMAT_FIELD.match(v))


_WEAK = frozenset({
    "postgres", "postgresql", "minioadmin", "minio", "admin", "administrator", "root", "toor",
    "changeme", "change_me", "change-me", "changeit", "change_it", "changeme123",
    "changeme_in_production", "change_me_in_production", "changemeinproduction",
    "password", "passw0rd", "p@ssw0rd", "p@ssword", "password1", "password123", "pass", "pwd",
    "secret", "secretkey", "secret_key", "secret-key", "supersecret", "mysecret", "mypassword",
    "sk-litellm", "sk-1234", "sk-12345", "sk-test", "sk-xxx", "dummy", "dummy-key", "dummy_key",
    "dummykey", "your-secret-key-here", "your_secret_key_here", "your-secret-key", "your_secret_key",
    "yoursecretkey", "test", "testing", "test123", "example", "default", "guest", "letmein",
    "qwerty", "123456", "1234567", "12345678", "123456789", "1234", "12345", "0000", "redis",
    "elastic", "changeme!", "n8n", "grafana", "kibana", "qdrant", "litellm", "foobar", "foo",
    "bar", "null", "none", "nil", "xxx", "todo", "fixme", "tbd", "placeholder", "insecure",
    "notsecret", "not-secret", "not_secret", "replaceme", "replace_me", "replace-me", "secret123",
    "admin123", "admin1234", "adminadmin", "token", "apikey", "api_key", "api-key", "key",
})
_WEAK_PATTERNS = (
    re.compile(r"change[-_ .]?me", re.I),
    re.compile(r"replace[-_ .]?(?:me|this)", re.I),
    re.compile(r"^(?:your|my|insert|enter|put)[-_ .]?.*(?:key|secret|password|token|here)$", re.I),
    re.compile(r"[-_ .]here$", re.I),
    re.compile(r"^<[^>]*>$"),
    re.compile(r"^\[[^\]]*\]$"),
    re.compile(r"^(?:x{3,}|\*{3,}|\.{3,}|0{4,}|1{4,})$", re.I),
    re.compile(r"^sk-(?:litellm|test|dummy|fake|xxx+|1234)[\w-]{0,12}$", re.I),
    re.compile(r"^(?:dummy|fake|sample|example|test|default|demo)[-_ .]?(?:key|secret|token|"
               r"password|pass|pwd|value|api[-_]?key)?\d*$", re.I),
)


def unquote(value: str) -> str:
    v = value.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        return v[1:-1]
    return v


def weak_reason(value: object) -> str | None:
    """Why ``value`` is a weak or placeholder secret, or None when it is not."""
    if isinstance(value, bool) or value is None:
        return None
    v = unquote(str(value))
    if v == "":
        return "empty value"
    low = v.lower()
    if low in _WEAK:
        return "well-known default or weak value"
    if any(p.search(v) for p in _WEAK_PATTERNS):
        return "placeholder value"
    return None


# -- interpolation and templating inside a value ------------------------------------------------
_FALLBACK = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-)([^}]*)\}")
_JINJA_EXPR = re.compile(r"\{\{(.*?)\}\}", re.S)
_JINJA_DEFAULT = re.compile(r"\|\s*(?:default|d)\s*(?:\(|$|\s|\|)")
_JINJA_SECRET = re.compile(r"\bsecrets\s*(?:\.|\[)")


def fallback_defaults(value: str, key: object = None) -> list[str]:
    """Variables given a fallback (``${VAR:-x}`` / ``${VAR-x}``) where the variable or the key
    holding the value is secret-like; ``${VAR:?msg}`` (fail when unset) is fine."""
    out = []
    for m in _FALLBACK.finditer(value):
        if is_secret_key(m.group(1)) or is_secret_key(key):
            out.append(m.group(1))
    return out


def jinja_secret_defaults(value: str, key: object = None) -> bool:
    """Does a ``{{ ... | default(...) }}`` give a secret a fallback?"""
    for m in _JINJA_EXPR.finditer(value):
        expr = m.group(1)
        if _JINJA_DEFAULT.search(expr) and (_JINJA_SECRET.search(expr) or is_secret_key(key)):
            return True
    return False


def resolve_default(value: str) -> str | None:
    """The value Compose would use if no variable were set; None if it depends on one."""
    out = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", value)
    return None if "$" in out.replace("$$", "") else out


# -- URLs with credentials ----------------------------------------------------------------------
_URL_CREDS = re.compile(r"\b([a-z][a-z0-9+.-]*)://([^\s:/@]*):([^\s@/]+)@", re.I)


def url_passwords(value: str) -> list[str]:
    """Passwords written into ``scheme://user:password@host`` URLs in ``value``."""
    return [m.group(3) for m in _URL_CREDS.finditer(value)]


# -- key material -------------------------------------------------------------------------------
PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_PROVIDER_TOKENS = (
    ("Hugging Face", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
    ("GitHub", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b")),
    ("GitLab", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b")),
    ("AWS", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("OpenAI-style", re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{32,}\b")),
    ("Slack", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b")),
    ("Google", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
)


def provider_tokens(text: str) -> list[tuple[str, str]]:
    """(provider, token) for each token in a provider's known format."""
    return [(name, m.group(0)) for name, rx in _PROVIDER_TOKENS for m in rx.finditer(text)]


_CANDIDATE = re.compile(r"[A-Za-z0-9+/_-]{20,}={0,2}")
_WORDISH = re.compile(r"^(?:[A-Z0-9]+|[a-z0-9]+|[A-Z][a-z0-9]+)$")
_DIGEST_BEFORE = re.compile(r"(?:sha1|sha224|sha256|sha384|sha512|md5|blake2b?)[:=-]$", re.I)
_HEX = re.compile(r"[0-9a-fA-F]+")


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def high_entropy_strings(text: str) -> list[str]:
    """Substrings that look like random secrets: long hex, or long mixed-case alphanumerics
    with digits and a near-random character distribution. Digests (``sha256:<hex>``,
    ``image@sha256:...``) are checksums, not secrets, and are skipped."""
    out = []
    for m in _CANDIDATE.finditer(text):
        tok = m.group(0).strip("=-_/")
        if len(tok) < 20 or _DIGEST_BEFORE.search(text[:m.start()]):
            continue
        if "/" in tok and not re.search(r"[+=]", tok) and tok.count("/") >= 2:
            continue  # a path
        if _HEX.fullmatch(tok):
            if len(tok) >= 32 and entropy(tok) >= 3.0:
                out.append(tok)
            continue
        if not (re.search(r"\d", tok) and re.search(r"[a-z]", tok) and re.search(r"[A-Z]", tok)):
            continue
        if all(_WORDISH.match(part) for part in re.split(r"[_-]+", tok) if part):
            continue  # an identifier made of words (LS_JAVA_OPTS, Xms512m-Xmx512m)
        # Random text of length n over ~62 symbols approaches log2(n) bits/char; words do not.
        if entropy(tok) >= min(4.0, 0.85 * math.log2(len(tok))):
            out.append(tok)
    return out


# -- images and ports ---------------------------------------------------------------------------
FLOATING_TAGS = frozenset({"latest", "main", "master", "edge", "nightly", "dev", "develop",
                           "stable", "head", "rolling", "current", "beta", "canary", "unstable"})


def unpinned_tag(image: str) -> str | None:
    """``'none'``/``'latest'``/... when ``image`` is not pinned, None when it is (a release tag
    or a digest) or when it cannot be judged (it depends on a variable)."""
    resolved = resolve_default(image.strip())
    if resolved is None or not resolved:
        return None
    if "@" in resolved:  # name@sha256:digest
        return None
    last = resolved.rsplit("/", 1)[-1]
    if ":" not in last:
        return "none"
    tag = last.rsplit(":", 1)[1]
    return tag if tag.lower() in FLOATING_TAGS or not tag else None


# Container ports of databases, caches, vector stores and object storage.
DATASTORE_PORTS: dict[int, str] = {
    5432: "PostgreSQL", 3306: "MySQL", 1433: "SQL Server", 27017: "MongoDB", 6379: "Redis",
    11211: "Memcached", 6333: "Qdrant", 6334: "Qdrant gRPC", 9000: "MinIO", 9001: "MinIO console",
    9200: "Elasticsearch", 9300: "Elasticsearch transport", 5672: "RabbitMQ", 8529: "ArangoDB",
    7687: "Neo4j", 9042: "Cassandra", 8086: "InfluxDB", 19530: "Milvus", 8123: "ClickHouse",
}
PUBLIC_ADDRESSES = frozenset({"", "0.0.0.0", "::", "[::]", "*"})


# -- masking what the stack logs ----------------------------------------------------------------
# Shapes of a secret inside a log line, each with the group ``secret`` that is replaced by the
# mask (the rest of the match stays readable). Logstash's ruby filter is generated from these
# (schema/logging.py), so Python and Ruby mask alike; the regexes use only syntax both share.
_LOG_SECRET_KEY = (r"[A-Za-z0-9_.-]*(?:password|passwd|passphrase|secret|api[_-]?key|access[_-]?key|"
                   r"private[_-]?key|token|credentials?)")
LOG_MASKING_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    *((f"{name} token", re.compile(f"(?P<secret>{rx.pattern})")) for name, rx in _PROVIDER_TOKENS),
    ("URL password", re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@]*:(?P<secret>[^\s@/]+)@", re.I)),
    ("authorization header", re.compile(
        r"\b(?:proxy-)?authorization\s*[=:]\s*(?:(?:bearer|basic|token|apikey)\s+)?"
        r"(?P<secret>[A-Za-z0-9+/=._~-]{6,})", re.I)),
    ("bearer token", re.compile(r"\bbearer\s+(?P<secret>[A-Za-z0-9+/=._~-]{8,})", re.I)),
    ("secret-like key", re.compile(
        r"\b" + _LOG_SECRET_KEY + r"[\"']?\s*[=:]\s*[\"']?(?P<secret>[^\s\"',;&*][^\s\"',;&]*)", re.I)),
    ("private key", re.compile(r"(?P<secret>-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*)")),
)


def mask_log_line(text: str, mask: str = "********") -> str:
    """``text`` with every `LOG_MASKING_PATTERNS` secret replaced by ``mask``."""
    for _name, rx in LOG_MASKING_PATTERNS:
        text = rx.sub(lambda m: m.group(0)[:m.start("secret") - m.start()] + mask
                      + m.group(0)[m.end("secret") - m.start():], text)
    return text
