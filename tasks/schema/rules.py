"""The Cerberus description of `schemas/compose-schema.yaml` (and of `mmstack.yaml`)."""

from __future__ import annotations

from typing import Any

from .logging import CONFIG_FILES as LOGGING_CONFIG_FILES

# Operators (see merge.py) may stand where a list or mapping is expected.
LIST_OR_OP: dict[str, Any] = {"type": ["list", "dict"]}
DURATION = {"type": "string", "regex": r"^\d+(\.\d+)?(ms|s|m|h)$"}
NAME = {"type": "string", "regex": r"^[a-z][a-z0-9-]*$"}
SIZE = {"type": "string", "regex": r"^\d+(\.\d+)?[bkmg]$"}

PORT = {
    "type": "dict",
    "schema": {
        "container": {"type": "integer", "min": 1, "max": 65535, "required": True},
        "host": {"type": "integer", "min": 1, "max": 65535, "nullable": True},
        "host_ip": {"type": "string", "regex": r"^(\d{1,3}\.){3}\d{1,3}$|^::1?$"},
        "protocol": {"type": "string", "allowed": ["tcp", "udp"]},
    },
}

VOLUME_MOUNT = {
    "type": "dict",
    "schema": {
        "source": {"type": "string", "required": True, "regex": r"^[a-z][a-z0-9_.-]*$"},
        "target": {"type": "string", "required": True, "regex": r"^/\S*$"},
        "read_only": {"type": "boolean"},
    },
}

HEALTHCHECK_FIELDS: dict[str, Any] = {
    "test": {"type": "list", "schema": {"type": "string"}, "minlength": 1},
    "interval": DURATION,
    "timeout": DURATION,
    "start_period": DURATION,
    "retries": {"type": "integer", "min": 1},
}

HEALTHCHECK_REF = {
    "type": "dict",
    "schema": {
        "template": {"type": "string"},
        "port": {"type": "integer", "min": 1, "max": 65535},
        "path": {"type": "string", "regex": r"^/\S*$"},
        "disable": {"type": "boolean"},
        **HEALTHCHECK_FIELDS,
    },
}

RESOURCES = {
    "type": "dict",
    "schema": {
        "memory": SIZE,
        "cpus": {"type": "number", "min": 0.01},
    },
}

LOGGING = {
    "type": "dict",
    "schema": {
        "driver": {"type": "string"},
        "options": {"type": "dict", "valuesrules": {"type": "string"}},
    },
}

# Where a service serves Prometheus metrics (monitoring.py scrapes it wherever it runs with
# Prometheus). auth: what the endpoint needs, named by secrets: "bearer" sends one secret as
# `Authorization: Bearer`; "minio-jwt" sends the JWT MinIO checks (HS512 over the access key,
# signed with its secret key, as `mc admin prometheus generate` makes it).
METRICS = {
    "type": "dict",
    "schema": {
        "port": {"type": "integer", "min": 1, "max": 65535, "required": True},
        "path": {"type": "string", "regex": r"^/\S*$"},
        "interval": DURATION,
        # What the endpoint exports, for the alert rules and dashboard panels made for it.
        "exporter": {"type": "string", "allowed": ["vllm", "dcgm", "node"]},
        "auth": {
            "type": "dict",
            "schema": {
                "type": {"type": "string", "required": True, "allowed": ["bearer", "minio-jwt"]},
                "secret": {"type": "string", "regex": r"^[a-z][a-z0-9_]*$"},
                "access_key": {"type": "string", "regex": r"^[a-z][a-z0-9_]*$"},
                "secret_key": {"type": "string", "regex": r"^[a-z][a-z0-9_]*$"},
            },
        },
    },
}

RESTART = {"type": "string", "allowed": ["no", "always", "unless-stopped", "on-failure"]}
ENV_VALUE = {"type": ["string", "integer", "float", "boolean"]}

