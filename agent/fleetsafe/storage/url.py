"""Targets from agent.yml: ``open_backend(target) -> Backend``.

A target entry is a mapping ``{name, url, ...options}``:

=====================================  =============================================
url                                     options
=====================================  =============================================
``/abs/path``, ``file:///abs/path``     (none)
``sftp://user@host[:port]/abs/path``    ``key_file`` (required), ``known_hosts``
                                        (required), ``timeout``
``s3://host[:port]/bucket[/prefix]``    ``ca_file``, ``credentials_file`` (YAML
                                        with ``access_key``/``secret_key``) *or*
                                        ``access_key`` + ``secret_key``,
                                        ``region``, ``timeout``
=====================================  =============================================

Every scheme also accepts ``attempts`` (total tries, default 4) and
``backoff`` (first delay in seconds, default 0.5) for the ``RetryingBackend``
that wraps remote targets, plus the generic keys in ``GENERIC_KEYS`` that
other parts of the agent use.  Anything else is a ``ConfigError``: a typo in
``known_hots`` must not silently fall back to something weaker.

Contract: everything malformed raises ``ConfigError`` naming the target and
what is wrong, never a library error; secrets never appear in messages.  No
connection is made here: remote backends connect on first use.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from fleetsafe.errors import ConfigError, StorageError
from fleetsafe.storage.base import Backend, check_secret_file, validate_name
from fleetsafe.storage.local import LocalBackend
from fleetsafe.storage.wrappers import RetryingBackend

#: keys of a target entry that are not storage options (used by config, CLI, roles)
GENERIC_KEYS = frozenset({"name", "url", "role", "primary", "enabled", "description", "replicate"})
_RETRY_KEYS = frozenset({"attempts", "backoff"})
_OPTIONS = {
    "file": frozenset(),
    "sftp": frozenset({"key_file", "known_hosts", "timeout"}),
    "s3": frozenset({"ca_file", "credentials_file", "access_key", "secret_key", "region", "timeout"}),
}
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _err(target: dict[str, Any], msg: str) -> ConfigError:
    return ConfigError(f"target {target.get('name', '?')!r}: {msg}")


def _port(target: dict[str, Any], parts: SplitResult, default: int) -> int:
    try:
        port = parts.port
    except ValueError as exc:
        raise _err(target, f"invalid port in url: {exc}") from exc
    return default if port is None else port


def _abs_path(target: dict[str, Any], path: str) -> str:
    path = unquote(path)
    if not path.startswith("/") or path == "/":
        raise _err(target, f"url needs an absolute path below '/', got {path!r}")
    if any(part in (".", "..") for part in path.split("/")):
        raise _err(target, f"url path must not contain '.' or '..': {path!r}")
    return path


def _number(target: dict[str, Any], key: str, default: float, *, integer: bool = False) -> Any:
    value = target.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise _err(target, f"{key} must be a positive number, got {value!r}")
    if integer and not isinstance(value, int):
        raise _err(target, f"{key} must be an integer, got {value!r}")
    return value


def _scheme(target: dict[str, Any], url: str) -> str:
    if url.startswith("/"):
        return "file"
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https", "s3+http", "ftp"):
        raise _err(target, f"unsupported url {url!r}: use s3://host:port/bucket (always TLS) or sftp://")
    if scheme not in _OPTIONS:
        raise _err(target, f"unsupported url {url!r}: expected /abs/path, file://, sftp:// or s3://")
    return scheme


def _local(target: dict[str, Any], url: str) -> Backend:
    if url.startswith("/"):
        path = url
    else:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise _err(target, f"file:// urls name a local path (file:///abs/path), got host {parts.netloc!r}")
        path = parts.path
    path = _abs_path(target, path)
    try:
        return LocalBackend(path)
    except StorageError as exc:
        raise _err(target, str(exc)) from exc


def _sftp(target: dict[str, Any], url: str) -> Backend:
    from fleetsafe.storage.sftp import SFTPBackend  # paramiko only where SFTP is used

    parts = urlsplit(url)
    if parts.password is not None:
        raise _err(target, "passwords are never accepted in sftp urls; use key_file")
    if not parts.username:
        raise _err(target, "sftp url needs a user: sftp://user@host:port/path")
    if not parts.hostname:
        raise _err(target, "sftp url needs a host")
    if parts.query or parts.fragment:
        raise _err(target, "sftp url must not have a query or fragment")
    for key in ("key_file", "known_hosts"):
        if not target.get(key):
            raise _err(target, f"sftp targets need {key} (host keys are pinned, keys authenticate)")
    return SFTPBackend(
        parts.hostname,
        port=_port(target, parts, 22),
        user=unquote(parts.username),
        root=_abs_path(target, parts.path),
        key_file=str(target["key_file"]),
        known_hosts=str(target["known_hosts"]),
        timeout=float(_number(target, "timeout", 15.0)),
    )


def _s3_credentials(target: dict[str, Any]) -> tuple[str, str]:
    inline = "access_key" in target or "secret_key" in target
    if inline and "credentials_file" in target:
        raise _err(target, "give either credentials_file or access_key/secret_key, not both")
    if "credentials_file" in target:
        import yaml

        path = str(target["credentials_file"])
        check_secret_file(path, "credentials_file")
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except (OSError, yaml.YAMLError) as exc:
            # The YAML error would quote the file's text: name the file only.
            raise _err(target, f"credentials_file {path}: cannot read YAML ({type(exc).__name__})") from exc
        if not isinstance(data, dict):
            raise _err(target, f"credentials_file {path}: expected a mapping with access_key and secret_key")
        source: dict[str, Any] = data
        where = f"credentials_file {path}"
    elif inline:
        source, where = target, "target"
    else:
        raise _err(target, "s3 targets need credentials_file or access_key + secret_key")
    keys = source.get("access_key"), source.get("secret_key")
    if not all(isinstance(k, str) and k for k in keys):
        raise _err(target, f"{where}: access_key and secret_key must both be non-empty strings")
    return str(keys[0]), str(keys[1])


def _s3(target: dict[str, Any], url: str) -> Backend:
    from fleetsafe.storage.s3 import S3Backend

    parts = urlsplit(url)
    if parts.username or parts.password:
        raise _err(target, "credentials never go in the url; use credentials_file")
    if not parts.hostname:
        raise _err(target, "s3 url needs a host: s3://host:port/bucket/prefix")
    if parts.query or parts.fragment:
        raise _err(target, "s3 url must not have a query or fragment")
    port = _port(target, parts, 443)
    path = unquote(parts.path).strip("/")
    bucket, _, prefix = path.partition("/")
    if not _BUCKET.match(bucket):
        raise _err(target, f"s3 url needs a valid bucket name (3-63 of a-z 0-9 . -), got {bucket!r}")
    if prefix:
        try:
            validate_name(prefix)
        except StorageError as exc:
            raise _err(target, f"s3 prefix {prefix!r} is not a valid object path") from exc
    ca_file = target.get("ca_file")
    if ca_file is not None and not os.path.isfile(str(ca_file)):
        raise _err(target, f"ca_file {ca_file} does not exist")
    access_key, secret_key = _s3_credentials(target)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    timeout = float(_number(target, "timeout", 60.0))
    return S3Backend(
        f"https://{host}:{port}",
        bucket=bucket,
        prefix=prefix,
        access_key=access_key,
        secret_key=secret_key,
        region=str(target.get("region", "us-east-1")),
        ca_file=str(ca_file) if ca_file is not None else None,
        connect_timeout=min(10.0, timeout),
        read_timeout=timeout,
    )


def open_backend(target: dict[str, Any], *, retry: bool = True) -> Backend:
    """Build the backend for one agent.yml target entry.

    Remote targets (sftp, s3) come wrapped in ``RetryingBackend`` unless
    ``retry=False``; local ones never (a local disk error is not transient).
    """
    if not isinstance(target, dict):
        raise ConfigError(f"a target must be a mapping, got {type(target).__name__}")
    url = target.get("url")
    if not isinstance(url, str) or not url:
        raise _err(target, "missing url")
    scheme = _scheme(target, url)
    unknown = set(target) - GENERIC_KEYS - _RETRY_KEYS - _OPTIONS[scheme]
    if unknown:
        allowed = sorted(_OPTIONS[scheme] | _RETRY_KEYS)
        raise _err(target, f"unknown option(s) {sorted(unknown)} for a {scheme} target (allowed: {allowed})")
    if scheme == "file":
        return _local(target, url)
    try:
        backend = _sftp(target, url) if scheme == "sftp" else _s3(target, url)
    except ConfigError as exc:
        if str(exc).startswith("configuration error: target "):
            raise
        # A backend's own check (key file mode, https): add the target name.
        raise _err(target, str(exc.details.get("msg", exc))) from exc
    if not retry:
        return backend
    attempts = int(_number(target, "attempts", 4, integer=True))
    backoff = float(_number(target, "backoff", 0.5))
    return RetryingBackend(backend, attempts=attempts, backoff=backoff)
