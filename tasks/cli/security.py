"""Security: `validate-security`, and the step `inv setup` runs before it writes anything.

Nothing heavy is imported at module load: the scanners (and rich, for a terminal table) are
imported inside the task, so `inv --list` stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from invoke import Collection, Context, Exit, task

from ..engine.errors import ConfigError
from ..engine.run import Run, boundary, config_value, resolve, stack_dir_of

DEFAULT_FAIL_ON = "high"


def _fail_on(value: object) -> str:
    from ..security.rules import SEVERITIES

    text = str(value).strip().lower()
    if text not in SEVERITIES:
        raise ConfigError(f"--fail-on {value!r} is not a severity", key_path="mmstack.security.fail_on",
                          fix=f"use one of: {', '.join(SEVERITIES)}", exit_code=2)
    return text


def _format(value: object) -> str:
    from ..security.output import FORMATS

    text = str(value).strip().lower()
    if text not in FORMATS:
        raise ConfigError(f"--format {value!r} is not a format", fix=f"use one of: {', '.join(FORMATS)}",
                          exit_code=2)
    return text


def _paths(values: Sequence[str], base: Path) -> list[Path]:
    out = []
    for value in values:
        p = Path(value).expanduser()
        p = p if p.is_absolute() else Path.cwd() / p
        if not p.exists() and (base / value).exists():
            p = base / value  # relative to the stack, as `inv` run elsewhere would mean it
        if not p.exists():
            raise ConfigError(f"--path {value}: no such file or directory",
                              fix="pass an existing file or directory", exit_code=2)
        out.append(p)
    return out


@task(iterable=["path"], help={
    "path": "also scan this file or directory (recursively); repeatable",
    "format": "table (default), json or sarif",
    "fail_on": "exit 1 when a finding is at or above this severity: info, low, medium, high "
               "(default), critical",
    "output": "write the report to this file instead of stdout",
    "env": "treat the --path files as belonging to this environment (production turns on "
           "the port and healthcheck rules)",
})
@boundary
def validate_security(c: Context, path: list[str] | None = None, format: str | None = None,
                      fail_on: str | None = None, output: str | None = None,
                      env: str | None = None) -> None:
    """Find hardcoded secrets, weak values and risky configuration (table, JSON or SARIF).

    Scans the schema, the env templates, the generated compose and env files, the secrets
    store, and every --path given.
    """
    from ..security.output import print_table, render, summary
    from ..security.rules import at_or_above
    from ..security.validate import scan_stack

    stack = stack_dir_of(c)
    threshold = _fail_on(resolve(fail_on, c, "security.fail_on", DEFAULT_FAIL_ON))
    fmt = _format(format or "table")
    extra = _paths(path or [], stack)
    hints = {p: env for p in extra} if env else None
    result = scan_stack(stack, extra, hints)
    findings = result.findings
    files = len(result.targets)
    if output:
        target = Path(output)
        try:
            target.write_text(render(findings, fmt, threshold, stack, files))
        except OSError as exc:
            raise ConfigError(f"--output {output}: cannot write ({exc.strerror})", exit_code=2) from None
        print(f"{fmt} report written to {output}: {summary(findings, threshold, files)}")
    elif fmt == "table":
        print_table(findings, threshold, files)
    else:
        print(render(findings, fmt, threshold, stack, files), end="")
    if at_or_above(findings, threshold):
        raise Exit(code=1)


def run_security_step(run: Run, extra_paths: Sequence[Path] = ()) -> None:
    """The `inv setup` step: one ``ok`` per scanned area, one ``failed`` per finding at or above
    ``mmstack.security.fail_on``. Findings never raise; the chain checks ``failed_any``."""
    from ..security.output import location
    from ..security.rules import at_or_above
    from ..security.validate import AREAS, scan_cache, scan_stack

    run.reporter.task("validate-security")
    threshold = _fail_on(config_value(run.c, "security.fail_on", DEFAULT_FAIL_ON))
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


ns = Collection("security")
ns.add_task(validate_security, "validate-security")
ns.configure({"mmstack": {"security": {"fail_on": DEFAULT_FAIL_ON}}})
