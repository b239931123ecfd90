"""Security: `validate-security` (the step `inv setup` runs is tasks/security/step.py).

Nothing heavy is imported at module load: the scanners (and rich, for a terminal table) are
imported inside the task, so `inv --list` stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from invoke import Collection, Context, Exit, task

from ..engine.errors import ConfigError
from ..engine.run import boundary, resolve, stack_dir_of
from ..engine.settings import defaults_for
from ..security.step import fail_on_severity

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
    threshold = fail_on_severity(resolve(fail_on, c, "security.fail_on"))
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


ns = Collection("security")
ns.add_task(validate_security, "validate-security")
ns.configure(defaults_for("security"))
