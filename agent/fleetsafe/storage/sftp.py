"""SFTP backend (LOC-OFFSITE, ENC-TRANSIT over SSH), built on paramiko.

Contract, on top of ``base.Backend``:

* Authentication is by private key file only (never a password: nothing
  secret ever sits on a command line or in a URL).  The key file must not be
  accessible by other users, as OpenSSH requires.
* The server's host key is **pinned**: it must be listed in the given
  ``known_hosts`` file (OpenSSH format, ``[host]:port`` for ports other than
  22).  An unknown or different host key raises ``UntrustedTarget`` and is
  never retried: a man in the middle does not go away by asking again.
* The connection is opened lazily on first use and again after
  ``reconnect()``; so a target that is down raises ``BackendConnectionError``
  from the first operation, which ``RetryingBackend`` can retry.
* ``root`` is an absolute path as the server shows it (inside a chroot, e.g.
  ``/upload/web1``); it and every parent directory of an object are created
  on demand (mode 0700).
* ``store`` writes ``<dir>/.tmp-<name>-<random>``, closes it (which flushes
  the pipelined writes and reports their errors), asks the server to fsync
  it when it supports ``fsync@openssh.com``, then renames it over the final
  name with ``posix-rename@openssh.com`` (atomic replace).  Servers without
  that extension get a plain SFTP rename, which cannot replace, so an
  existing object is removed first: on such servers the replace of an
  existing name is not atomic (objects are immutable, so it only happens
  when a retry re-stores the same bytes).
* paramiko, socket and SFTP status errors are translated: dead connection,
  timeout, protocol garbage -> ``BackendConnectionError``; no such file ->
  ``ObjectNotFound`` (reads) or ``StorageError`` (writes); permission denied
  -> ``StorageError``; full disk or quota -> ``StorageFull`` (OpenSSH
  reports those as a bare ``Failure``: after a failed store the free space
  is asked for with ``statvfs@openssh.com``).
* A store never publishes a truncated object: paramiko discards the error
  replies of pipelined writes on close, so every reply is awaited first,
  and the temp file's size is compared with the data before the rename.
"""

from __future__ import annotations

import builtins
import errno
import os
import posixpath
import secrets
import socket
import stat
from collections.abc import Callable
from typing import TypeVar

import paramiko
from paramiko.sftp import SFTPError

from fleetsafe.errors import (
    BackendConnectionError,
    ConfigError,
    IntegrityError,
    ObjectNotFound,
    StorageError,
    StorageFull,
    UntrustedTarget,
)
from fleetsafe.storage.base import (
    TEMP_PREFIX,
    Backend,
    ObjectInfo,
    check_range,
    check_secret_file,
    dir_may_match,
    validate_name,
)

T = TypeVar("T")

#: bytes per write call; paramiko splits further into 32 KiB SFTP packets
_WRITE_CHUNK = 1 << 20
#: bytes per read call on a prefetched file
_READ_CHUNK = 1 << 20
#: 32 KiB read requests in flight per load: fills a WAN link, bounds memory (4 MiB)
_MAX_READ_REQUESTS = 128

# Exceptions that mean "the connection is unusable": retry on a new one.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    socket.timeout,
    ConnectionError,
    EOFError,
    SFTPError,  # protocol desynchronised (garbage packet, unexpected reply)
    paramiko.SSHException,
)


