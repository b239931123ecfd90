"""The security step of `inv setup` and `inv reset`: scan the stack, one item per area.

The scanners are imported inside the step, so loading this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..engine.errors import ConfigError
from ..engine.run import Run, config_value
from ..engine.settings import default

DEFAULT_FAIL_ON = default("security.fail_on")


def fail_on_severity(value: object) -> str:
    from .rules import SEVERITIES

    text = str(value).strip().lower()
    if text not in SEVERITIES:
        raise ConfigError(f"--fail-on {value!r} is not a severity", key_path="mmstack.security.fail_on",
                          fix=f"use one of: {', '.join(SEVERITIES)}", exit_code=2)
    return text


def run_security_step(run: Run, extra_paths: Sequence[Path] = ()) -> None:
    """The `inv setup` step: one ``ok`` per scanned area, one ``failed`` per finding at or above
    ``mmstack.security.fail_on``. Findings never raise; the chain checks ``failed_any``."""
    from .output import location
    from .rules import at_or_above
    from .validate import AREAS, scan_cache, scan_stack

    run.reporter.task("validate-security")
    threshold = fail_on_severity(config_value(run.c, "security.fail_on"))
    cache = scan_cache(run.state_dir, writable=not run.check)
    result = scan_stack(run.stack, extra_paths, cache=cache)
    cache.save()
    area_of = {t.display: t.area for t in result.targets}
    by_area: dict[str, list] = {}
    for f in result.findings:
        # A directory-level finding (`.mmstack/secrets` too open) belongs to the store's area.
        area = area_of.get(f.file) or ("secrets" if f.file.startswith(".mmstack/") else "extra")
        by_area.setdefault(area, []).append(f)
    areas = result.areas()
    for area, label in AREAS:
        targets = areas.get(area) or []
        if not targets:
            continue
        found = by_area.get(area, [])
        failing = at_or_above(found, threshold)
        for f in failing:
            run.reporter.failed(location(f), f"{f.rule_id} ({f.severity}) {f.message}; fix: {f.fix}")
        if not failing:
            note = f"{len(targets)} file(s)"
            if found:
                note += f", {len(found)} finding(s) below --fail-on {threshold} (see `inv validate-security`)"
            run.reporter.ok(label, note)
    if result.findings:
        run.add_output("security_findings", [f.to_dict() for f in result.findings])
