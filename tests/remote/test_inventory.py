"""Inventory: validation errors name file, line and key path; precedence; patterns; --limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.engine.errors import ConfigError, MmstackError, MultiError
from tasks.remote.inventory import load_inventory

REPO = Path(__file__).resolve().parents[2]

INVENTORY = """\
forks: 7
vars:
  user: deploy
  environment: staging
  gpu: {memory_utilization: 0.9, tensor_parallel: 2}
hosts:
  lab1: {address: 127.0.0.9}
groups:
  gpu_servers:
    vars:
      port: 2200
      environment: production
    hosts:
      gpu1: {address: 127.0.0.2}
      gpu2:
        address: 127.0.0.3
        port: 2222
        gpu: {memory_utilization: 0.8}
  edge:
    vars: {stack_dir: /srv/edge}
    hosts:
      gpu2:
      edge1: {address: 127.0.0.4, trust_host_key: true}
"""


def write(tmp_path: Path, text: str, name: str = "prod.yml") -> Path:
    folder = tmp_path / "inventory"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_precedence_host_over_group_over_all_over_defaults(tmp_path: Path) -> None:
    write(tmp_path, INVENTORY)
    inv = load_inventory(tmp_path)
    assert inv.forks == 7
    gpu1, gpu2, lab1, edge1 = (inv.hosts[n] for n in ("gpu1", "gpu2", "lab1", "edge1"))
    assert (gpu1.user, gpu1.port, gpu1.environment, gpu1.stack_dir) == ("deploy", 2200, "production", "/opt/mmstack")
    assert gpu2.port == 2222 and gpu2.stack_dir == "/srv/edge" and gpu2.groups == ("edge", "gpu_servers")
    assert gpu2.gpu == {"memory_utilization": 0.8, "tensor_parallel": 2}
    assert (lab1.port, lab1.environment, lab1.trust_host_key) == (22, "staging", False)
    assert edge1.trust_host_key is True
    assert list(inv.hosts) == ["lab1", "gpu1", "gpu2", "edge1"]


@pytest.mark.parametrize("pattern,limit,expected", [
    ("all", None, ["lab1", "gpu1", "gpu2", "edge1"]),
    ("gpu_servers", None, ["gpu1", "gpu2"]),
    ("gpu1,lab1", None, ["lab1", "gpu1"]),
    ("gpu_servers:edge", None, ["gpu1", "gpu2", "edge1"]),
    ("gpu_servers:&edge", None, ["gpu2"]),
    ("gpu_servers:!gpu2", None, ["gpu1"]),
    ("gpu*", None, ["gpu1", "gpu2"]),
    ("all", "gpu2", ["gpu2"]),
    ("gpu_servers", "!gpu1", ["gpu2"]),
    ("gpu_servers", "edge", ["gpu2"]),
])
def test_patterns_and_limit(tmp_path: Path, pattern: str, limit: str | None, expected: list[str]) -> None:
    write(tmp_path, INVENTORY)
    inv = load_inventory(tmp_path)
    assert [h.name for h in inv.select(pattern, limit)] == expected


def test_unknown_pattern_names_the_choices(tmp_path: Path) -> None:
    write(tmp_path, INVENTORY)
    with pytest.raises(ConfigError) as err:
        load_inventory(tmp_path).select("gpu_sevrers")
    assert "gpu_sevrers" in str(err.value) and "gpu_servers" in (err.value.fix or "")


@pytest.mark.parametrize("snippet,key_path,line,message", [
    ("groups:\n  gpu_servers:\n    hosts:\n      gpu1:\n        port: twenty\n",
     "groups.gpu_servers.hosts.gpu1.port", 5, "must be of integer type"),
    ("groups:\n  gpu_servers:\n    hosts:\n      gpu1:\n        prot: 22\n",
     "groups.gpu_servers.hosts.gpu1.prot", 5, "unknown key"),
    ("vars:\n  trust_host_key: yes please\n", "vars.trust_host_key", 2, "must be of boolean type"),
    ("forks: 0\n", "forks", 1, "min value is 1"),
    ("vars:\n  gpu: {tensor_paralel: 2}\n", "vars.gpu.tensor_paralel", 2, "unallowed value"),
    ("hosts:\n  gpu1: {stack_dir: relative/dir}\n", "hosts.gpu1.stack_dir", 2, "does not match"),
    ("hosts:\n  gpu1: {address: 'bad host'}\n", "hosts.gpu1.address", 2, "is not a valid host name"),
    ("groups:\n  all:\n    hosts: {gpu1: }\n", "groups.all", 2, "reserved"),
])
def test_errors_name_file_line_and_key(tmp_path: Path, snippet: str, key_path: str, line: int,
                                       message: str) -> None:
    write(tmp_path, snippet)
    with pytest.raises(MmstackError) as err:
        load_inventory(tmp_path)
    errors = err.value.errors if isinstance(err.value, MultiError) else [err.value]
    found = [e for e in errors if e.key_path == key_path]
    assert found, [str(e) for e in errors]
    assert found[0].file == "inventory/prod.yml" and found[0].line == line
    assert message in found[0].message
    assert str(found[0]).startswith(f"inventory/prod.yml:{line}: {key_path}: ")


def test_every_error_of_every_file_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "forks: many\n", "a.yml")
    write(tmp_path, "hosts:\n  h: {port: 0}\n", "b.yml")
    with pytest.raises(MultiError) as err:
        load_inventory(tmp_path)
    assert {e.file for e in err.value.errors} == {"inventory/a.yml", "inventory/b.yml"}


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    write(tmp_path, "hosts:\n  gpu1: {address: [\n")
    with pytest.raises(ConfigError) as err:
        load_inventory(tmp_path)
    assert err.value.file == "inventory/prod.yml" and err.value.line


def test_sample_ships_and_is_valid_but_not_loaded_by_default(tmp_path: Path) -> None:
    sample = REPO / "inventory" / "sample.yml"
    inv = load_inventory(REPO, sample)
    hosts = inv.select("gpu_servers")
    assert [h.name for h in hosts] == ["gpu1", "gpu2"]
    assert all(h.address.endswith(".example.com") for h in hosts)
    assert all(h.gpu.get("tensor_parallel") == 2 for h in hosts)
    assert hosts[1].gpu["memory_utilization"] == 0.85

    write(tmp_path, sample.read_text(), "sample.yml")
    with pytest.raises(ConfigError) as err:
        load_inventory(tmp_path)
    assert "sample" in str(err.value) and "cp " in (err.value.fix or "")
    write(tmp_path, "hosts: {lab: {address: 127.0.0.5}}\n", "lab.yml")
    assert list(load_inventory(tmp_path).hosts) == ["lab"]


def test_group_and_host_name_clash_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "hosts: {web: {}}\ngroups: {web: {hosts: {a: }}}\n")
    with pytest.raises(ConfigError, match="both a group and a host"):
        load_inventory(tmp_path)


def test_missing_inventory_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_inventory(tmp_path, "nope.yml")
