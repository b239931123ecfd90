"""Make one secret value from its schema rule, and check a stored value against that rule.

Every value is built only from characters that need no quoting anywhere a secret ends up: in a
URL's userinfo (``postgresql://user:PASSWORD@host``), a YAML scalar, a Compose file (where ``$``
starts an interpolation) and an env file. That is RFC 3986's "unreserved" set, and by default
only its letters and digits: ``-_.~`` are accepted from a rule's explicit ``alphabet`` or in a
value set by hand, never added by default.

Rule fields (see the ``secrets:`` block of the schema):

``kind``      ``password`` (default), ``token``, ``username``, ``hex``, or ``external``: a value
              only the user has (a Hugging Face token), never generated; `inv set-secret`
              stores it, and templates test ``secrets.NAME is defined``
``length``    total length *including* ``prefix`` (password, token, username)
``bytes``     random bytes of a ``hex`` secret (32 bytes -> 64 hex digits)
``prefix``    a fixed start some services require (LiteLLM keys start with ``sk-``)
``alphabet``  the characters of the random part (password, token)

Problems returned by `validate_secret_value` name the secret and the rule, never the value.
"""

from __future__ import annotations

import secrets as _secrets
import string
from typing import Any, Protocol

LETTERS_DIGITS = string.ascii_letters + string.digits
USERNAME_ALPHABET = string.ascii_lowercase + string.digits
HEX_DIGITS = "0123456789abcdef"
# RFC 3986 unreserved characters: the only ones a value may ever contain.
SAFE_CHARS = frozenset(LETTERS_DIGITS + "-_.~")
SAFE_DESCRIPTION = "A-Z a-z 0-9 - _ . ~"

DEFAULT_LENGTH = {"password": 32, "token": 40, "username": 14}
KINDS = ("password", "token", "username", "hex", "external")
DEFAULT_HEX_BYTES = 32
# Minimum random characters in a generated value whatever the rule says (the schema validator
# enforces the same floor; this guards callers that build rules by hand).
MIN_RANDOM_CHARS = 8
# Names that attackers try first. Generation never produces them; a user may still choose one
# by writing it into the store (validation accepts it: setting it is an explicit decision).
WELL_KNOWN_USERS = frozenset({
    "admin", "administrator", "root", "postgres", "minioadmin", "minio", "elastic", "kibana",
    "grafana", "n8n", "user", "test", "guest", "default", "redis", "litellm",
})


class Rng(Protocol):
    """What generation needs from a random source (the `secrets` module, or a seeded stand-in)."""

    def choice(self, seq: str) -> str: ...


def kind_of(rule: dict[str, Any]) -> str:
    return str(rule.get("kind") or "password")


def is_external(rule: dict[str, Any]) -> bool:
    return kind_of(rule) == "external"


def is_user_kind(rule: dict[str, Any]) -> bool:
    return kind_of(rule) == "username"


def _alphabet(rule: dict[str, Any]) -> str:
    if is_user_kind(rule):
        return USERNAME_ALPHABET
    return str(rule.get("alphabet") or LETTERS_DIGITS)


def target_length(rule: dict[str, Any]) -> int:
    """Total length of a generated value (prefix included)."""
    kind = kind_of(rule)
    prefix = str(rule.get("prefix") or "")
    if kind == "hex":
        return len(prefix) + 2 * int(rule.get("bytes") or DEFAULT_HEX_BYTES)
    length = int(rule.get("length") or DEFAULT_LENGTH.get(kind, 32))
    return max(length, len(prefix) + MIN_RANDOM_CHARS)


def rule_problems(rule: dict[str, Any]) -> list[str]:
    """Why no safe value can be generated from ``rule`` (the schema's shape check lets these by)."""
    problems = []
    kind = kind_of(rule)
    if kind not in KINDS:
        problems.append(f"unknown kind {kind!r} (use one of: {', '.join(KINDS)})")
    prefix = str(rule.get("prefix") or "")
    if any(ch not in SAFE_CHARS for ch in prefix):
        problems.append(f"prefix may only use {SAFE_DESCRIPTION}")
    if kind in ("password", "token") and rule.get("alphabet"):
        alphabet = str(rule["alphabet"])
        if any(ch not in SAFE_CHARS for ch in alphabet):
            problems.append(f"alphabet may only use {SAFE_DESCRIPTION}")
        if len(set(alphabet)) < 10:
            problems.append("alphabet needs at least 10 different characters")
    return problems