SERVICE_FIELDS: dict[str, Any] = {
    "image": {"type": ["string", "dict"], "required": True},
    "description": {"type": "string"},
    "env_template": {"type": "string", "regex": r"^[a-z][a-z0-9-]*$", "nullable": True},
    "command": {"type": ["list", "dict"], "nullable": True},
    "entrypoint": {"type": ["list", "dict"], "nullable": True},
    "environment": {"type": "dict", "valuesrules": ENV_VALUE},
    "ports": {**LIST_OR_OP},
    "volumes": {**LIST_OR_OP},
    "networks": {**LIST_OR_OP},
    "depends_on": {"type": "dict"},
    "healthcheck": HEALTHCHECK_REF,
    "resources": RESOURCES,
    "restart": RESTART,
    "gpu": {"type": "boolean"},
    # Runs only with a GPU (vLLM's CUDA image): an environment that reserves none leaves it out.
    "gpu_only": {"type": "boolean"},
    # vLLM: its command is generated from the environment's model and the GPU plan.
    "model_server": {"type": "boolean"},
    # A GPU exporter: reserves every GPU the plan gives the stack (vLLM's and the worker's).
    "gpu_monitor": {"type": "boolean"},
    "metrics": METRICS,
    # A PostgreSQL database and role of its own, created by the postgres-init one-shot.
    "database": {
        "type": "dict",
        "schema": {
            "name": {"type": "string", "required": True, "regex": r"^[a-z][a-z0-9_]{0,62}$"},
            "password": {"type": "string", "required": True, "regex": r"^[a-z][a-z0-9_]*$"},
        },
    },
    # MinIO buckets this service reads and writes, with an access key of its own.
    "buckets": {"type": "list", "schema": {"type": "string", "regex": r"^[a-z0-9][a-z0-9.-]{2,62}$"}},
    "object_store_key": {
        "type": "dict",
        "schema": {
            "access_key": {"type": "string", "required": True, "regex": r"^[a-z][a-z0-9_]*$"},
            "secret_key": {"type": "string", "required": True, "regex": r"^[a-z][a-z0-9_]*$"},
        },
    },
    # Files generated into config/<env>/ and mounted read-only: {file: NAME, target: /path}.
    "config_files": {"type": "list", "schema": {
        "type": "dict",
        "schema": {
            "file": {"type": "string", "required": True,
                     "allowed": ["litellm.yaml", "postgres-init.sql", "minio-init.sh",
                                 # monitoring.py and dashboards.py
                                 "prometheus.yml", "prometheus-rules.yml", "prometheus-start.sh",
                                 "grafana-datasource-prometheus.yml", "grafana-dashboards.yml",
                                 "grafana-dashboard-inference.json", *LOGGING_CONFIG_FILES]},
            "target": {"type": "string", "required": True, "regex": r"^/\S*$"},
            # Generated and mounted only where this service runs too (Grafana's Elasticsearch
            # datasource where Elasticsearch runs).
            "requires": {"type": "string", "regex": r"^[a-z][a-z0-9-]*$"},
        },
    }},
    # Runs to completion at every start although nothing waits for it (kibana-setup); services
    # another waits for with `completed` are one-shots without saying so.
    "one_shot": {"type": "boolean"},
    "shm_size": SIZE,
    "logging": LOGGING,
    "user": {"type": "string"},
    "stop_grace_period": DURATION,
}

# A fully merged service (no operators left): strict types for every field.
RESOLVED_SERVICE: dict[str, Any] = {
    **SERVICE_FIELDS,
    "command": {"type": "list", "schema": {"type": "string"}, "nullable": True},
    "entrypoint": {"type": "list", "schema": {"type": "string"}, "nullable": True},
    "ports": {"type": "list", "schema": PORT},
    "volumes": {"type": "list", "schema": VOLUME_MOUNT},
    "networks": {"type": "list", "schema": {"type": "string"}},
    "depends_on": {
        "type": "dict",
        "valuesrules": {"type": "string", "allowed": ["healthy", "started", "completed"]},
    },
    "image": {
        "type": ["string", "dict"],
        "required": True,
        "schema": {"custom": {"type": "string", "required": True, "regex": r"^[a-z][a-z0-9-]*$"}},
    },
}

DEFAULTS = {
    "type": "dict",
    "schema": {
        "restart": RESTART,
        "networks": {**LIST_OR_OP},
        "resources": RESOURCES,
        "logging": LOGGING,
        "environment": {"type": "dict", "valuesrules": ENV_VALUE},
        "stop_grace_period": DURATION,
    },
}

OVERRIDES = {
    "type": "dict",
    "schema": {
        "defaults": {"type": "dict"},
        "services": {"type": "dict", "keysrules": NAME, "valuesrules": {"type": "dict"}},
        "healthchecks": {"type": "dict", "valuesrules": {"type": "dict"}},
    },
}

SECRET = {
    "type": "dict",
    "schema": {
        "kind": {"type": "string", "allowed": ["password", "username", "hex", "token", "external"]},
        "length": {"type": "integer", "min": 8, "max": 512},
        "bytes": {"type": "integer", "min": 16, "max": 256},
        "prefix": {"type": "string", "regex": r"^[A-Za-z0-9_-]*$"},
        "alphabet": {"type": "string", "regex": r"^[A-Za-z0-9_.~-]+$", "minlength": 10},
        "description": {"type": "string"},
    },
}

