"""A landing location on object storage (``paths.landing: s3://bucket/prefix``), with the folder's guarantees.

The same contract as the local folder (:mod:`clm_lib.data.landing`), where it means something on S3:

- listing: only the objects directly under the prefix (``Delimiter="/"``: "subfolders" such as ``processed/``
  and ``failed/`` are not descended into), oldest first, hidden names (``.name``, for writers that upload then
  rename) and other extensions left alone;
- size: an object over ``data.max_file_bytes`` (by the listing's size) is refused before a byte of it is read,
  and the read stops one byte past the cap, so a lying listing cannot make it read more;
- an object that changes while read is never half-ingested: it is read with one ``GetObject`` conditioned on the
  ETag it was listed with (``If-Match``), and S3 returns one whole version or ``412``; an object replaced after it
  was listed is left where it is, for the next run to read whole. Moving it away is a ``CopyObject`` conditioned on
  the same ETag (``CopySourceIfMatch``), then a ``DeleteObject`` conditioned on it (``If-Match``), with the ETag
  checked around both for servers that ignore those headers (:meth:`S3Landing.move`): a version that arrived after
  the read stays in the landing place to be ingested, it is not moved (or deleted) unread;
- names: keys are data, never paths on this machine; a name with control characters or a backslash is refused
  (quarantined as a whole, ``special_file_refused``) and moved to ``failed/`` under a cleaned name;
- links, FIFOs, devices and hard links do not exist on S3.

Credentials and endpoint are the lake's: ``$CLM_LAKE_STORAGE_OPTIONS`` (``aws_endpoint_url``,
``aws_access_key_id``, ``aws_secret_access_key``, ``aws_region``, ``aws_allow_http`` as delta-rs names them)
and the usual ``AWS_*`` variables (``AWS_ENDPOINT_URL`` included), read by boto3.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from clm_lib.config import ClmConfig, DataConfig
from clm_lib.data.landing import FileRefused, size_words
from clm_lib.data.records import Problem
from clm_lib.errors import ConfigError, IngestError

SCHEMES = ("s3://", "s3a://")
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f\\]")


def is_remote(location: str) -> bool:
    return str(location).startswith(SCHEMES)


def staging_dir(cfg: ClmConfig) -> Path:
    """Where a writer finishes a file before it enters the landing location: the landing folder itself (hidden
    names, so that a rename publishes it whole), or a folder in the home when the landing location is on S3."""
    if is_remote(cfg.landing_uri):
        return cfg.home / "landing-staging"
    return cfg.landing_dir


def deliver(cfg: ClmConfig, path: Path, name: str) -> str:
    """Publish the finished file ``path`` (in :func:`staging_dir`) into the landing location as ``name``: a rename
    in the folder, or one PUT to S3 (readers see the whole object or none) and the local file removed. Returns
    where it now is, to show."""
    if is_remote(cfg.landing_uri):
        uri = S3Landing(cfg.landing_uri).put(path, name)
        path.unlink()
        return uri
    target = cfg.landing_dir / name
    os.replace(path, target)
    return str(target)


class Changed(IngestError):
    """The object is not the version that was listed (replaced, or deleted): left for the next run."""


@dataclass(frozen=True)
class LandingObject:
    """One object found in the landing place."""

    key: str
    size: int
    etag: str
    modified: datetime

    @property
    def name(self) -> str:
        return PurePosixPath(self.key).name


def _options() -> dict[str, str]:
    raw = os.environ.get("CLM_LAKE_STORAGE_OPTIONS")
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"CLM_LAKE_STORAGE_OPTIONS is not a JSON object: {exc}") from None
    if not isinstance(parsed, dict):
        raise ConfigError("CLM_LAKE_STORAGE_OPTIONS must be a JSON object of string options")
    return {str(k).lower(): str(v) for k, v in parsed.items()}


def client() -> Any:
    """A boto3 S3 client with the lake's endpoint and credentials (see the module docstring)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:  # pragma: no cover - boto3 is a dependency; this names it when an install lacks it
        raise ConfigError("an s3:// landing location needs boto3 (pip install boto3)") from None
    options = _options()
    pick = {
        "endpoint_url": ("aws_endpoint_url", "aws_endpoint", "endpoint_url", "endpoint"),
        "aws_access_key_id": ("aws_access_key_id", "access_key_id"),
        "aws_secret_access_key": ("aws_secret_access_key", "secret_access_key"),
        "aws_session_token": ("aws_session_token", "session_token"),
        "region_name": ("aws_region", "region", "aws_default_region"),
    }
    kwargs = {arg: next((options[k] for k in keys if k in options), None) for arg, keys in pick.items()}
    kwargs = {k: v for k, v in kwargs.items() if v}
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"})
    return boto3.client("s3", config=config, **kwargs)


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class S3Landing:
    """The landing place ``s3://bucket/prefix``: list, read, move, note."""

    def __init__(self, location: str, s3: Any | None = None) -> None:
        rest = location.split("://", 1)[1]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ConfigError(f"paths.landing {location!r} names no bucket")
        self.location = location.rstrip("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.s3 = s3 or client()

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def put(self, path: Path, name: str) -> str:
        """Upload a local file as ``<prefix><name>`` (one PUT: readers see the whole object or none of it)."""
        key = self.prefix + name
        self.s3.upload_file(str(path), self.bucket, key)
        return self.uri(key)

    def list(self, formats: list[str], extensions: dict[str, str]) -> list[LandingObject]:
        """Objects directly under the prefix to ingest, oldest first (then by name)."""
        found = []
        try:
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix,
                                                                       Delimiter="/")
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"]
                    name = key[len(self.prefix):]
                    if not name or name.startswith(".") or "/" in name:
                        continue
                    fmt = extensions.get(PurePosixPath(name).suffix.lower())
                    if fmt is None or fmt not in formats:
                        continue
                    found.append(LandingObject(key, int(item["Size"]), item["ETag"], item["LastModified"]))
        except Exception as exc:
            code = _error_code(exc)
            if code == "NoSuchBucket":
                raise IngestError(f"landing location {self.location} does not exist (no bucket {self.bucket!r})"
                                  ) from None
            raise IngestError(f"landing location {self.location} cannot be listed: {code or exc}") from None
        return sorted(found, key=lambda o: (o.modified, o.name))

    def check(self, obj: LandingObject, data: DataConfig) -> None:
        """Raise :class:`FileRefused` for an object that must not be read (a hostile name, over the size cap)."""
        if _BAD_NAME.search(obj.name):
            raise FileRefused(Problem.SPECIAL_FILE, f"{obj.name!r} has control characters or a backslash in its "
                              "name: not read")
        if obj.size > data.max_file_bytes:
            raise FileRefused(Problem.FILE_TOO_LARGE, f"{obj.name} is {size_words(obj.size)} ({obj.size} bytes), "
                              f"over data.max_file_bytes ({data.max_file_bytes}): split it into smaller files or "
                              "raise the limit; nothing of it was read")

    def read(self, obj: LandingObject, data: DataConfig) -> bytes:
        """The whole object, exactly the version listed; :class:`Changed` when it is not that version any more,
        :class:`FileRefused` when it is over ``data.max_file_bytes``."""
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=obj.key, IfMatch=obj.etag)
        except Exception as exc:
            code = _error_code(exc)
            if code in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                raise Changed(f"{obj.name} changed or vanished after it was listed: left for the next run") from None
            raise IngestError(f"cannot read {self.uri(obj.key)}: {code or exc}") from None
        body = response["Body"]
        try:
            content = body.read(data.max_file_bytes + 1)
        finally:
            body.close()
        if len(content) > data.max_file_bytes:
            raise FileRefused(Problem.FILE_TOO_LARGE, f"{obj.name} is larger than data.max_file_bytes "
                              f"({data.max_file_bytes}) although listed at {obj.size} bytes: nothing ingested")
        return content

    def move(self, obj: LandingObject, folder: str, tag: str) -> str:
        """Move the listed version of ``obj`` to ``<prefix><folder>/`` (a name taken gets ``.<tag>``); returns its
        new URI. Raises :class:`Changed`, leaving the object in place, when it is not that version any more.

        The copy and the delete are conditioned on the listed ETag (``CopySourceIfMatch``, ``If-Match``). Servers
        that ignore those headers (moto 5.2.6 does) are covered by checks of the ETag around the copy; there a
        version that lands in the milliseconds between the last check and the delete would be removed unread."""
        name = obj.name if not _BAD_NAME.search(obj.name) else _BAD_NAME.sub("_", obj.name)
        target = f"{self.prefix}{folder}/{name}"
        if self._etag(target) is not None:
            stem, suffix = PurePosixPath(name).stem, PurePosixPath(name).suffix
            target = f"{self.prefix}{folder}/{stem}.{tag}{suffix}"
        changed = Changed(f"{obj.name} changed after it was read: the new version stays for the next run")
        if self._etag(obj.key) != obj.etag:
            raise changed
        try:
            self.s3.copy_object(Bucket=self.bucket, Key=target, CopySourceIfMatch=obj.etag,
                                CopySource={"Bucket": self.bucket, "Key": obj.key})
        except Exception as exc:
            code = _error_code(exc)
            if code in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                raise changed from None
            raise IngestError(f"cannot move {self.uri(obj.key)} to {folder}/: {code or exc}") from None
        if "-" not in obj.etag and self._etag(target) != obj.etag:  # a single-part ETag survives a copy
            self.s3.delete_object(Bucket=self.bucket, Key=target)  # copied a newer version: undo, leave it
            raise changed
        if self._etag(obj.key) != obj.etag:
            return self.uri(target)  # ours is safe in folder/; the newer version stays to be ingested
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=obj.key, IfMatch=obj.etag)
        except Exception as exc:
            code = _error_code(exc)
            if code not in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                raise IngestError(f"cannot remove {self.uri(obj.key)} after copying it to {folder}/: "
                                  f"{code or exc}") from None
            # Replaced between the copy and the delete: the new version stays to be ingested.
        return self.uri(target)

    def _etag(self, key: str) -> str | None:
        """The ETag of ``key``, None when there is no such object."""
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=key)["ETag"]
        except Exception as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise IngestError(f"cannot look up {self.uri(key)}: {_error_code(exc) or exc}") from None

    def write_note(self, uri: str, text: str) -> None:
        """Write ``text`` to the object at ``uri`` (a note beside a set-aside object)."""
        key = uri.split(f"s3://{self.bucket}/", 1)[1]
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=text.encode("utf-8"))
