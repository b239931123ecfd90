"""A parser for Logstash's pipeline configuration language (LSCL), for the tests.

It follows the grammar of Logstash 9.x (logstash-core/lib/logstash/compiler/lscl/
lscl_grammar.treetop): sections ``input``/``filter``/``output``, plugins ``name { attr => value }``
separated by whitespace, values that are plugins, barewords, strings (double or single quoted,
where ``\\"`` does not end the string), numbers, arrays and hashes, and ``#`` comments.
Conditionals (``if``) are not used by mmstack's pipeline and are refused here. Raises
`LsclError` with the offset of the first thing the grammar does not accept.
"""

from __future__ import annotations

import re
from typing import Any


class LsclError(ValueError):
    pass


_WS = re.compile(r"(?:[ \t\r\n]+|#[^\r\n]*(?:\r?\n|$))*")
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_BAREWORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]+")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]*)?")
_DQ = re.compile(r'"((?:\\.|[^\\"])*)"', re.S)
_SQ = re.compile(r"'((?:\\.|[^\\'])*)'", re.S)


class _P:
    def __init__(self, text: str) -> None:
        self.t, self.i = text, 0

    def fail(self, what: str) -> LsclError:
        line = self.t.count("\n", 0, self.i) + 1
        return LsclError(f"line {line}: expected {what} at {self.t[self.i:self.i + 30]!r}")

    def cs(self) -> None:
        self.i = _WS.match(self.t, self.i).end()

    def lit(self, s: str) -> bool:
        if self.t.startswith(s, self.i):
            self.i += len(s)
            return True
        return False

    def rx(self, r: re.Pattern[str]) -> re.Match[str] | None:
        m = r.match(self.t, self.i)
        if m:
            self.i = m.end()
        return m

    def config(self) -> list[tuple[str, list[Any]]]:
        out = []
        self.cs()
        while self.i < len(self.t):
            m = re.compile(r"input|filter|output").match(self.t, self.i)
            if not m:
                raise self.fail("input, filter or output")
            self.i = m.end()
            self.cs()
            if not self.lit("{"):
                raise self.fail("{")
            self.cs()
            plugins = []
            while not self.lit("}"):
                if self.t.startswith("if", self.i) and not _NAME.match(self.t, self.i).group() != "if":
                    raise self.fail("a plugin (conditionals are not supported here)")
                plugins.append(self.plugin())
                self.cs()
            out.append((m.group(), plugins))
            self.cs()
        return out

    def plugin(self) -> tuple[str, list[tuple[str, Any]]]:
        name = self.name()
        self.cs()
        if not self.lit("{"):
            raise self.fail("{ after plugin name")
        self.cs()
        attrs: list[tuple[str, Any]] = []
        while not self.lit("}"):
            if attrs and not self.t[self.i - 1].isspace() and not self.t[self.i - 1] in "\"']}":
                raise self.fail("whitespace between attributes")
            key = self.name()
            self.cs()
            if not self.lit("=>"):
                raise self.fail("=>")
            self.cs()
            attrs.append((key, self.value()))
            self.cs()
        return name, attrs

    def name(self) -> str:
        m = self.rx(_NAME)
        if m:
            return m.group()
        s = self.string()
        if s is None:
            raise self.fail("a name")
        return s

    def string(self) -> str | None:
        m = self.rx(_DQ) or self.rx(_SQ)
        return m.group(1) if m else None

    def value(self) -> Any:
        start = self.i
        if self.lit("["):
            items = []
            self.cs()
            while not self.lit("]"):
                if items:
                    if not self.lit(","):
                        raise self.fail(", or ]")
                    self.cs()
                items.append(self.value())
                self.cs()
            return items
        if self.lit("{"):
            entries = {}
            self.cs()
            while not self.lit("}"):
                key = self.string()
                if key is None:
                    m = self.rx(_NUMBER) or self.rx(_BAREWORD)
                    if not m:
                        raise self.fail("a hash key")
                    key = m.group()
                self.cs()
                if not self.lit("=>"):
                    raise self.fail("=> in a hash")
                self.cs()
                entries[key] = self.value()
                self.cs()
            return entries
        s = self.string()
        if s is not None:
            return s
        m = self.rx(_NUMBER)
        if m:
            return float(m.group()) if "." in m.group() else int(m.group())
        m = self.rx(_BAREWORD)
        if m:
            self.cs()
            if self.t.startswith("{", self.i):  # a plugin as a value (codec => json { ... })
                self.i = start
                return self.plugin()
            return m.group()
        raise self.fail("a value")


def parse(text: str) -> list[tuple[str, list[Any]]]:
    """[(section, [(plugin, [(attribute, value), ...]), ...]), ...]"""
    return _P(text).config()
