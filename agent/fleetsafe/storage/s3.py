"""S3 backend (LOC-CLOUD, ENC-TRANSIT): any S3-compatible object store over TLS.

Contract, on top of ``base.Backend``:

* **HTTPS only.**  An ``http://`` endpoint raises ``ConfigError`` whatever
  the options: ENC-TRANSIT refuses plaintext endpoints, and there is no
  "insecure" switch to leave on by mistake.  The server certificate is
  checked against ``ca_file`` (a PEM bundle) or the system CAs; a failed
  check raises ``UntrustedTarget`` (never retried) naming
  CERTIFICATE_VERIFY_FAILED.
* Path-style addressing (``https://host:port/bucket/key``), which every
  S3-compatible server supports and which needs no wildcard DNS or
  certificate; region defaults to ``us-east-1``; SigV4.
* Object ``name`` is the key ``<prefix>/<name>`` in ``bucket``.  The bucket
  must exist: creating buckets is an administrator's job, the agent's
  identity should not hold that right.
* ``store`` is one PutObject, which S3 makes atomic (readers see the old or
  the new object, never a part).  It sends Content-MD5 so the server rejects
  bytes damaged on the way.  Objects up to 5 GiB (the single PUT limit);
  fleetsafe packs are a few MiB.
* ``load`` with an offset or size is one ranged GET.
* Credentials come from the caller (``url.open_backend`` reads them from a
  file or the target config); they live only inside the boto3 client and
  never appear in ``repr``, ``location`` or error messages.
* botocore's own retries are off: ``RetryingBackend`` owns the retry policy,
  so there is one place to read it.  Throttling and 5xx answers are
  ``BackendConnectionError`` so that it retries them.
* Error translation: NoSuchKey/404 -> ``ObjectNotFound``; connection,
  timeout, throttling, 5xx -> ``BackendConnectionError``; certificate ->
  ``UntrustedTarget``; AccessDenied, bad credentials, missing bucket ->
  ``StorageError``; quota -> ``StorageFull``.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import os
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from fleetsafe.errors import (
    BackendConnectionError,
    ConfigError,
    IntegrityError,
    ObjectNotFound,
    StorageError,
    StorageFull,
    UntrustedTarget,
)
from fleetsafe.storage.base import Backend, ObjectInfo, check_range, validate_name

T = TypeVar("T")

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_TRANSIENT = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "RequestLimitExceeded",
}
_FULL = {"QuotaExceeded", "XMinioStorageFull", "InsufficientStorage", "XAmzQuotaExceeded"}
_DENIED = {
    "AccessDenied",
    "403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "AccountProblem",
}


class _Credentials:
    """Holds the key pair; its repr never shows them (tracebacks, logs)."""

    __slots__ = ("access_key", "secret_key")

    def __init__(self, access_key: str, secret_key: str) -> None:
        self.access_key = access_key
        self.secret_key = secret_key

    def __repr__(self) -> str:
        return "_Credentials(<hidden>)"


class S3Backend(Backend):
    """Objects under ``prefix`` in ``bucket`` on an HTTPS S3 endpoint."""

    def __init__(
        self,
        endpoint: str,
        *,
        bucket: str,
        access_key: str,
        secret_key: str,
        prefix: str = "",
        region: str = "us-east-1",
        ca_file: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        list_page_size: int = 1000,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme != "https":
            raise ConfigError(
                f"S3 endpoint {endpoint!r} is not https:// - plaintext endpoints are refused (ENC-TRANSIT)"
            )
        if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.username:
            raise ConfigError(f"S3 endpoint {endpoint!r} must be https://host[:port] only")
        if ca_file is not None and not os.path.isfile(ca_file):
            raise ConfigError(f"ca_file {ca_file} does not exist")
        if not access_key or not secret_key:
            raise ConfigError("S3 credentials need both access_key and secret_key")
        prefix = prefix.strip("/")
        if prefix:
            validate_name(prefix)  # the same rules as object names: no "..", no empty parts
        self.endpoint = f"https://{parts.netloc}"
        self.bucket = bucket
        self.prefix = prefix
        self.region = region
        self.ca_file = ca_file
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.list_page_size = list_page_size
        self.location = f"s3://{parts.netloc}/{bucket}" + (f"/{prefix}" if prefix else "")
        self._credentials = _Credentials(access_key, secret_key)
        self._client: Any = None

    # --- client ------------------------------------------------------------------------
    def _s3(self) -> Any:
        if self._client is None:
            # Imported here: boto3 costs ~0.3 s to import, and hosts that
            # only use local or SFTP targets should not pay for it.
            import boto3
            from botocore.config import Config

            options: dict[str, Any] = {
                "region_name": self.region,
                "signature_version": "s3v4",
                "s3": {"addressing_style": "path"},
                "connect_timeout": self.connect_timeout,
                "read_timeout": self.read_timeout,
                "retries": {"total_max_attempts": 1},  # RetryingBackend retries
                # Checksums only when the API requires them: botocore >= 1.36
                # otherwise sends aws-chunked CRC trailers that several
                # S3-compatible servers reject.  Content-MD5 covers PUTs.
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
            }
            try:
                config = Config(**options)
            except TypeError:
                # botocore < 1.36 knows neither option and sends no trailers.
                del options["request_checksum_calculation"], options["response_checksum_validation"]
                config = Config(**options)
            session = boto3.session.Session()
            self._client = session.client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id=self._credentials.access_key,
                aws_secret_access_key=self._credentials.secret_key,
                verify=self.ca_file if self.ca_file else True,
                config=config,
            )
        return self._client

    def reconnect(self) -> None:
        self.close()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _key(self, name: str) -> str:
        validate_name(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    # --- error translation ----------------------------------------------------------
    def _translate(self, exc: Exception, name: str) -> Exception:
        from botocore import exceptions as bx

        if isinstance(exc, bx.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            message = str(err.get("Message") or code or status)
            if code in _NOT_FOUND:
                return ObjectNotFound(name=name, backend=self.location)
            if code == "NoSuchBucket":
                return StorageError(f"{self.location}: bucket {self.bucket!r} does not exist")
            if code in _FULL:
                return StorageFull(message, backend=self.location)
            if code in _DENIED or status == 403:
                return StorageError(f"{self.location}: {name}: access denied ({code})")
            if code in _TRANSIENT or status >= 500 or status == 429:
                return BackendConnectionError(f"{code or status}: {message}", backend=self.location)
            return StorageError(f"{self.location}: {name}: {code} {message}")
        if isinstance(exc, bx.SSLError):
            text = str(exc)
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text.lower():
                return UntrustedTarget(
                    "TLS certificate not trusted (CERTIFICATE_VERIFY_FAILED); set ca_file to the CA that "
                    f"signed the server certificate (currently {self.ca_file or 'system CAs'})",
                    backend=self.location,
                )
            if "hostname" in text.lower() or "doesn't match" in text:
                return UntrustedTarget(f"TLS certificate does not name this host: {text}", backend=self.location)
            return BackendConnectionError(f"TLS: {text}", backend=self.location)
        if isinstance(exc, (bx.ConnectionError, bx.HTTPClientError, bx.IncompleteReadError)):
            # HTTPClientError covers ReadTimeout, ConnectionClosed, ResponseStreamingError.
            return BackendConnectionError(str(exc), backend=self.location)
        if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
            return ConfigError(f"{self.location}: {exc}")
        if isinstance(exc, (bx.BotoCoreError, OSError)):
            return StorageError(f"{self.location}: {name}: {exc}")
        raise exc  # not a library error: a bug of ours, let it surface unchanged

    def _run(self, name: str, fn: Callable[[Any], T]) -> T:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._s3()
        try:
            return fn(client)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._translate(exc, name) from exc

    # --- primitives ---------------------------------------------------------------------
    def load(self, name: str, offset: int = 0, size: int | None = None) -> bytes:
        key = self._key(name)
        check_range(name, offset, size)
        if size == 0:
            self.info(name)  # still ObjectNotFound for a missing object
            return b""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if offset or size is not None:
            end = "" if size is None else str(offset + size - 1)
            args["Range"] = f"bytes={offset}-{end}"

        def op(s3: Any) -> bytes:
            from botocore.exceptions import ClientError

            try:
                resp = s3.get_object(**args)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "InvalidRange":
                    raise
                # 416: the range starts at or past the end of the object.
                self.info(name)
                return b""
            body = resp["Body"]
            try:
                data = bytes(body.read())
            finally:
                body.close()
            if "Range" in args and not resp.get("ContentRange"):
                # A server that ignores Range answers 200 with the whole object.
                data = data[offset:] if size is None else data[offset : offset + size]
            return data

        data = self._run(name, op)
        if size is not None and len(data) != size:
            raise IntegrityError(f"{self.location}: {name}: short read ({len(data)} of {size} bytes at {offset})")
        return data

    def store(self, name: str, data: bytes) -> None:
        key = self._key(name)
        # usedforsecurity=False: MD5 is only a transfer checksum here; FIPS
        # hosts would refuse it otherwise.
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        self._run(name, lambda s3: s3.put_object(Bucket=self.bucket, Key=key, Body=bytes(data), ContentMD5=md5))

    def info(self, name: str) -> ObjectInfo:
        key = self._key(name)
        resp = self._run(name, lambda s3: s3.head_object(Bucket=self.bucket, Key=key))
        return ObjectInfo(name, int(resp["ContentLength"]))

    def delete(self, name: str) -> None:
        key = self._key(name)
        # S3 deletes of missing keys succeed silently; the interface promises
        # ObjectNotFound, so look first (deletes are rare: prune only).
        self.info(name)
        self._run(name, lambda s3: s3.delete_object(Bucket=self.bucket, Key=key))

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        validate_name(prefix, prefix=True)
        base = f"{self.prefix}/" if self.prefix else ""
        out: builtins.list[ObjectInfo] = []

        def op(s3: Any) -> None:
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base + prefix, PaginationConfig={"PageSize": self.list_page_size}
            )
            for page in pages:
                for obj in page.get("Contents", ()):
                    name = obj["Key"][len(base) :]
                    try:
                        validate_name(name)
                    except StorageError:
                        continue  # not written by us (another tool, a "dir/" marker)
                    out.append(ObjectInfo(name, int(obj["Size"])))

        self._run(prefix, op)
        out.sort(key=lambda o: o.name)
        return out
