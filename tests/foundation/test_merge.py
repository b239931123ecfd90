"""Deep merge: mappings merge, lists never replace silently, operators say what they mean."""

from __future__ import annotations

import pytest

from tasks.schema.merge import MergeError, merge, resolve_operators

CASES = [
    ("mapping merges key by key", {"a": 1, "b": {"c": 2}}, {"b": {"d": 3}}, {"a": 1, "b": {"c": 2, "d": 3}}),
    ("scalar replaces", {"a": 1}, {"a": 2}, {"a": 2}),
    ("append skips duplicates", {"n": ["x", "y"]}, {"n": {"$append": ["y", "z"]}}, {"n": ["x", "y", "z"]}),
    ("prepend", {"n": ["x"]}, {"n": {"$prepend": ["w"]}}, {"n": ["w", "x"]}),
    ("remove", {"n": ["x", "y"]}, {"n": {"$remove": ["x"]}}, {"n": ["y"]}),
    ("replace a list", {"n": ["x"]}, {"n": {"$replace": ["z"]}}, {"n": ["z"]}),
    ("replace a mapping", {"m": {"a": 1}}, {"m": {"$replace": {"b": 2}}}, {"m": {"b": 2}}),
    ("delete a key", {"a": 1, "b": 2}, {"b": {"$delete": True}}, {"a": 1}),
    ("append to nothing", {}, {"n": {"$append": ["x"]}}, {"n": ["x"]}),
    ("new list where none was", {}, {"n": ["x"]}, {"n": ["x"]}),
]


@pytest.mark.parametrize("name,base,override,expected", CASES, ids=[c[0] for c in CASES])
def test_merge(name: str, base: dict, override: dict, expected: dict) -> None:
    before = repr(base), repr(override)
    assert merge(base, override) == expected
    assert (repr(base), repr(override)) == before, "merge must not modify its inputs"


ERRORS = [
    ("list over list is ambiguous", {"n": ["x"]}, {"n": ["y"]}, ("n",), "silently replace"),
    ("unknown operator", {"n": ["x"]}, {"n": {"$extend": ["y"]}}, ("n",), "unknown or mixed"),
    ("operator mixed with keys", {"n": {}}, {"n": {"$append": [1], "a": 1}}, ("n",), "unknown or mixed"),
    ("append to a mapping", {"n": {"a": 1}}, {"n": {"$append": [1]}}, ("n",), "applies to a list"),
    ("mapping into a list", {"n": [1]}, {"n": {"a": 1}}, ("n",), "cannot merge a mapping"),
    ("delete takes true", {"n": 1}, {"n": {"$delete": "yes"}}, ("n",), "takes the value true"),
]


@pytest.mark.parametrize("name,base,override,path,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_merge_errors(name: str, base: dict, override: dict, path: tuple, message: str) -> None:
    with pytest.raises(MergeError) as info:
        merge(base, override)
    assert info.value.path == path
    assert message in info.value.message


def test_non_strict_lets_a_service_replace_a_default_list() -> None:
    assert merge({"n": ["backend"]}, {"n": ["frontend"]}, strict_lists=False) == {"n": ["frontend"]}


def test_resolve_operators_without_base() -> None:
    assert resolve_operators({"a": {"$append": [1]}, "b": [{"$replace": {"x": 1}}]}) == {"a": [1], "b": [{"x": 1}]}
