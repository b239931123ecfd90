"""GPU facts from ONE remote command: every nvidia-smi query of `smi.SMI_COMMANDS` batched.

Over SSH each command costs a round trip (a channel, an exec, the exit status), and a host
without GPUs answers each with the same "not found"; so remote hosts are asked everything at
once. The command is a constant POSIX shell line; its output is split by a pure parser
(`parse_smi_batch`) into the same `SmiOutput`s the one-by-one runner collects, and
`smi.facts_from_outputs` makes the facts from them exactly as it does for that runner.
"""

from __future__ import annotations

import re
from typing import Any

from .facts import GpuFacts, cpu_only
from .smi import SMI_COMMANDS, SmiOutput, classify_smi_failure, facts_from_outputs

SMI_BATCH_MARK = "@@mmstack-smi@@"


def _batch_command() -> str:
    # `s NAME CMD...` prints a start marker on stdout and on stderr, runs CMD (stdin closed),
    # then an end marker with the exit status on a line of its own (after a newline, so output
    # without a trailing newline still splits exactly). The `||` fallbacks are the ones
    # `smi.gather_via_smi` makes; `facts_from_outputs` decides which answers count, as it does there.
    mark = SMI_BATCH_MARK
    c = SMI_COMMANDS
    return (
        f"s() {{ n=$1; shift; printf '%s %s\\n' {mark} \"$n\"; printf '%s %s\\n' {mark} \"$n\" >&2; "
        f"\"$@\" </dev/null; r=$?; printf '\\n%s end %s %s\\n' {mark} \"$n\" \"$r\"; return $r; }}; "
        f"s query {c['query']} || s query_old {c['query_old']}; "
        f"s table {c['table']} || s list {c['list']}; "
        f"s topo {c['topo']}; s nvlink {c['nvlink']}; s apps {c['apps']}; exit 0"
    )


# One command line, constant (nothing user-supplied reaches the shell): a POSIX shell function
# around the `SMI_COMMANDS`, so a host answers every GPU question in one SSH round trip.
CMD_SMI_BATCH = _batch_command()
_BATCH_SECTION_RE = re.compile(
    rf"^{SMI_BATCH_MARK} (\w+)\n(.*?)\n{SMI_BATCH_MARK} end \1 (\d+)$", re.S | re.M)
_BATCH_ERR_RE = re.compile(rf"^{SMI_BATCH_MARK} (\w+)$", re.M)


def parse_smi_batch(stdout: str, stderr: str = "") -> dict[str, SmiOutput]:
    """Pure: split `CMD_SMI_BATCH`'s output into each command's `SmiOutput` (by name).

    A command the shell did not reach (a ``||`` fallback that was not needed) is absent.
    """
    errs: dict[str, str] = {}
    parts = _BATCH_ERR_RE.split(stderr)
    for name, body in zip(parts[1::2], parts[2::2]):
        errs[name] = body[1:] if body.startswith("\n") else body
    return {m.group(1): SmiOutput(m.group(3) == "0", m.group(2), errs.get(m.group(1), ""))
            for m in _BATCH_SECTION_RE.finditer(stdout)}


def gather_via_smi_batch(c: Any) -> GpuFacts:
    """GPU facts from ONE command through ``c`` (a Fabric Connection, usually): every
    nvidia-smi query batched by `CMD_SMI_BATCH`, split by `parse_smi_batch`, decided by
    `facts_from_outputs` exactly as `smi.gather_via_smi` decides."""
    return facts_from_batch(c.run(CMD_SMI_BATCH, hide=True, warn=True, in_stream=False))


def facts_from_batch(result: Any) -> GpuFacts:
    """Pure: the facts from `CMD_SMI_BATCH`'s result (``stdout``, ``stderr``, ``exited``), however
    it was run (`gather_via_smi_batch`, or sent ahead in a deploy's host shell)."""
    outputs = parse_smi_batch(result.stdout or "", result.stderr or "")
    if not outputs:
        # No section at all: the shell itself failed; say what it printed.
        text = (result.stderr or result.stdout or "").strip()
        return cpu_only(classify_smi_failure(text or f"exit {result.exited}"), source="smi")
    return facts_from_outputs(outputs)
