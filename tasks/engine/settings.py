"""Every option's built-in default, in one place.

Each Invoke collection configures its own section from here (``ns.configure(defaults_for(...))``),
and `config_value` falls back to the same table when a key is missing or None, so a task run
through another collection (``deploy`` reading ``stack.wait_timeout``) or called directly gets
the same value. No call site carries a literal default of its own.

Precedence, resolved once at the task edge: task argument > Invoke config (``mmstack.*``: a
config file, ``INVOKE_MMSTACK_*``) > this table.
"""

from __future__ import annotations

import copy
from typing import Any

DEFAULTS: dict[str, Any] = {
    "stack_dir": None,         # else $MMSTACK_DIR, else the current directory
    "verbose": False,
    "environment": None,       # `inv start` without --env: the schema's first environment
    "compose_command": None,   # else the `docker compose` plugin, else a docker-compose v2
    # A float so INVOKE_MMSTACK_LOCK_TIMEOUT=0.5 casts cleanly.
    "lock_timeout": 10.0,
    "stack": {
        "wait_timeout": 300,
        "stop_timeout": 10,
        "wipe_stop_timeout": 2,
        "backup_dir": "backups",
        "backup_image": None,
    },
    "remote": {"inventory": None, "forks": None, "compose_command": None},
    "secrets": {"key_env": "MMSTACK_SECRETS_KEY", "key_file": None},
    "security": {"fail_on": "high"},
    "verify": {
        "after_start": True,    # `inv start-*` and `inv deploy` verify at their end (--no-verify: not)
        "timeout": 30,          # seconds per request a check makes
        "log_indices": None,    # Elasticsearch index patterns of the stack's logs (None: logs-*,logstash-*)
    },
    "gpu": {
        "source": "auto",
        "p2p": "auto",
        "tensor_parallel": None,
        "pipeline_parallel": None,
        "memory_utilization": None,
        "max_model_len": None,
        "gpus": None,
        # The served model's sizes come from the schema's models: (model_weights_gib,
        # kv_bytes_per_token, max_model_len_cap and attention_heads may still be set here), and
        # the planner's tuning (min_concurrent_seqs, busy_fraction, ...) has its defaults beside
        # the model they tune (gpu/overrides.py PlanOverrides): set any of them here to override.
    },
}


def default(key: str) -> Any:
    """The built-in default of ``mmstack.<key>`` (dotted), or None for a key without one."""
    node: Any = DEFAULTS
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return copy.deepcopy(node)


def defaults_for(*keys: str) -> dict[str, Any]:
    """``{"mmstack": {key: default, ...}}`` for a collection's ``ns.configure``."""
    return {"mmstack": {k: copy.deepcopy(DEFAULTS[k]) for k in keys}}
