"""Shared pytest configuration: hypothesis profiles (dev, ci, thorough), S3 on moto."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.s3_server import MotoS3Server, s3_test_environment

settings.register_profile(
    "dev", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=30, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


# --- S3 on a local moto server (tests marked ``s3``) -------------------------------------


@pytest.fixture(scope="session")
def _moto_s3_server() -> Iterator[MotoS3Server]:
    """One moto S3 server on 127.0.0.1 for the whole session, in the S3 test environment."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    with s3_test_environment():
        server = MotoS3Server()
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def moto_s3(_moto_s3_server: MotoS3Server) -> dict[str, Any]:
    """``storage_options`` for fsspec/s3fs that reach the session's moto server (a copy)."""
    options = _moto_s3_server.storage_options
    return {**options, "client_kwargs": dict(options["client_kwargs"])}


@pytest.fixture
def s3_bucket_url(_moto_s3_server: MotoS3Server) -> str:
    """``s3://<fresh bucket>/prefix``: a new, empty bucket on the moto server for this test."""
    return f"s3://{_moto_s3_server.create_bucket()}/prefix"
