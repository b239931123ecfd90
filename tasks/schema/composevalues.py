"""Single values as Docker and Compose accept them: image references (distribution/reference,
the grammar `docker pull` and Compose parse images with), IP addresses; and the wording mmstack
uses about a near miss or a wrong type. Pure; composerules.py applies them to whole services."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

UNPINNED_TAGS = {"latest", "main", "master", "stable", "edge", "nightly", "dev"}

# distribution/reference (regexp.go), the grammar `docker pull` and Compose parse images with:
#   reference := name [ ":" tag ] [ "@" digest ]
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[(?:[a-fA-F0-9:]+)\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"


@lru_cache(maxsize=1)
def reference_re() -> re.Pattern[str]:
    """Compiled on first use: a run whose validation is cached never needs it."""
    return re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$", re.ASCII)


NAME_TOTAL_LENGTH_MAX = 255
# go-digest: the algorithms the engine knows, and the exact length of each one's hex encoding.
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
IMAGE_FIX = "write [registry/]name:tag or name@sha256:<64 hex digits>, e.g. postgres:17.12-trixie"


def image_problem(image: Any) -> tuple[str, str] | None:
    """Why Docker would refuse ``image`` (or why it is not pinned): ``(message, fix)`` or None."""
    if not isinstance(image, str) or not image.strip():
        return "an image reference must be a non-empty string", IMAGE_FIX
    match = reference_re().match(image)
    if not match:
        if reference_re().match(image.lower()):
            return (f"image {image!r}: the repository name must be lowercase (Docker refuses it)",
                    f"write {image.split(':')[0].lower()!r}")
        if image != image.strip() or " " in image:
            return f"image {image!r} contains spaces", "remove the spaces"
        return f"image {image!r} is not a valid image reference (Docker's reference grammar)", IMAGE_FIX
    name, tag, digest = match.groups()
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        return (f"image name is {len(name)} characters; Docker allows at most {NAME_TOTAL_LENGTH_MAX}",
                "shorten the repository name")
    if digest:
        algorithm, _, encoded = digest.partition(":")
        want = DIGEST_HEX_LENGTHS.get(algorithm)
        if want is None:
            return (f"image {image!r}: unknown digest algorithm {algorithm!r}",
                    "use sha256: followed by the 64 hex digits `docker buildx imagetools inspect` prints")
        if len(encoded) != want or encoded != encoded.lower():
            return (f"image {image!r}: a {algorithm} digest is {want} lowercase hex digits, "
                    f"this one has {len(encoded)}" + (" (uppercase)" if encoded != encoded.lower() else ""),
                    "copy the whole digest again (`docker buildx imagetools inspect IMAGE` prints it)")
        return None  # a digest pins the image, whatever the tag says
    if not tag:
        return f"image {image!r} has no tag", "pin a version, e.g. postgres:17.12-trixie"
    if tag.lower() in UNPINNED_TAGS:
        return f"image tag {tag!r} is not pinned", "pin a released version instead of a moving tag"
    return None


def ip_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"{value!r} is not an IP address (write it as a quoted string)"
    import ipaddress

    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not a valid IP address"
    return None


def suggest(word: Any, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss, else the empty string."""
    import difflib

    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def type_fix(value: Any, expected: str = "string") -> str:
    if isinstance(value, bool):
        return (f"quote the value: unquoted, YAML reads yes/no/on/off/true/false as a boolean, "
                f"and Compose wants a {expected} here (e.g. restart: \"no\")")
    return f"change the value to a {expected}"
