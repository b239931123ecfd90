"""The Cerberus description of `schemas/compose-schema.yaml` (and of `mmstack.yaml`)."""

from __future__ import annotations

from typing import Any

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
        "kind": {"type": "string", "allowed": ["password", "username", "hex", "token"]},
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
    },
    "allow_unknown": {"type": ["string", "integer", "float", "boolean"]},
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
