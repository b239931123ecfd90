"""Logs from a real container, with the logging options mmstack generates, arrive over GELF.

The container runs on the real Docker Engine with the generated `logging:` (gelf driver,
non-blocking, labels and env); a UDP listener here decodes what the daemon sends the way
Logstash's gelf input does (GELF 1.1: gzip or zlib, chunked datagrams). `docker logs` still
works (Docker's dual logging), and a listener that is not there does not stop the container.
"""

from __future__ import annotations

import gzip
import json
import socket
import time
import zlib

import pytest

from tests.support.dockertest import labelled_resources

pytestmark = pytest.mark.docker


def decode_gelf(datagrams: list[bytes]) -> list[dict]:
    messages, chunks = [], {}
    for data in datagrams:
        if data[:2] == b"\x1e\x0f":  # chunked: magic, 8-byte id, sequence number, count
            msg_id, seq, count = data[2:10], data[10], data[11]
            chunks.setdefault(msg_id, {})[seq] = data[12:]
            if len(chunks[msg_id]) < count:
                continue
            data = b"".join(chunks.pop(msg_id)[i] for i in range(count))
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        elif data[:1] == b"\x78":
            data = zlib.decompress(data)
        messages.append(json.loads(data))
    return messages


def listen(sock: socket.socket, want: int, timeout: float = 20.0) -> list[dict]:
    datagrams, deadline = [], time.monotonic() + timeout
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            datagrams.append(sock.recv(65536))
        except socket.timeout:
            pass
        msgs = decode_gelf(datagrams)
        if len(msgs) >= want:
            return msgs
    return decode_gelf(datagrams)


def test_container_logs_reach_a_gelf_listener_with_service_and_environment(docker_client, test_images, compose_docs):
    logging = compose_docs["compose.staging.yml"]["services"]["litellm"]["logging"]
    logging = getattr(logging, "value", logging)  # the overlay wraps it as !override
    assert logging["driver"] == "gelf"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options = {**logging["options"], "gelf-address": f"udp://127.0.0.1:{port}"}
    long_line = "x" * 9000  # more than one datagram: the daemon chunks it
    with labelled_resources(docker_client) as res:
        container = docker_client.containers.run(
            test_images["standin"], entrypoint=["sh", "-c",
                                                f"echo 'INFO ready'; echo 'boom' >&2; echo {long_line}; sleep 1"],
            labels={**res.labels, "org.mmstack.service": "litellm", "org.mmstack.stack": "inference"},
            environment={"MMSTACK_ENV": "staging"},
            log_config={"type": logging["driver"], "config": options}, detach=True)
        messages = listen(sock, 3)
        container.wait(timeout=30)
        # Dual logging: the daemon keeps a local copy, so `docker logs` (and inv logs) still work.
        local = container.logs().decode()
    sock.close()
    by_text = {m["short_message"]: m for m in messages}
    assert set(by_text) >= {"INFO ready", "boom", long_line}
    ready = by_text["INFO ready"]
    assert ready["_org.mmstack.service"] == "litellm"
    assert ready["_org.mmstack.stack"] == "inference"
    assert ready["_MMSTACK_ENV"] == "staging"
    assert ready["level"] == 6 and by_text["boom"]["level"] == 3  # stdout / stderr
    assert "INFO ready" in local and "boom" in local


def test_a_container_starts_and_runs_while_nothing_listens(docker_client, test_images, compose_docs):
    logging = compose_docs["compose.staging.yml"]["services"]["litellm"]["logging"]
    logging = getattr(logging, "value", logging)
    free = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nobody listens there now: Logstash is down
    options = {**logging["options"], "gelf-address": f"udp://127.0.0.1:{port}"}
    with labelled_resources(docker_client) as res:
        container = docker_client.containers.run(
            test_images["standin"], entrypoint=["sh", "-c", "for i in 1 2 3; do echo line $i; done"],
            labels=res.labels, log_config={"type": "gelf", "config": options}, detach=True)
        result = container.wait(timeout=30)
        local = container.logs().decode()
    assert result["StatusCode"] == 0
    assert "line 3" in local
