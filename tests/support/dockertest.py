"""Docker helpers for tests: everything a test creates carries one unique label, and goes away.

    with labelled_resources(docker_client) as res:
        net = docker_client.networks.create("x-" + res.suffix, labels=res.labels)
        ...                                     # containers, volumes, networks with res.labels
    # on exit (failure included): containers, then networks, then volumes with that label removed

``wait_healthy(container)`` polls until the container's healthcheck reports ``healthy``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

LABEL_KEY = "org.mmstack.test"


@dataclass
class Resources:
    value: str
    suffix: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def filter(self) -> dict[str, str]:
        return {"label": f"{LABEL_KEY}={self.value}"}


def remove_labelled(client, value: str) -> None:
    """Remove every container, network and volume labelled ``org.mmstack.test=<value>``."""
    flt = {"label": f"{LABEL_KEY}={value}"}
    for container in client.containers.list(all=True, filters=flt):
        try:
            container.remove(force=True, v=True)
        except Exception:  # already gone
            pass
    for network in client.networks.list(filters=flt):
        try:
            network.remove()
        except Exception:
            pass
    for volume in client.volumes.list(filters=flt):
        try:
            volume.remove(force=True)
        except Exception:
            pass


@contextmanager
def labelled_resources(client, prefix: str = "mmstack-test") -> Iterator[Resources]:
    suffix = uuid.uuid4().hex[:10]
    value = f"{prefix}-{suffix}"
    res = Resources(value=value, suffix=suffix, labels={LABEL_KEY: value})
    try:
        yield res
    finally:
        remove_labelled(client, value)


def wait_healthy(container, timeout: float = 60.0, interval: float = 0.25) -> None:
    """Wait until ``container`` (with a healthcheck) is healthy; AssertionError with logs if not."""
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        container.reload()
        state = container.attrs["State"]
        status = state.get("Health", {}).get("Status", "no healthcheck")
        if status == "healthy":
            return
        if state.get("Status") in ("exited", "dead"):
            break
        time.sleep(interval)
    logs = container.logs(tail=40).decode(errors="replace")
    raise AssertionError(f"{container.name} not healthy (health: {status}, "
                         f"state: {container.attrs['State'].get('Status')}); logs:\n{logs}")
