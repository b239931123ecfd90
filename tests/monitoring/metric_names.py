"""The metric names the scraped software really exports, read from its own source.

* vLLM 0.33.0: every ``self._gauge_cls / _counter_cls / _histogram_cls(name="vllm:...")`` in
  ``vllm/v1/metrics/`` of the pinned release's venv (tests/realapps/vllm-venv.sh), turned into the
  series names prometheus_client exposes: a counter ``X`` as ``X_total``, a histogram ``X`` as
  ``X_bucket``, ``X_sum`` and ``X_count``, a gauge as itself.
* The DCGM exporter 4.8.1: the fields of its default counters file, ``etc/default-counters.csv``
  at tag 4.5.2-4.8.1 (kept in fixtures/ as upstream has it: the image reads the same file from
  /etc/dcgm-exporter/), which it exports under the field's name.
* Prometheus itself synthesises ``up`` for every target.
"""

from __future__ import annotations

import ast
import re
import subprocess
from functools import lru_cache
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DCGM_COUNTERS = FIXTURES / "dcgm-exporter-4.5.2-4.8.1-default-counters.csv"
PROMETHEUS_SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
_KIND_OF = {"_gauge_cls": "gauge", "_counter_cls": "counter", "_histogram_cls": "histogram"}


def vllm_source_dir(python: str) -> Path:
    """The installed vllm package of ``python`` (found without importing it)."""
    proc = subprocess.run([python, "-c", "import importlib.util as u; print(u.find_spec('vllm').origin)"],
                          capture_output=True, text=True, timeout=60, check=True)
    return Path(proc.stdout.strip()).parent


def declared_vllm_metrics(metrics_dir: Path) -> dict[str, str]:
    """``vllm:name`` -> gauge | counter | histogram, as vLLM's loggers declare them."""
    out: dict[str, str] = {}
    for path in sorted(metrics_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            kind = _KIND_OF.get(node.func.attr)
            for kw in node.keywords:
                if kind and kw.arg == "name" and isinstance(kw.value, ast.Constant) \
                        and str(kw.value.value).startswith("vllm:"):
                    out[str(kw.value.value)] = kind
    return out


def exposed_series(declared: dict[str, str]) -> set[str]:
    out: set[str] = set()
    for name, kind in declared.items():
        if kind == "counter":
            out.add(name.removesuffix("_total") + "_total")
        elif kind == "histogram":
            out |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            out.add(name)
    return out


@lru_cache(maxsize=1)
def dcgm_default_fields() -> frozenset[str]:
    fields = set()
    for line in DCGM_COUNTERS.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            field, kind = (p.strip() for p in line.split(",")[:2])
            if kind != "label":  # labels ride on the other series, not series of their own
                fields.add(field)
    return frozenset(fields)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset({"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                       "group_right", "offset", "bool", "inf", "nan"})


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels and keywords dropped)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for m in _IDENT.finditer(text):
        rest = text[m.end():].lstrip()
        word = m.group(0)
        if rest.startswith("(") or word.lower() in _KEYWORDS or word.startswith("$"):
            continue
        if text[:m.start()].endswith("$"):
            continue  # a Grafana variable ($__rate_interval)
        names.add(word)
    return names
