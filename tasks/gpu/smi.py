"""GPU facts from nvidia-smi: no Python bindings needed on the host.

Used for remote hosts (a Fabric Connection runs the same commands) and where NVML fails. Here
are the exact command lines, `facts_from_smi` / `facts_from_outputs` (pure: whatever answered,
made into `GpuFacts`) and `gather_via_smi`, which runs the commands one by one; the parsing of
each output is `smiparse`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .facts import Gpu, GpuFacts, Nic, TopoLink, cpu_only, normalize_bus_id
from .smiparse import parse_nvlink_status, parse_query_csv, parse_smi_table, parse_topo

# The exact command lines (constants: nothing user-supplied reaches the shell).
QUERY_FIELDS = ("index,uuid,name,pci.bus_id,memory.total,memory.used,display_active,"
                "compute_cap,driver_version")
# compute_cap appeared in driver 510; older drivers reject the whole query, so retry without it.
QUERY_FIELDS_OLD = "index,uuid,name,pci.bus_id,memory.total,memory.used,display_active,driver_version"
CMD_QUERY = f"nvidia-smi --query-gpu={QUERY_FIELDS} --format=csv"
CMD_QUERY_OLD = f"nvidia-smi --query-gpu={QUERY_FIELDS_OLD} --format=csv"
CMD_APPS = "nvidia-smi --query-compute-apps=gpu_uuid,pid,used_memory --format=csv"
CMD_TOPO = "nvidia-smi topo -m"
CMD_NVLINK = "nvidia-smi nvlink --status"
CMD_TABLE = "nvidia-smi"
CMD_LIST = "nvidia-smi -L"


def facts_from_smi(query_csv: str | None, topo_text: str | None = None,
                   nvlink_text: str | None = None, table_text: str | None = None,
                   apps_csv: str | None = None, list_text: str | None = None) -> GpuFacts:
    """Pure: combine the outputs of the commands above into `GpuFacts` (source "smi")."""
    warnings: list[str] = []
    table = parse_smi_table(table_text) if table_text else None
    rows = parse_query_csv(query_csv) if query_csv else []
    gpus: list[Gpu] = []
    for row in rows:
        idx = int(row.get("index") or len(gpus))
        gpus.append(Gpu(
            index=idx,
            name=row.get("name") or f"GPU{idx}",
            uuid=row.get("uuid"),
            pci_bus_id=normalize_bus_id(row.get("pci.bus_id")),
            memory_total_mib=_int(row.get("memory.total")),
            memory_used_mib=_int(row.get("memory.used")),
            compute_capability=row.get("compute_cap"),
            display_active=_onoff(row.get("display_active")),
        ))
    if not gpus and table:
        # The query failed but the table did not: take what the table shows.
        for t in table.gpus:
            gpus.append(Gpu(index=t["index"], name=t["name"], pci_bus_id=t["pci_bus_id"],
                            memory_total_mib=t.get("memory_total_mib"),
                            memory_used_mib=t.get("memory_used_mib"),
                            display_active=t.get("display_active")))
        if gpus:
            warnings.append("GPU list taken from the nvidia-smi table (the CSV query failed)")
    if not gpus:
        # Last resort: `nvidia-smi -L` (or the nvlink status) names each GPU and its UUID.
        for status in parse_nvlink_status(list_text or nvlink_text or ""):
            gpus.append(Gpu(index=status.index, name=status.name, uuid=status.uuid))
        if gpus:
            warnings.append("only GPU names and UUIDs are known (the CSV query and the table failed)")
    driver = next((r.get("driver_version") for r in rows if r.get("driver_version")), None)
    cuda = None
    if table:
        driver = driver or table.driver_version
        cuda = table.cuda_version
    if not gpus:
        return cpu_only("nvidia-smi lists no GPU", source="smi", warnings=warnings,
                        driver_version=driver)

    by_index = {g.index: g for g in gpus}
    if apps_csv is not None:
        counts: dict[str, int] = {}
        for app in parse_query_csv(apps_csv):
            if app.get("gpu_uuid"):
                counts[app["gpu_uuid"]] = counts.get(app["gpu_uuid"], 0) + 1  # type: ignore[index]
        for g in gpus:
            g.processes = counts.get(g.uuid or "", 0)
    elif table and table.processes is not None:
        for g in gpus:
            g.processes = table.processes.get(g.index, 0)

    if nvlink_text:
        for status in parse_nvlink_status(nvlink_text):
            g = by_index.get(status.index)
            if g is not None:
                g.nvlinks = status.links
                g.uuid = g.uuid or status.uuid
    else:
        warnings.append("no `nvidia-smi nvlink --status` output: per-link states unknown")

    topology: list[TopoLink] = []
    nics: list[Nic] = []
    if topo_text:
        topo = parse_topo(topo_text)
        topology = [t for t in topo.links if t.a in by_index and t.b in by_index]
        nics = topo.nics
        for idx, cols in topo.affinity.items():
            g = by_index.get(idx)
            if g is not None:
                g.cpu_affinity = cols.get("CPU Affinity")
                g.numa_affinity = cols.get("NUMA Affinity")
    if len(gpus) > 1 and not topology:
        warnings.append("no `nvidia-smi topo -m` output: GPU-to-GPU links unknown")
    return GpuFacts(source="smi", gpus=sorted(gpus, key=lambda g: g.index), topology=topology,
                    driver_version=driver, cuda_version=cuda, nics=nics, warnings=warnings)


def _int(v: str | None) -> int | None:
    try:
        return None if v is None else int(float(v))
    except ValueError:
        return None


def _onoff(v: str | None) -> bool | None:
    if v is None:
        return None
    return v.strip().lower() in ("enabled", "on", "yes", "1", "true")


@dataclass(frozen=True)
class SmiOutput:
    """What one nvidia-smi invocation printed, and whether it exited 0."""

    ok: bool
    stdout: str = ""
    stderr: str = ""


# Each invocation's name in `facts_from_outputs` and in the batched command's section markers.
SMI_COMMANDS: dict[str, str] = {
    "query": CMD_QUERY, "query_old": CMD_QUERY_OLD, "table": CMD_TABLE, "list": CMD_LIST,
    "topo": CMD_TOPO, "nvlink": CMD_NVLINK, "apps": CMD_APPS,
}


def _needs_old_query(query: SmiOutput) -> bool:
    # compute_cap appeared in driver 510; an older one rejects the whole query naming it.
    return not query.ok and "compute_cap" in (query.stdout + query.stderr)


def _query_result(outputs: Mapping[str, SmiOutput]) -> SmiOutput:
    query = outputs.get("query") or SmiOutput(False, "", "nvidia-smi did not run")
    if _needs_old_query(query) and "query_old" in outputs:
        return outputs["query_old"]
    return query


def _no_driver(reason: str) -> bool:
    return reason.startswith(("nvidia-smi not found", "the NVIDIA driver"))


def facts_from_outputs(outputs: Mapping[str, SmiOutput]) -> GpuFacts:
    """Pure: `GpuFacts` from the outputs of the `SMI_COMMANDS` that ran (keyed by name).

    Each command may have failed on its own (old drivers, restricted containers); whatever
    answered is used. Missing nvidia-smi or an unloaded driver is a CPU-only result with the
    reason, never an error.
    """
    query = _query_result(outputs)
    reason = classify_smi_failure(query.stdout + "\n" + query.stderr) if not query.ok else ""
    if not query.ok and _no_driver(reason):
        return cpu_only(reason, source="smi")
    failed = SmiOutput(False)
    table = outputs.get("table", failed)
    list_out = None
    if not query.ok and not table.ok:
        listed = outputs.get("list", failed)
        if not listed.ok or not listed.stdout.strip():
            return cpu_only(reason, source="smi")
        list_out = listed.stdout

    def text(name: str) -> str | None:
        out = outputs.get(name, failed)
        return out.stdout if out.ok else None

    return facts_from_smi(query.stdout if query.ok else None, text("topo"), text("nvlink"),
                          text("table"), text("apps"), list_text=list_out)


def gather_via_smi(c: Any) -> GpuFacts:
    """Run the nvidia-smi commands one by one through ``c`` (an invoke Context or a Fabric
    Connection), asking only what the answers so far leave open. Local detection uses this;
    over SSH, `smibatch.gather_via_smi_batch` asks everything in one remote command.
    """
    outputs: dict[str, SmiOutput] = {}

    def run(name: str) -> SmiOutput:
        result = c.run(SMI_COMMANDS[name], hide=True, warn=True, in_stream=False)
        outputs[name] = SmiOutput(bool(result.ok), result.stdout or "", result.stderr or "")
        return outputs[name]

    if _needs_old_query(run("query")):
        run("query_old")
    query = _query_result(outputs)
    if not query.ok and _no_driver(classify_smi_failure(query.stdout + "\n" + query.stderr)):
        return facts_from_outputs(outputs)
    if not run("table").ok and not query.ok:
        run("list")
    for name in ("topo", "nvlink", "apps"):
        run(name)
    return facts_from_outputs(outputs)


def classify_smi_failure(text: str) -> str:
    """A clear CPU-only reason from what a failed nvidia-smi printed."""
    low = text.lower()
    if "not found" in low and ("command" in low or "nvidia-smi" in low) or "no such file" in low:
        return "nvidia-smi not found (no NVIDIA driver installed)"
    if "couldn't communicate with the nvidia driver" in low or "driver not loaded" in low:
        return "the NVIDIA driver is not loaded (nvidia-smi cannot talk to it)"
    if "no devices were found" in low:
        return "the NVIDIA driver is loaded but no GPU was found"
    if "insufficient permissions" in low or "permission denied" in low:
        return "no permission to query the GPUs"
    tail = text.strip().splitlines()[-1:] or ["no output"]
    return f"nvidia-smi failed: {tail[0][:200]}"
