"""The env file mmstack generates for n8n, against the configuration interface of the installed
n8n release (tests/realapps/n8n-app.sh), read from n8n's own code, never from a hand list:

* @n8n/config's config classes declare each variable with ``@Env('NAME', schema?)`` (compiled
  to ``(0, decorators_1.Env)('NAME'...)``); the few read outside them (N8N_USER_FOLDER,
  N8N_BLOCK_ENV_ACCESS_IN_NODE, ...) are ``process.env.NAME`` reads in n8n's packages.
* A value @n8n/config cannot parse is not an error there: it warns and keeps the default (an
  invalid N8N_LOG_LEVEL or DB_TYPE runs n8n on SQLite at info level). So the values are checked
  against the zod enums the config classes declare.
* packages/cli's deprecation service lists what 2.x no longer reads (N8N_RUNNERS_ENABLED, ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.httpjson import env_file
from tests.support.n8n_app import installed_version, require_n8n

pytestmark = pytest.mark.slow

ENVS = ("development", "production")
ENV_DECORATOR = re.compile(r"""\bEnv\)\(\s*['"]([A-Z][A-Z0-9_]*)['"]""")
PROCESS_ENV = re.compile(r"""process\.env(?:\.([A-Z][A-Z0-9_]*)|\[\s*['"]([A-Z][A-Z0-9_]*)['"]\s*\])""")
DEPRECATED = re.compile(r"""envVar:\s*['"]([A-Z][A-Z0-9_]*)['"]""")


def n8n_packages(root: Path) -> list[Path]:
    """n8n's own packages in the install: n8n (packages/cli), n8n-core, n8n-workflow, @n8n/*."""
    nm = root / "app" / "node_modules"
    pkgs = [nm / "n8n", nm / "n8n-core", nm / "n8n-workflow", *sorted((nm / "@n8n").iterdir())]
    return [p for p in pkgs if (p / "dist").is_dir()]


def js_files(pkg: Path) -> list[Path]:
    return [p for p in (pkg / "dist").rglob("*.js") if "node_modules" not in p.relative_to(pkg).parts]


@pytest.fixture(scope="module")
def interface() -> dict[str, object]:
    root = require_n8n()
    config_dist = root / "app" / "node_modules" / "@n8n" / "config" / "dist"
    decorated: set[str] = set()
    for path in config_dist.rglob("*.js"):
        decorated |= set(ENV_DECORATOR.findall(path.read_text(errors="replace")))
    read_directly: set[str] = set()
    for pkg in n8n_packages(root):
        for path in js_files(pkg):
            text = path.read_text(errors="replace")
            read_directly |= {a or b for a, b in PROCESS_ENV.findall(text)}
    deprecation = root / "app" / "node_modules" / "n8n" / "dist" / "deprecation" / "deprecation.service.js"
    return {"root": root, "decorated": decorated, "read": decorated | read_directly,
            "deprecated": set(DEPRECATED.findall(deprecation.read_text())),
            "config_dist": config_dist}


def zod_enum(config_dist: Path, file: str, name: str) -> set[str]:
    """The members of ``const <name> = zod_1.z.enum([...])`` in one of @n8n/config's classes."""
    text = (config_dist / "configs" / file).read_text()
    m = re.search(rf"const {name} = zod_1\.z\.enum\(\[([^\]]*)\]\)", text)
    assert m, f"{name} is not a z.enum in {file} any more: re-read n8n's config"
    return set(re.findall(r"'([^']*)'", m.group(1)))


@pytest.fixture(scope="module")
def generated(set_up_stack: Callable[..., Path]) -> dict[str, dict[str, dict[str, str]]]:
    stack = set_up_stack("n8n-contract", *ENVS)
    return {env: {name: env_file(stack / "env" / env / f"{name}.env") for name in ("core", "n8n")}
            for env in ENVS}


def test_the_installed_release_is_the_one_the_schema_pins(interface: dict[str, object]) -> None:
    import yaml

    schema = yaml.safe_load((Path(__file__).resolve().parents[2] / "schemas" / "compose-schema.yaml").read_text())
    image = schema["services"]["n8n"]["image"]
    assert image == f"n8nio/n8n:{installed_version(interface['root'])}"  # type: ignore[arg-type]


def test_the_interface_was_read_from_the_package(interface: dict[str, object]) -> None:
    # Guards the reading itself: a regex that found nothing would make every check below vacuous.
    decorated = interface["decorated"]
    assert isinstance(decorated, set) and len(decorated) > 300
    assert {"DB_TYPE", "N8N_ENCRYPTION_KEY", "N8N_METRICS"} <= decorated
    assert "N8N_RUNNERS_ENABLED" in interface["deprecated"]  # type: ignore[operator]


@pytest.mark.parametrize("env", ENVS)
def test_every_generated_variable_is_one_n8n_reads(generated: dict, interface: dict[str, object], env: str) -> None:
    files = generated[env]
    # core.env's variables are the shared layout every service gets (the stack identity the
    # Docker log driver reads, TZ); n8n.env carries them again through master.env.j2.
    own = {k for k in files["n8n"] if k not in files["core"]}
    assert own, "n8n.env has no variable of its own"
    unread = sorted(own - interface["read"])  # type: ignore[operator]
    assert not unread, f"n8n {installed_version(interface['root'])} reads none of {unread}"  # type: ignore[arg-type]
    deprecated = sorted(own & interface["deprecated"])  # type: ignore[operator]
    assert not deprecated, f"n8n lists {deprecated} as deprecated"


@pytest.mark.parametrize("env", ENVS)
def test_the_values_are_ones_n8n_accepts(generated: dict, interface: dict[str, object], env: str) -> None:
    n8n = generated[env]["n8n"]
    dist = interface["config_dist"]
    assert n8n["N8N_LOG_LEVEL"] in zod_enum(dist, "logging.config.js", "logLevelSchema")  # type: ignore[arg-type]
    assert n8n["DB_TYPE"] in zod_enum(dist, "database.config.js", "dbTypeSchema") - {"sqlite"}  # type: ignore[arg-type]
    # @n8n/config's Boolean parsing takes true/false/1/0 and ignores anything else with a warning.
    for key in ("N8N_METRICS", "N8N_DIAGNOSTICS_ENABLED", "N8N_PERSONALIZATION_ENABLED"):
        assert n8n[key] in ("true", "false"), key
    assert n8n["DB_POSTGRESDB_PORT"].isdigit()
    assert len(n8n["N8N_ENCRYPTION_KEY"]) >= 32


def test_the_database_settings_are_n8ns_own(generated: dict) -> None:
    n8n = generated["production"]["n8n"]
    assert (n8n["DB_POSTGRESDB_HOST"], n8n["DB_POSTGRESDB_DATABASE"], n8n["DB_POSTGRESDB_USER"]) == \
        ("postgres", "n8n", "n8n")
    assert n8n["N8N_METRICS"] == "true"  # the schema's metrics: entry is scraped from it
