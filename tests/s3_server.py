"""A moto S3 server on 127.0.0.1 for tests that talk HTTP to S3 through s3fs.

The fixtures in ``conftest.py`` (``moto_s3``, ``s3_bucket_url``) are built on this module.
Only loopback addresses are used; no request ever leaves the machine.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LOOPBACK = "127.0.0.1"

#: Environment for the duration of the S3 tests: never ask the EC2 instance metadata service
#: for credentials, and never send loopback requests through a proxy.
_ENV_OVERRIDES = {"AWS_EC2_METADATA_DISABLED": "true"}


class MotoS3Server:
    """A ``moto`` S3 server in a thread of this process, on a free port of 127.0.0.1.

    Attributes:
        endpoint_url: ``http://127.0.0.1:<port>`` once started.
    """

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        # port=0: the operating system picks a free port; no race with other test runs.
        self._server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
        self.endpoint_url = ""

    def start(self) -> None:
        """Start serving and record the endpoint URL."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        host, port = self._server.get_host_and_port()
        assert host == LOOPBACK, f"moto server bound to {host}, expected {LOOPBACK}"
        self.endpoint_url = f"http://{LOOPBACK}:{port}"

    def stop(self) -> None:
        """Stop serving and join the server thread."""
        self._server.stop()

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options that reach this server and nothing else."""
        return {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": "us-east-1"},
        }

    def create_bucket(self) -> str:
        """Create a bucket with a fresh unique name and return that name."""
        import boto3

        name = f"epochal-test-{uuid.uuid4().hex[:20]}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=name)
        return name


@contextmanager
def s3_test_environment() -> Iterator[None]:
    """Set the environment S3 tests need, and restore every variable afterwards.

    Sets ``AWS_EC2_METADATA_DISABLED=true`` and adds 127.0.0.1 to ``NO_PROXY``/``no_proxy`` when
    a proxy variable is set (so loopback requests are never proxied).
    """
    overrides = dict(_ENV_OVERRIDES)
    if any(
        os.environ.get(var) for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy")
    ):
        for var in ("NO_PROXY", "no_proxy"):
            current = os.environ.get(var, "")
            overrides[var] = f"{current},{LOOPBACK}" if current else LOOPBACK
    saved = {var: os.environ.get(var) for var in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
