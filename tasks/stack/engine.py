"""The Docker engine's vocabulary: the labels Compose puts on what it creates, and the fix for an
engine that does not answer.

mmstack reaches the engine only through the docker CLI and Compose, run through a `Site`'s
``c.run`` (here or on a host), so every way the CLI can reach an engine works: the Unix socket,
``DOCKER_HOST`` with TLS or ``ssh://``, Docker contexts.
"""

from __future__ import annotations

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
VOLUME_LABEL = "com.docker.compose.volume"
UNREACHABLE_FIX = ("start the Docker engine (`sudo systemctl start docker`, or `dockerd &`), "
                   "check $DOCKER_HOST (or `docker context ls`), and make sure your user may use "
                   "the engine (group docker)")
