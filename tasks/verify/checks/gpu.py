"""vLLM on the planned GPUs: the devices Docker gave the container (``docker inspect``
HostConfig.DeviceRequests, what Compose's ``device_ids`` became) are the plan's UUIDs, and
peer-to-peer is in the planned state (the NCCL settings in the container's environment and
``--disable-custom-all-reduce`` on its command line exactly where the plan has them).

Only the NCCL lines of the container's environment leave the host (filtered there): the
rest of it holds vLLM's key."""

from __future__ import annotations

import json
import shlex
from typing import Any

from ..registry import CheckSkipped, check
from .common import fail

CUSTOM_ALL_REDUCE_OFF = "--disable-custom-all-reduce"


def _gpu_target(t: Any) -> None:
    if not t.environment.gpu or t.environment.vllm_device == "cpu":
        raise CheckSkipped(f"vLLM runs without a GPU in {t.env}")


def device_requests(t: Any, p: Any) -> list[dict[str, Any]]:
    done = p.docker(["inspect", "--format", "{{json .HostConfig.DeviceRequests}}", t.container("vllm")])
    if done.exited != 0:
        fail("cannot inspect vLLM's container", expected="docker inspect output", got=done.output[-200:],
             fix="see `inv status`")
    return json.loads(done.stdout or "null") or []


def granted(requests: list[dict[str, Any]]) -> tuple[list[str], int]:
    """Pure: (device IDs, count) of the GPU requests (count -1: every GPU)."""
    ids: list[str] = []
    count = 0
    for r in requests:
        caps = [c for group in r.get("Capabilities") or [] for c in group]
        if "gpu" not in caps and r.get("Driver") != "nvidia":
            continue
        ids += list(r.get("DeviceIDs") or [])
        count = -1 if r.get("Count") == -1 else count + int(r.get("Count") or 0)
    return ids, count


@check("vllm", "gpus", "vLLM runs on the cards the plan chose")
def vllm_gpus(t: Any, p: Any) -> str:
    _gpu_target(t)
    ids, count = granted(device_requests(t, p))
    planned = list((t.plan or {}).get("vllm_device_ids") or [])
    fix = (f"the compose overlay pins the plan's cards: `inv configure-gpu`, `inv setup --env {t.env}`, "
           f"then `inv start --env {t.env}` (which recreates vLLM)")
    if not planned:
        if count != -1:
            fail("vLLM has no GPU", expected="every GPU (no saved plan)", got=f"devices {ids or 'none'}", fix=fix)
        return "every GPU (no saved plan: `inv configure-gpu` pins them)"
    if sorted(ids) != sorted(planned) or count == -1:
        fail("vLLM runs on other cards than planned", expected=", ".join(planned),
             got="every GPU" if count == -1 else (", ".join(ids) or "no GPU"), fix=fix)
    return ", ".join(planned)


@check("vllm", "p2p", "peer-to-peer is in the planned state")
def vllm_p2p(t: Any, p: Any) -> str:
    _gpu_target(t)
    if not t.plan or not t.plan.get("vllm_device_ids"):
        raise CheckSkipped("no saved GPU plan (`inv configure-gpu`)")
    name = shlex.quote(t.container("vllm"))
    env = p.run(f"docker inspect --format '{{{{range .Config.Env}}}}{{{{println .}}}}{{{{end}}}}' {name} | grep '^NCCL_'")
    args = p.docker(["inspect", "--format", "{{json .Args}}", t.container("vllm")])
    seen = dict(line.split("=", 1) for line in env.stdout.splitlines() if "=" in line)
    wanted = dict(t.plan.get("nccl_env") or {})
    argv = json.loads(args.stdout or "[]") or []
    want_off = CUSTOM_ALL_REDUCE_OFF in (t.plan.get("vllm_args") or [])
    fix = f"`inv setup --env {t.env}` renders the plan's NCCL settings and vLLM's flags; then `inv start --env {t.env}`"
    if seen != wanted:
        fail("NCCL's peer-to-peer settings differ from the plan", expected=json.dumps(wanted, sort_keys=True),
             got=json.dumps(seen, sort_keys=True), fix=fix)
    if (CUSTOM_ALL_REDUCE_OFF in argv) != want_off:
        fail("vLLM's custom all-reduce differs from the plan",
             expected=f"{CUSTOM_ALL_REDUCE_OFF} {'set' if want_off else 'not set'}",
             got=f"{CUSTOM_ALL_REDUCE_OFF} {'set' if CUSTOM_ALL_REDUCE_OFF in argv else 'not set'}", fix=fix)
    mode = "on over " + str(t.plan.get("link")) if t.plan.get("p2p_enabled") else "off"
    return f"peer-to-peer {mode} ({', '.join(f'{k}={v}' for k, v in sorted(wanted.items())) or 'no NCCL settings'})"