def _check_known_hosts(path: str) -> None:
    """Refuse ``@revoked`` / ``@cert-authority`` lines.

    paramiko skips marker lines without a word, so a host key "revoked" in
    the file would still be trusted by its plain line.  Plain host keys only.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.lstrip().startswith("@"):
                    raise ConfigError(
                        f"known_hosts file {path}:{lineno}: markers such as @revoked and @cert-authority are "
                        "not supported; list the pinned host keys only"
                    )
    except OSError as exc:
        raise ConfigError(f"known_hosts file {path}: {exc.strerror}") from exc


class SFTPBackend(Backend):
    """Objects under ``root`` on an SFTP server, host key pinned."""

    def __init__(
        self,
        host: str,
        *,
        user: str,
        root: str,
        key_file: str,
        known_hosts: str,
        port: int = 22,
        timeout: float = 15.0,
    ) -> None:
        if not root.startswith("/"):
            raise ConfigError(f"sftp root {root!r} must be an absolute path")
        self.host = host
        self.port = port
        self.user = user
        self.root = posixpath.normpath(root)
        self.timeout = timeout
        self.known_hosts = known_hosts
        self.location = f"sftp://{user}@{host}:{port}{self.root}"
        check_secret_file(key_file, "ssh key file")
        try:
            self._pkey = paramiko.PKey.from_path(key_file)
        except (OSError, ValueError, TypeError, paramiko.SSHException) as exc:
            # TypeError: cryptography's "password was not given but the key is encrypted"
            raise ConfigError(f"ssh key file {key_file}: cannot load private key ({exc})") from exc
        if not os.path.isfile(known_hosts):
            raise ConfigError(f"known_hosts file {known_hosts} does not exist (the host key must be pinned)")
        _check_known_hosts(known_hosts)
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    # --- connection -----------------------------------------------------------------
    def _connect(self) -> paramiko.SFTPClient:
        if self._sftp is not None:
            return self._sftp
        client = paramiko.SSHClient()
        try:
            # load_system_host_keys: read-only; load_host_keys would write
            # the file back on close.
            client.load_system_host_keys(self.known_hosts)
        except (OSError, paramiko.SSHException) as exc:
            raise ConfigError(f"known_hosts file {self.known_hosts}: {exc}") from exc
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                pkey=self._pkey,
                look_for_keys=False,  # only the configured key, never ~/.ssh or an agent
                allow_agent=False,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                channel_timeout=self.timeout,
            )
            transport = client.get_transport()
            if transport is not None:
                transport.set_keepalive(30)  # keep NAT/firewall state alive between packs
            sftp = client.open_sftp()
            # Without a channel timeout a hung server blocks the agent forever.
            sftp.get_channel().settimeout(self.timeout)  # type: ignore[union-attr]
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise UntrustedTarget(
                f"host key {exc.key.get_name()} {exc.key.fingerprint} differs from the one pinned in "
                f"{self.known_hosts} (possible man-in-the-middle)",
                backend=self.location,
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise StorageError(f"{self.location}: authentication as {self.user!r} failed with the configured key") from exc
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise UntrustedTarget(
                    f"host key not pinned in {self.known_hosts} (add it with ssh-keyscan after checking its fingerprint)",
                    backend=self.location,
                ) from exc
            raise BackendConnectionError(str(exc) or type(exc).__name__, backend=self.location) from exc
        except (OSError, EOFError) as exc:
            client.close()
            raise BackendConnectionError(str(exc) or type(exc).__name__, backend=self.location) from exc
        self._client, self._sftp = client, sftp
        return sftp

    def _alive(self) -> bool:
        """Transport up and the SFTP channel still open."""
        if self._client is None or self._sftp is None:
            return False
        transport = self._client.get_transport()
        channel = self._sftp.get_channel()
        return transport is not None and transport.is_active() and channel is not None and not channel.closed

    def reconnect(self) -> None:
        self.close()

    def close(self) -> None:
        sftp, client = self._sftp, self._client
        self._sftp = self._client = None
        if sftp is not None:
            try:
                sftp.close()
            except (OSError, EOFError, paramiko.SSHException):
                pass  # closing a dead connection: nothing left to release
        if client is not None:
            client.close()

    # --- error translation ------------------------------------------------------------
    def _translate(self, exc: BaseException, name: str, *, writing: bool) -> Exception:
        if isinstance(exc, _CONNECTION_ERRORS) or not self._alive():
            # A dead transport turns into assorted OSErrors ("Socket is
            # closed"); whatever the message, only a new connection helps.
            self.close()
            return BackendConnectionError(str(exc) or type(exc).__name__, backend=self.location)
        if isinstance(exc, OSError):
            text = str(exc.strerror or exc)
            if exc.errno == errno.ENOENT:
                if writing:
                    return StorageError(f"{self.location}: {name}: {text}")
                return ObjectNotFound(name=name, backend=self.location)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT) or any(
                word in text.lower() for word in ("no space", "quota", "disk full")
            ):
                return StorageFull(text, backend=self.location)
            if exc.errno == errno.EACCES:
                return StorageError(f"{self.location}: {name}: permission denied")
            return StorageError(f"{self.location}: {name}: {text}")
        return StorageError(f"{self.location}: {name}: {exc}")

    def _run(self, name: str, fn: Callable[[paramiko.SFTPClient], T], *, writing: bool = False) -> T:
        sftp = self._connect()
        try:
            return fn(sftp)
        except (OSError, EOFError, SFTPError, paramiko.SSHException) as exc:
            raise self._translate(exc, name, writing=writing) from exc

    def _path(self, name: str) -> str:
        return f"{self.root}/{validate_name(name)}"

    # --- primitives -----------------------------------------------------------------
    def load(self, name: str, offset: int = 0, size: int | None = None) -> bytes:
        path = self._path(name)
        check_range(name, offset, size)

        def op(sftp: paramiko.SFTPClient) -> bytes:
            with sftp.open(path, "rb") as fh:
                st = fh.stat()
                if not stat.S_ISREG(st.st_mode or 0):
                    raise OSError(errno.ENOENT, "not a regular file")
                total = st.st_size or 0
                # Never ask past the end: paramiko turns an EOF reply to a
                # prefetch into EOFError, which would look like a dead link.
                want = max(0, total - offset) if size is None else min(size, max(0, total - offset))
                if want == 0:
                    return b""
                fh.seek(offset)
                fh.prefetch(offset + want, max_concurrent_requests=_MAX_READ_REQUESTS)
                # Read in slices: one huge read() is several times slower in
                # paramiko's buffer handling.
                parts: builtins.list[bytes] = []
                got = 0
                while got < want:
                    part = fh.read(min(_READ_CHUNK, want - got))
                    if not part:
                        break  # shrank while we read: reported as a short read
                    parts.append(part)
                    got += len(part)
                return b"".join(parts)

        data = self._run(name, op)
        if size is not None and len(data) != size:
            raise IntegrityError(f"{self.location}: {name}: short read ({len(data)} of {size} bytes at {offset})")
        return data

    def store(self, name: str, data: bytes) -> None:
        path = self._path(name)
        parent, base = posixpath.split(path)
        tmp = f"{parent}/{TEMP_PREFIX}{base[:100]}-{secrets.token_hex(6)}"  # stays below NAME_MAX

        def op(sftp: paramiko.SFTPClient) -> None:
            try:
                fh = sftp.open(tmp, "wb")
            except FileNotFoundError:
                self._mkdirs(sftp, parent)
                fh = sftp.open(tmp, "wb")
            try:
                with fh:
                    fh.set_pipelined(True)
                    view = memoryview(data)
                    for pos in range(0, len(view), _WRITE_CHUNK):
                        fh.write(view[pos : pos + _WRITE_CHUNK])
                    self._drain_writes(sftp, fh)
                    self._fsync(sftp, fh)
                # Belt and braces against a lost write error: never publish
                # an object whose size is not the size we sent.
                written = sftp.stat(tmp).st_size
                if written != len(data):
                    raise OSError(f"short write: {written} of {len(data)} bytes reached the server")
                self._replace(sftp, tmp, path)
            except OSError as exc:
                free = self._free_bytes(sftp, parent) if self._alive() else None
                self._discard(sftp, tmp)
                if free is not None and free < len(data):
                    # OpenSSH reports ENOSPC/EDQUOT as a bare "Failure".
                    raise OSError(errno.ENOSPC, f"no space left ({free} bytes free, {len(data)} needed)") from exc
                raise
            except BaseException:
                self._discard(sftp, tmp)
                raise

        self._run(name, op, writing=True)

    def info(self, name: str) -> ObjectInfo:
        path = self._path(name)
        st = self._run(name, lambda sftp: sftp.stat(path))
        if not stat.S_ISREG(st.st_mode or 0):
            raise ObjectNotFound(name=name, backend=self.location)
        return ObjectInfo(name, st.st_size or 0)

    def delete(self, name: str) -> None:
        path = self._path(name)
        self._run(name, lambda sftp: sftp.remove(path))

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        validate_name(prefix, prefix=True)
        out: builtins.list[ObjectInfo] = []

        def walk(sftp: paramiko.SFTPClient, rel_dir: str) -> None:
            path = f"{self.root}/{rel_dir}" if rel_dir else self.root
            try:
                entries = sftp.listdir_attr(path)
            except FileNotFoundError:
                return  # nothing stored under this prefix yet
            for entry in entries:
                fn = entry.filename
                if fn.startswith("."):
                    continue  # temp files and anything not ours
                rel = f"{rel_dir}/{fn}" if rel_dir else fn
                mode = entry.st_mode or 0
                if stat.S_ISDIR(mode):
                    if dir_may_match(rel, prefix):
                        walk(sftp, rel)
                elif stat.S_ISREG(mode) and rel.startswith(prefix):
                    out.append(ObjectInfo(rel, entry.st_size or 0))

        start = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        self._run(prefix, lambda sftp: walk(sftp, start))
        out.sort(key=lambda o: o.name)
        return out

    # --- helpers ------------------------------------------------------------------------
    def _mkdirs(self, sftp: paramiko.SFTPClient, path: str) -> None:
        """mkdir -p, tolerant of a concurrent creator."""
        try:
            sftp.mkdir(path, mode=0o700)
        except FileNotFoundError:
            parent = posixpath.dirname(path)
            if parent == path:
                raise
            self._mkdirs(sftp, parent)
            self._mkdirs(sftp, path)
        except OSError:
            # OpenSSH reports "exists" as a bare Failure: accept a directory.
            if not stat.S_ISDIR(sftp.stat(path).st_mode or 0):
                raise

    @staticmethod
    def _drain_writes(sftp: paramiko.SFTPClient, fh: paramiko.SFTPFile) -> None:
        """Read the status reply of every pipelined write still outstanding.

        paramiko registers pipelined writes without an owner, and on close()
        it reads and *discards* their replies: a write the server refused
        (disk full, quota) would vanish and leave a silently truncated file.
        Waiting for each reply here turns such a refusal into an OSError.
        """
        fh.flush()
        reqs = getattr(fh, "_reqs", None)
        expecting = getattr(sftp, "_expecting", None)
        if reqs is None or expecting is None:
            return  # a paramiko without these internals: the size check in store() still guards
        while reqs:
            num = reqs.popleft()
            if num in expecting:  # not yet read by anyone: wait for it (raises on error)
                sftp._read_response(num)  # type: ignore[attr-defined]

    @staticmethod
    def _fsync(sftp: paramiko.SFTPClient, fh: paramiko.SFTPFile) -> None:
        """Ask the server to fsync the temp file before the rename publishes it.

        paramiko has no public call for the ``fsync@openssh.com`` extension;
        a server without it answers "unsupported", and then the data is as
        durable as the server's own write-back makes it.
        """
        try:
            sftp._request(paramiko.sftp.CMD_EXTENDED, "fsync@openssh.com", fh.handle)  # type: ignore[attr-defined]
        except OSError as exc:
            if "unsupported" not in str(exc).lower():
                raise

    @staticmethod
    def _free_bytes(sftp: paramiko.SFTPClient, path: str) -> int | None:
        """Bytes available to us at ``path`` (``statvfs@openssh.com``), None if unknown."""
        try:
            t, msg = sftp._request(paramiko.sftp.CMD_EXTENDED, "statvfs@openssh.com", path)  # type: ignore[attr-defined]
            if t != paramiko.sftp.CMD_EXTENDED_REPLY:
                return None
            _bsize, frsize, _blocks, _bfree, bavail = (msg.get_int64() for _ in range(5))
        except (OSError, EOFError, SFTPError, paramiko.SSHException):
            return None
        return int(frsize * bavail)

    @staticmethod
    def _replace(sftp: paramiko.SFTPClient, tmp: str, path: str) -> None:
        try:
            sftp.posix_rename(tmp, path)
            return
        except OSError as exc:
            if "unsupported" not in str(exc).lower():
                raise
        # Plain SFTP v3 rename refuses to replace: remove first (not atomic,
        # see the module docstring).
        try:
            sftp.remove(path)
        except FileNotFoundError:
            pass
        sftp.rename(tmp, path)

    def _discard(self, sftp: paramiko.SFTPClient, tmp: str) -> None:
        if not self._alive():
            return  # the temp file stays; list() never shows dot files
        try:
            sftp.remove(tmp)
        except (OSError, EOFError, SFTPError, paramiko.SSHException):
            pass  # best effort: the original error is the one to report
