"""Scanners read anything they are pointed at: arbitrary text never makes them raise."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.security.scan import scan_env, scan_store, scan_template, scan_text, scan_yaml

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400)
_YAMLISH = st.lists(st.sampled_from([
    "services:", "  a:", "    image: x", "    ports:", "      - '5432:5432'", "      - target: 1",
    "    healthcheck: !reset null", "    ports: !override []", "PASSWORD=", "x: ${A:-b}",
    "<<: *a", "a: &a {b: 1}", "- [", "{{ secrets.x | default('y') }}", "-----BEGIN X-----",
    "secrets: {a: {value: b}}", "environments: {production: {settings: {bind_address: 0.0.0.0}}}",
    "stacks: {core: {services: [a]}}", "  - ", ":", "? a", "!!binary x", "\t",
]), max_size=12).map("\n".join)


@settings(max_examples=150, deadline=None)
@given(st.one_of(_TEXT, _YAMLISH))
def test_scanners_never_raise(text: str) -> None:
    for findings in (scan_env(text, "a.env"), scan_env(text, "a.env", generated=False),
                     scan_template(text, "a.env.j2"), scan_text(text, "a.txt"),
                     scan_yaml(text, "compose.production.yml"), scan_yaml(text, "schema.yaml"),
                     scan_store(text, "production.yaml")):
        for f in findings:
            assert f.line is None or f.line >= 1
