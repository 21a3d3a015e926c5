"""Files the Airflow task and a trainer pod hand each other: a local folder (a volume both mount) or ``s3://``.

Addressed like the lake (``clm_lib/data/lake.py``): a plain path is a folder, ``s3://bucket/prefix`` an object
store reached with the lake's endpoint and credentials (``$CLM_LAKE_STORAGE_OPTIONS``, ``AWS_*``; the client of
``clm_lib/data/landing_s3.py``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from clm_lib.data.landing_s3 import client, is_remote


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.split("://", 1)[1].partition("/")
    return bucket, key


def write_bytes(uri: str, data: bytes) -> None:
    if is_remote(uri):
        bucket, key = _split(uri)
        client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # a reader never sees half a file


def read_bytes(uri: str) -> bytes:
    if is_remote(uri):
        bucket, key = _split(uri)
        return client().get_object(Bucket=bucket, Key=key)["Body"].read()
    return Path(uri).read_bytes()


def exists(uri: str) -> bool:
    if is_remote(uri):
        bucket, key = _split(uri)
        return bool(client().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("KeyCount"))
    return Path(uri).exists()


def _remote_keys(uri: str) -> list[str]:
    bucket, prefix = _split(uri.rstrip("/") + "/")
    keys: list[str] = []
    for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [obj["Key"][len(prefix) :] for obj in page.get("Contents", [])]
    return keys


def list_dir(uri: str) -> list[str]:
    """Relative paths of every file under ``uri`` (empty when there is nothing)."""
    if is_remote(uri):
        return _remote_keys(uri)
    root = Path(uri)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def upload_dir(folder: Path, uri: str, *, last: Iterable[str] = ()) -> None:
    """Copy ``folder`` to ``uri``; the files named in ``last`` go after the others, so their presence says the
    copy is complete (a reader that needs them ignores a half-copied folder)."""
    last = set(last)
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    files.sort(key=lambda p: p.name in last)
    for path in files:
        rel = path.relative_to(folder).as_posix()
        if is_remote(uri):
            write_bytes(join(uri, rel), path.read_bytes())
        else:
            target = Path(uri) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def download_dir(uri: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for rel in list_dir(uri):
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if is_remote(uri):
            target.write_bytes(read_bytes(join(uri, rel)))
        else:
            shutil.copy2(Path(uri) / rel, target)


def remove_dir(uri: str) -> None:
    if is_remote(uri):
        bucket, prefix = _split(uri.rstrip("/") + "/")
        for rel in _remote_keys(uri):
            client().delete_object(Bucket=bucket, Key=prefix + rel)
    else:
        shutil.rmtree(uri, ignore_errors=True)
