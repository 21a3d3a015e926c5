"""clm's object-store settings pointed at the loopback S3 server (``s3_endpoint`` in tests/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import boto3


@contextmanager
def use_s3(monkeypatch, endpoint: str, bucket: str) -> Iterator:
    """Point the lake's storage options (and so every s3:// path of clm's) at ``endpoint``, with no AWS settings of
    the developer's leaking in; create ``bucket``, yield a boto3 client for it, and remove the bucket afterwards."""
    options = {"aws_endpoint_url": endpoint, "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
               "aws_region": "us-east-1", "aws_allow_http": "true"}  # fmt: skip
    monkeypatch.setenv("CLM_LAKE_STORAGE_OPTIONS", json.dumps(options))
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name="us-east-1")  # fmt: skip
    client.create_bucket(Bucket=bucket)
    yield client
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)