def generate_secret(rule: dict[str, Any], rng: Any = _secrets) -> str:
    """A fresh value for ``rule``, drawn from ``rng`` (the CSPRNG in `secrets` unless a test
    passes a seeded stand-in with a ``choice`` method)."""
    kind = kind_of(rule)
    if kind not in KINDS:
        raise ValueError(f"unknown secret kind {kind!r}")
    if kind == "external":
        raise ValueError("an external secret is set by the user, never generated")
    prefix = str(rule.get("prefix") or "")
    if kind == "hex":
        nbytes = int(rule.get("bytes") or DEFAULT_HEX_BYTES)
        token_hex = getattr(rng, "token_hex", None)
        if callable(token_hex):
            return prefix + token_hex(nbytes)
        return prefix + "".join(rng.choice(HEX_DIGITS) for _ in range(2 * nbytes))
    alphabet = _alphabet(rule)
    unsafe = set(alphabet) - SAFE_CHARS
    if unsafe or len(set(alphabet)) < 10:
        # The schema validator rejects such rules; never emit an unsafe value regardless.
        raise ValueError("alphabet must hold at least 10 characters, all from " + SAFE_DESCRIPTION)
    count = target_length(rule) - len(prefix)
    while True:
        if kind == "username" and not prefix:
            # An unquoted database role must start with a letter.
            body = rng.choice(string.ascii_lowercase) + "".join(
                rng.choice(alphabet) for _ in range(count - 1))
        else:
            body = "".join(rng.choice(alphabet) for _ in range(count))
        value = prefix + body
        if kind != "username" or value not in WELL_KNOWN_USERS:
            return value


def validate_secret_value(name: str, rule: dict[str, Any], value: Any) -> list[str]:
    """Why ``value`` is not acceptable for secret ``name`` (empty when it is).

    Passwords, tokens and hex keys must meet their rule (prefix, minimum length, alphabet, exact
    key size). A user name only has to be safe and at least 3 characters (MinIO's minimum): its
    rule says how to *make* one, and a name the user set explicitly (even ``postgres``) is kept.
    Every value `generate_secret` makes for a rule passes this check for that rule.
    """
    if not isinstance(value, str):
        return [f"{name}: the stored value is not a string (quote it in the store)"]
    if not value:
        return [f"{name}: the stored value is empty"]
    problems: list[str] = []
    bad = {ch for ch in value if ch not in SAFE_CHARS}
    if bad:
        # Saying *which* characters would hint at the value; the class of problem is enough.
        problems.append(f"{name}: contains characters that are unsafe in URLs, YAML or Compose "
                        f"(allowed: {SAFE_DESCRIPTION})")
    kind = kind_of(rule)
    if kind == "external":
        return problems  # whatever the user's provider issued, as long as it is safe to render
    if kind == "username":
        if len(value) < 3:
            problems.append(f"{name}: a user name needs at least 3 characters")
        return problems
    prefix = str(rule.get("prefix") or "")
    if prefix and not value.startswith(prefix):
        problems.append(f"{name}: must start with {prefix!r}")
        return problems
    body = value[len(prefix):] if prefix else value
    if kind == "hex":
        want = 2 * int(rule.get("bytes") or DEFAULT_HEX_BYTES)
        if len(body) != want or any(ch not in HEX_DIGITS for ch in body):
            problems.append(f"{name}: must be exactly {want} lowercase hex digits "
                            f"({want // 2} bytes){' after the prefix' if prefix else ''}")
        return problems
    minimum = target_length(rule)
    if len(value) < minimum:
        problems.append(f"{name}: too short (needs at least {minimum} characters)")
    if rule.get("alphabet") and not bad:
        allowed = set(str(rule["alphabet"]))
        if any(ch not in allowed for ch in body):
            problems.append(f"{name}: uses characters outside the rule's alphabet")
    return problems