ENV_SETTINGS = {
    "type": "dict",
    "schema": {
        "log_level": {"type": "string", "allowed": ["debug", "info", "warning", "error"]},
        "bind_address": {"type": "string", "regex": r"^(\d{1,3}\.){3}\d{1,3}$"},
        # "cpu": keep vLLM in an environment without GPUs (mmstack.yaml images.vllm must then
        # name a CPU build of vLLM).
        "vllm_device": {"type": "string", "allowed": ["gpu", "cpu"]},
    },
    "allow_unknown": {"type": ["string", "integer", "float", "boolean"]},
}

# One model vLLM can serve: what the planner needs to split it over GPUs and size its KV cache.
MODEL = {
    "type": "dict",
    "schema": {
        "hf_id": {"type": "string", "required": True, "regex": r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9._-]+$"},
        "revision": {"type": "string", "regex": r"^[A-Za-z0-9._/-]+$"},
        "served_name": {"type": "string", "required": True, "regex": r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"},
        "description": {"type": "string"},
        "attention_heads": {"type": "integer", "required": True, "min": 1},
        "kv_heads": {"type": "integer", "required": True, "min": 1},
        "layers": {"type": "integer", "required": True, "min": 1},
        "head_dim": {"type": "integer", "required": True, "min": 1},
        "weights_gib": {"type": "number", "required": True, "min": 0.01},
        "dtype": {"type": "string", "required": True,
                  "allowed": ["auto", "bfloat16", "float16", "float32"]},
        "quantization": {"type": "string", "allowed": ["awq", "gptq", "fp8", "awq_marlin", "gptq_marlin"]},
        "kv_cache_dtype": {"type": "string", "allowed": ["auto", "fp8"]},
        "max_context": {"type": "integer", "required": True, "min": 256},
    },
}

SCHEMA: dict[str, Any] = {
    "version": {"type": "integer", "allowed": [1], "required": True},
    "project": {"type": "string", "required": True, "regex": r"^[a-z0-9][a-z0-9_-]*$"},
    "images": {
        "type": "dict",
        "schema": {"registry": {"type": "string"}, "tag": {"type": "string"}},
    },
    "defaults": DEFAULTS,
    "healthchecks": {
        "type": "dict",
        "keysrules": NAME,
        "valuesrules": {"type": "dict", "schema": HEALTHCHECK_FIELDS},
    },
    "networks": {
        "type": "dict",
        "keysrules": NAME,
        "valuesrules": {
            "type": "dict",
            "nullable": True,
            "schema": {"description": {"type": "string"}, "internal": {"type": "boolean"}},
        },
    },
    "volumes": {
        "type": "dict",
        "keysrules": {"type": "string", "regex": r"^[a-z][a-z0-9_.-]*$"},
        "valuesrules": {
            "type": "dict",
            "nullable": True,
            "schema": {"description": {"type": "string"}},
        },
    },
    "secrets": {
        "type": "dict",
        "keysrules": {"type": "string", "regex": r"^[a-z][a-z0-9_]*$"},
        "valuesrules": SECRET,
    },
    "models": {"type": "dict", "keysrules": {"type": "string", "regex": r"^[a-z0-9][a-z0-9._-]*$"},
               "valuesrules": MODEL},
    "default_model": {"type": "string"},
    "stacks": {
        "type": "dict",
        "required": True,
        "keysrules": NAME,
        "valuesrules": {
            "type": "dict",
            "schema": {
                "description": {"type": "string"},
                "services": {"type": "list", "schema": {"type": "string"}, "required": True},
            },
        },
    },
    "services": {
        "type": "dict",
        "required": True,
        "minlength": 1,
        "keysrules": NAME,
        "valuesrules": {"type": "dict", "schema": SERVICE_FIELDS},
    },
    "environments": {
        "type": "dict",
        "required": True,
        "keysrules": NAME,
        "valuesrules": {
            "type": "dict",
            "schema": {
                "description": {"type": "string"},
                "stacks": {"type": "list", "schema": {"type": "string"}},
                "services": {"type": "list", "schema": {"type": "string"}},
                "gpu": {"type": "boolean"},
                "model": {"type": "string"},
                "settings": ENV_SETTINGS,
                "overrides": OVERRIDES,
            },
        },
    },
}

# mmstack.yaml in the stack directory: local settings layered over the schema.
SETTINGS: dict[str, Any] = {
    "project": {"type": "string", "regex": r"^[a-z0-9][a-z0-9_-]*$"},
    "environment": {"type": "string"},
    "images": {"type": "dict", "keysrules": NAME, "valuesrules": {"type": "string"}},
    "custom_images": {
        "type": "dict",
        "schema": {"registry": {"type": "string"}, "tag": {"type": "string"}},
    },
    "host_port_offset": {"type": "integer", "min": 0, "max": 60000},
    "overrides": OVERRIDES,
    "secrets": {
        "type": "dict",
        "schema": {
            "key_file": {"type": "string"},
            "key_env": {"type": "string"},
        },
    },
}
