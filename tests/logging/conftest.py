"""Fixtures for the logging tests: the generated ELK files of the shipped schema, test secrets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tasks.schema.generate import compose_documents
from tasks.schema.load import load_stack
from tests.support.needs import unavailable

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def stack():
    return load_stack(ROOT)


@pytest.fixture(scope="session")
def compose_docs(stack):
    return compose_documents(stack)


@pytest.fixture
def es_secrets() -> dict[str, str]:
    # Generated-looking values (letters and digits, as the secrets store makes them).
    return {"ELASTIC_PASSWORD": "Xq3elasticP4ssw0rdK9zR7mT2vB8nL5c",
            "KIBANA_SYSTEM_PASSWORD": "Kb7systemPw4Hj2Lm9Qr3Tv6Wx8Yz1Ab",
            "LOGSTASH_WRITER_PASSWORD": "Ls5writerPw8Gh3Jk6Mn9Pq2St4Vw7Xy",
            "GRAFANA_ES_READER_PASSWORD": "Gr4readerPw7Cd2Ef5Gh8Ij1Kl3Mn6Op"}


@pytest.fixture(scope="session")
def curl_bin() -> str:
    path = shutil.which("curl")
    if path is None:
        unavailable("curl is not installed", "apt-get install curl")
    return path
