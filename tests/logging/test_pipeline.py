"""The generated Logstash pipeline and its ruby filter.

Logstash cannot run here (no registry, not in Debian): the pipeline is parsed with the LSCL
grammar of Logstash 9.x (tests/logging/lscl.py) and checked against the plugins' documented
options; the ruby filter runs for real in Ruby (Debian's ruby) with an event object that
answers get/set/remove like Logstash's, on the fields Docker's gelf driver sends.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tasks.schema import logging as elk
from tasks.schema.logfilter import ruby_filter
from tasks.security.patterns import mask_log_line
from tests.support.needs import unavailable
from tests.logging.lscl import LsclError, parse

# Options of the pinned release's plugins (logstash-input-gelf, logstash-filter-ruby,
# logstash-output-elasticsearch docs) that the pipeline may use.
PLUGIN_OPTIONS = {
    ("input", "gelf"): {"id", "host", "port", "port_tcp", "port_udp", "use_tcp", "use_udp", "remap",
                        "strip_leading_underscore", "tags", "type", "add_field"},
    ("filter", "ruby"): {"id", "path", "script_params", "code", "init", "tag_on_exception"},
    ("output", "elasticsearch"): {"id", "hosts", "user", "password", "data_stream", "data_stream_type",
                                  "data_stream_dataset", "data_stream_namespace", "data_stream_sync_fields",
                                  "data_stream_auto_routing", "ssl_enabled"},
}


def test_pipeline_parses_with_the_lscl_grammar_and_uses_real_options(stack):
    text = elk.logstash_pipeline("staging")
    sections = parse(text)
    assert [s for s, _ in sections] == ["input", "filter", "output"]
    for section, plugins in sections:
        for name, attrs in plugins:
            allowed = PLUGIN_OPTIONS[(section, name)]
            assert {k for k, _ in attrs} <= allowed, (section, name)
    out = dict(sections[2][1][0][1])
    assert out["password"] == "${LOGSTASH_WRITER_PASSWORD}"  # from the env, never a literal
    assert out["user"] == elk.WRITER_USER
    assert f"logs-{out['data_stream_dataset']}-{out['data_stream_namespace']}" == elk.data_stream("staging")
    gelf = dict(sections[0][1][0][1])
    ruby = dict(sections[1][1][0][1])
    spec = stack.resolved_services("staging")["logstash"]
    targets = {cf["file"]: cf["target"] for cf in spec["config_files"]}
    assert ruby["path"] == targets[elk.RUBY_FILTER]
    assert targets[elk.PIPELINE].startswith("/usr/share/logstash/pipeline/")
    assert not targets[elk.RUBY_FILTER].startswith("/usr/share/logstash/pipeline/")  # not loaded as config
    assert {p["container"] for p in spec["ports"] if p.get("protocol") == "udp"} == {gelf["port"]}


def test_the_parser_rejects_what_logstash_rejects():
    with pytest.raises(LsclError):
        parse('input { gelf { port => 12201 }')  # unclosed section
    with pytest.raises(LsclError):
        parse('output { elasticsearch { hosts = ["x"] } }')  # = is not =>
    with pytest.raises(LsclError):
        parse('inputs { }')


@pytest.fixture(scope="module")
def ruby() -> str:
    path = shutil.which("ruby")
    if path is None:
        unavailable("ruby is not installed", "apt-get install ruby")
    return path


HARNESS = r'''
require 'json'
class FakeEvent
  def initialize(h); @h = h; end
  def path(ref); ref.start_with?('[') ? ref.scan(/\[([^\]]+)\]/).flatten : [ref]; end
  def get(ref); path(ref).reduce(@h) { |acc, k| acc.is_a?(Hash) ? acc[k] : nil }; end
  def set(ref, v)
    keys = path(ref); last = keys.pop
    target = keys.reduce(@h) { |acc, k| acc[k] = {} unless acc[k].is_a?(Hash); acc[k] }
    target[last] = v
  end
  def remove(ref); keys = path(ref); last = keys.pop; t = keys.empty? ? @h : get('[' + keys.join('][') + ']'); t.delete(last) if t.is_a?(Hash); end
  def to_h; @h; end
end
# As the ruby filter loads a `path` script: instance_eval of the file in a context object, then
# register(script_params) once and filter(event) per event.
context = Object.new
context.instance_eval(File.read(ARGV[0]), ARGV[0], 1)
context.register({ 'environment' => 'staging' })
out = JSON.parse(STDIN.read).map { |e| context.filter(FakeEvent.new(e)).first.to_h }
puts JSON.generate(out)
'''


def run_filter(ruby: str, tmp_path: Path, events: list[dict], digests: str) -> list[dict]:
    script = tmp_path / "filter.rb"
    script.write_text(ruby_filter(elk.MASK, elk.SECRET_DIGESTS_VAR))
    harness = tmp_path / "harness.rb"
    harness.write_text(HARNESS)
    proc = subprocess.run([ruby, str(harness), str(script)], input=json.dumps(events), text=True,
                          capture_output=True, timeout=60, env={elk.SECRET_DIGESTS_VAR: digests})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def gelf_event(message: str, level: int = 6, **extra: str) -> dict:
    # What the gelf input makes of the Docker daemon's message (leading underscores stripped).
    return {"message": message, "level": level, "host": "gpu-01", "version": "1.1",
            "container_name": "mmstack-litellm-1", "container_id": "abc123", "image_name": "litellm:x",
            "org.mmstack.service": "litellm", "org.mmstack.stack": "inference",
            "MMSTACK_ENV": "production", "source_host": "172.17.0.1", "command": "litellm", **extra}


def test_ruby_filter_sets_service_environment_and_lower_case_level(ruby, tmp_path):
    events = [gelf_event("INFO:     Uvicorn running on http://0.0.0.0:4000"),
              gelf_event('{"@timestamp":"2026-01-01T00:00:00Z","log.level":"WARN","message":"disk"}'),
              gelf_event("2026-01-01 00:00:00 UTC [1] LOG:  database system is ready", level=3),
              gelf_event("Traceback (most recent call last):", level=3),
              gelf_event("level=error msg=\"cannot connect\""),
              {**gelf_event("plain line"), "MMSTACK_ENV": ""}]
    out = run_filter(ruby, tmp_path, events, "")
    assert [e["log"]["level"] for e in out] == ["info", "warning", "info", "error", "error", "info"]
    first = out[0]
    assert first["service"] == {"name": "litellm", "type": "inference", "environment": "production"}
    assert first["container"] == {"name": "mmstack-litellm-1", "id": "abc123", "image": {"name": "litellm:x"}}
    assert first["host"] == {"name": "gpu-01"}
    assert out[-1]["service"]["environment"] == "staging"  # the pipeline's own environment
    for gone in ("org.mmstack.service", "MMSTACK_ENV", "level", "source_host", "command"):
        assert gone not in first


def test_ruby_filter_masks_stored_secrets_by_digest_and_known_shapes(ruby, tmp_path):
    stored = "Pg7rT2kLm9QxW4vB8nC3zY6aJ1dF5hS0"  # a value of the secrets store
    prefixed = "sk-" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1V2w3X4"
    digests = ",".join(hashlib.sha256(v.encode()).hexdigest() for v in (stored, prefixed))
    lines = [f"connecting to postgres with {stored}.",
             f"key={prefixed}",
             f"url postgresql://litellm:{stored}@postgres:5432/litellm",
             "Authorization: Bearer abcdefghijklmnop1234",
             "GitHub token ghp_" + "A" * 36,
             "password: hunter2hunter2",
             "max_tokens=512 temperature=0.7"]
    out = run_filter(ruby, tmp_path, [gelf_event(line) for line in lines], digests)
    masked = [e["message"] for e in out]
    assert masked[0] == "connecting to postgres with ********."
    assert stored not in json.dumps(out) and prefixed not in json.dumps(out)
    assert masked[2] == "url postgresql://litellm:********@postgres:5432/litellm"
    assert masked[3] == "Authorization: Bearer ********"
    assert masked[4] == "GitHub token ********"
    assert masked[5] == "password: ********"
    assert masked[6] == "max_tokens=512 temperature=0.7"  # not a secret: left readable
    # Python (mmstack's own masking) and Ruby (Logstash) agree on the shapes.
    assert [mask_log_line(line) for line in lines[3:]] == masked[3:]
