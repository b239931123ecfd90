#!/usr/bin/env bash
# Compare mmstack's GPU facts with nvidia-smi's own answers on a real GPU machine.
#
#   scripts/check-gpu.sh                  # uses `mmstack detect-gpu --json` (or `inv ...`)
#   scripts/check-gpu.sh --source smi     # passes --source to detect-gpu
#   MMSTACK_CMD="inv -r /srv/stack detect-gpu --json" scripts/check-gpu.sh
#
# Prints one line per mismatch (index, UUID, name, PCI bus id, total memory, GPU count and every
# GPU pair of `nvidia-smi topo -m`), then "N mismatches". Exits 1 when there is any.
set -euo pipefail

source_arg=()
if [[ $# -ge 2 && $1 == "--source" ]]; then
  source_arg=(--source "$2")
  shift 2
fi
if [[ $# -gt 0 ]]; then
  echo "usage: $0 [--source auto|nvml|smi]" >&2
  exit 2
fi

if [[ -n ${MMSTACK_CMD:-} ]]; then
  read -r -a detect <<<"$MMSTACK_CMD"
elif command -v mmstack >/dev/null 2>&1; then
  detect=(mmstack detect-gpu --json)
elif command -v inv >/dev/null 2>&1; then
  detect=(inv detect-gpu --json)
else
  echo "neither mmstack nor inv is on PATH (or set MMSTACK_CMD)" >&2
  exit 2
fi
python=${PYTHON:-python3}

workdir=$(mktemp -d)
trap 'rm -rf -- "$workdir"' EXIT

"${detect[@]}" "${source_arg[@]}" >"$workdir/facts.json"

smi_status=0
nvidia-smi --query-gpu=index,uuid,name,pci.bus_id,memory.total --format=csv,noheader,nounits \
  >"$workdir/query.csv" 2>"$workdir/query.err" || smi_status=$?
topo_status=0
nvidia-smi topo -m >"$workdir/topo.txt" 2>/dev/null || topo_status=$?

"$python" - "$workdir" "$smi_status" "$topo_status" <<'PY'
import itertools
import json
import re
import sys
from pathlib import Path

work, smi_status, topo_status = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
doc = json.loads((work / "facts.json").read_text())
facts = doc.get("facts", doc)
gpus = {g["index"]: g for g in facts.get("gpus", [])}
mismatches = []


def bus(value):
    m = re.match(r"^(?:([0-9A-Fa-f]+):)?([0-9A-Fa-f]{1,2}):([0-9A-Fa-f]{1,2})\.([0-9A-Fa-f])$", value.strip())
    if not m:
        return value.strip().upper()
    d, b, dev, fn = m.groups()
    return f"{int(d or '0', 16):08X}:{int(b, 16):02X}:{int(dev, 16):02X}.{fn.upper()}"


def mismatch(what, ours, theirs):
    mismatches.append(f"mismatch: {what}: mmstack={ours!r} nvidia-smi={theirs!r}")


if smi_status != 0:
    # No usable nvidia-smi: mmstack must agree that this host is CPU-only.
    if gpus:
        mismatch("GPU count", len(gpus), f"nvidia-smi failed (exit {smi_status})")
else:
    rows = [[c.strip() for c in line.split(",")]
            for line in (work / "query.csv").read_text().splitlines() if line.strip()]
    if len(rows) != len(gpus):
        mismatch("GPU count", len(gpus), len(rows))
    for index, uuid, name, bus_id, total in rows:
        g = gpus.get(int(index))
        if g is None:
            mismatch(f"GPU{index}", None, uuid)
            continue
        if g.get("uuid") != uuid:
            mismatch(f"GPU{index} uuid", g.get("uuid"), uuid)
        if g.get("name") != name:
            mismatch(f"GPU{index} name", g.get("name"), name)
        if bus(g.get("pci_bus_id") or "") != bus(bus_id):
            mismatch(f"GPU{index} pci.bus_id", g.get("pci_bus_id"), bus_id)
        if str(g.get("memory_total_mib")) != total:
            mismatch(f"GPU{index} memory.total MiB", g.get("memory_total_mib"), total)

if topo_status == 0 and len(gpus) > 1:
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", (work / "topo.txt").read_text())
    lines = text.splitlines()
    header = next((l.split() for l in lines if re.match(r"^\s+GPU0\b", l)), [])
    cols = [t for t in header if re.fullmatch(r"(GPU|NIC)\d+", t)]
    matrix = {}
    for line in lines:
        cells = line.split()
        if cells and re.fullmatch(r"GPU\d+", cells[0]):
            a = int(cells[0][3:])
            for col, cell in zip(cols, cells[1:]):
                if col.startswith("GPU") and col != cells[0]:
                    matrix[(a, int(col[3:]))] = "SYS" if cell == "SOC" else cell
    ours = {}
    for t in facts.get("topology", []):
        label = f"NV{t['nvlinks']}" if t["level"] == "NV" else t["level"]
        ours[(t["a"], t["b"])] = ours[(t["b"], t["a"])] = label
    for a, b in itertools.combinations(sorted(gpus), 2):
        theirs = matrix.get((a, b))
        if ours.get((a, b)) != theirs:
            mismatch(f"GPU{a}-GPU{b} topology", ours.get((a, b)), theirs)

for line in mismatches:
    print(line)
print(f"{len(mismatches)} mismatches")
sys.exit(1 if mismatches else 0)
PY
