#!/usr/bin/env python3
"""fleetctl: a fleet of systemd containers reachable over real SSH on loopback.

Each host is a podman container from the fleetsafe test-host image
(tools/testbed/build-image.sh) running systemd as PID 1 on the host network,
with its own sshd listening on 127.0.0.1:<port>. A fleet is named; its state
lives in ``<state-dir>/<name>/`` (default ``build/fleet/<name>/``):

    fleet.json        hosts: name, group, port, container, ssh user
    id_ed25519        the fleet's SSH key (0600), authorised for root and ``ops``
    known_hosts       each host's key, scanned after boot (strict checking stays on)
    ssh_config        for ``ssh -F`` and testinfra (``--ssh-config``)
    <host>-sshd.conf  the listen drop-in mounted into the container

and it writes an Ansible inventory directory (``hosts.yml``) with the groups
``servers`` and ``workstations``.

Stdlib only: the CLI runs with any python3; the fleet tests import ``Fleet``.

    fleetctl.py up demo --host srv-1:servers --host srv-2:servers \\
        --host ws-1:workstations --base-port 22001 --inventory inventories/demo
    fleetctl.py add demo ws-2 --group workstations
    fleetctl.py stop demo srv-2        # container stopped, host stays in the inventory
    fleetctl.py down demo
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_IMAGE = os.environ.get("FLEET_IMAGE", "localhost/fleetsafe-host:bookworm")
DEFAULT_STATE_DIR = REPO / "build" / "fleet"
LABEL = "org.fleetsafe.fleet"
GROUPS = ("servers", "workstations")
# The only addresses a fleet may use: the network rule of this project is loopback only.
LISTEN = "127.0.0.1"
NONROOT_USER = "ops"  # created in the image with passwordless sudo


class FleetError(RuntimeError):
    """A fleet operation failed; the message says which host and why."""


@dataclass
class Host:
    name: str
    group: str
    port: int
    container: str
    user: str = "root"  # the SSH user Ansible logs in as; "ops" means become
    podman_args: list[str] = field(default_factory=list)  # e.g. a small tmpfs to fill up

    @property
    def become(self) -> bool:
        return self.user != "root"


@dataclass
class Fleet:
    name: str
    state_dir: Path = DEFAULT_STATE_DIR
    image: str = DEFAULT_IMAGE
    inventory: Path | None = None
    group_vars: Path | None = None
    hosts: list[Host] = field(default_factory=list)

    # ---------------------------------------------------------------- paths
    @property
    def dir(self) -> Path:
        return Path(self.state_dir) / self.name

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def inventory_file(self) -> Path:
        assert self.inventory is not None
        return Path(self.inventory) / "hosts.yml"

    # ---------------------------------------------------------------- state
    @classmethod
    def load(cls, name: str, state_dir: Path = DEFAULT_STATE_DIR) -> Fleet:
        path = Path(state_dir) / name / "fleet.json"
        if not path.exists():
            raise FleetError(f"no fleet named {name!r} (no {path})")
        data = json.loads(path.read_text())
        hosts = [Host(**h) for h in data.pop("hosts")]
        for key in ("inventory", "group_vars"):
            if data.get(key):
                data[key] = Path(data[key])
        return cls(state_dir=Path(state_dir), hosts=hosts, **data)

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = {
            "name": self.name,
            "image": self.image,
            "inventory": str(self.inventory) if self.inventory else None,
            "group_vars": str(self.group_vars) if self.group_vars else None,
            "hosts": [asdict(h) for h in self.hosts],
        }
        tmp = self.dir / "fleet.json.tmp"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.dir / "fleet.json")

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise FleetError(f"fleet {self.name!r} has no host {name!r}")

    # ------------------------------------------------------------ lifecycle
    def up(self, specs: list[tuple[str, ...]], base_port: int, user: str = "root",
           timeout: float = 90.0) -> list[Host]:
        """Start hosts ``[(name, group[, user]), …]`` on consecutive ports from ``base_port``.

        ``user`` is the SSH user for hosts whose spec names none. Containers of an
        earlier fleet with the same name are replaced.
        """
        self.remove_containers()
        self.hosts = []
        self._ensure_key()
        self.known_hosts.write_text("")
        new = []
        for i, spec in enumerate(specs):
            host = self._new_host(spec[0], spec[1], base_port + i, spec[2] if len(spec) > 2 else user)
            new.append(host)
            self.hosts.append(host)  # so that the next one's port check sees it
        self.hosts = []
        self._start(new, timeout)
        return new

    def add(self, name: str, group: str, port: int | None = None, user: str = "root",
            timeout: float = 90.0, podman_args: list[str] | None = None) -> Host:
        """Start one more host and add it to the inventory (onboarding).

        ``podman_args`` are extra ``podman run`` options for this host only (the tests
        give one host a small tmpfs as its backup target, to fill it up later)."""
        if any(h.name == name for h in self.hosts):
            raise FleetError(f"host {name!r} is already in fleet {self.name!r}")
        if port is None:
            port = max(h.port for h in self.hosts) + 1 if self.hosts else 22001
        host = self._new_host(name, group, port, user)
        host.podman_args = list(podman_args or [])
        self._start([host], timeout)
        return host

    def stop(self, name: str) -> None:
        """Stop a host's container but keep it in the inventory: it becomes unreachable."""
        host = self.host(name)
        _run(["podman", "rm", "-f", "--ignore", host.container])

    def start(self, name: str, timeout: float = 90.0) -> None:
        """(Re)create a stopped host's container on its port; its data starts empty."""
        host = self.host(name)
        self.hosts.remove(host)
        self._start([host], timeout)

    def down(self) -> None:
        self.remove_containers()
        if self.inventory and self.inventory_file.exists():
            self.inventory_file.unlink()
        shutil.rmtree(self.dir, ignore_errors=True)

    def remove_containers(self) -> None:
        ids = _run(["podman", "ps", "-aq", "--filter", f"label={LABEL}={self.name}"]).split()
        if ids:
            _run(["podman", "rm", "-f", "-t", "0", *ids])

    # ---------------------------------------------------------- internals
    def _new_host(self, name: str, group: str, port: int, user: str) -> Host:
        if group not in GROUPS:
            raise FleetError(f"group must be one of {', '.join(GROUPS)}, not {group!r}")
        if not 1024 < port < 65536:
            raise FleetError(f"bad port {port}")
        if any(h.port == port for h in self.hosts):
            raise FleetError(f"port {port} is already used by this fleet")
        if _port_open(port):
            raise FleetError(f"127.0.0.1:{port} is already in use (another fleet or service?)")
        if user not in ("root", NONROOT_USER):
            raise FleetError(f"user must be root or {NONROOT_USER}, not {user!r}")
        return Host(name=name, group=group, port=port, container=f"fs-{self.name}-{name}", user=user)

    def _ensure_key(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        if not self.key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"fleetsafe-{self.name}",
                  "-f", str(self.key)])
        os.chmod(self.key, 0o600)

    def _start(self, hosts: list[Host], timeout: float) -> None:
        self._ensure_key()
        for h in hosts:
            conf = self.dir / f"{h.name}-sshd.conf"
            conf.write_text(
                f"# fleetsafe fleet {self.name}: loopback only, one port per container\n"
                f"Port {h.port}\nListenAddress {LISTEN}\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\n")
            conf.chmod(0o644)
            _run(["podman", "run", "-d", "--replace", "--name", h.container, "--hostname", h.name,
                  # sudo resolves its own hostname; the host network's /etc/hosts lacks it
                  "--add-host", f"{h.name}:127.0.1.1",
                  "--label", f"{LABEL}={self.name}", "--systemd=always", "--network", "host",
                  "-v", f"{conf}:/etc/ssh/sshd_config.d/10-listen.conf:ro",
                  "-v", f"{self.key}.pub:/root/.ssh/authorized_keys:ro",
                  "-v", f"{self.key}.pub:/home/{NONROOT_USER}/.ssh/authorized_keys:ro",
                  *h.podman_args, self.image, "/sbin/init"])
            self.hosts.append(h)
        self.save()
        deadline = time.monotonic() + timeout
        for h in hosts:
            self._wait_ssh(h, deadline)
        self._scan_host_keys(hosts)
        self.write_ssh_config()
        if self.inventory:
            self.write_inventory()

    def _wait_ssh(self, h: Host, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((LISTEN, h.port), timeout=1) as s:
                    s.settimeout(2)
                    if s.recv(64).startswith(b"SSH-2.0-OpenSSH"):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        logs = _run(["podman", "logs", "--tail", "20", h.container], check=False)
        raise FleetError(f"{h.name}: no sshd on {LISTEN}:{h.port} after boot\n{logs}")

    def _scan_host_keys(self, hosts: list[Host]) -> None:
        # Keep strict host key checking: record each container's freshly generated key.
        lines = [ln for ln in self.known_hosts.read_text().splitlines()
                 if not any(ln.startswith(f"[{LISTEN}]:{h.port} ") for h in hosts)] \
            if self.known_hosts.exists() else []
        for h in hosts:
            out = ""
            for _ in range(20):
                out = _run(["ssh-keyscan", "-T", "3", "-t", "ed25519", "-p", str(h.port), LISTEN],
                           check=False)
                if out.strip():
                    break
                time.sleep(0.3)
            if not out.strip():
                raise FleetError(f"{h.name}: ssh-keyscan got no host key from port {h.port}")
            lines += [ln for ln in out.splitlines() if ln and not ln.startswith("#")]
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def ssh_args(self) -> str:
        """The ssh options Ansible and testinfra use for this fleet."""
        return (f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes "
                "-o IdentitiesOnly=yes")

    def write_ssh_config(self) -> None:
        cp = self.dir / "cm"
        cp.mkdir(exist_ok=True)
        out = [f"# fleetsafe fleet {self.name} (generated by tools/fleet/fleetctl.py)"]
        for h in self.hosts:
            out += [f"Host {h.name}", f"  HostName {LISTEN}", f"  Port {h.port}", f"  User {h.user}",
                    f"  IdentityFile {self.key}", "  IdentitiesOnly yes",
                    f"  UserKnownHostsFile {self.known_hosts}", "  StrictHostKeyChecking yes",
                    "  ControlMaster auto", "  ControlPersist 60s", f"  ControlPath {cp}/%C", ""]
        self.ssh_config.write_text("\n".join(out) + "\n")

    def write_inventory(self, path: Path | None = None) -> Path:
        """Write ``hosts.yml`` (YAML written by hand: no PyYAML needed)."""
        target_dir = path or self.inventory
        if target_dir is None:
            raise FleetError(f"fleet {self.name!r} has no inventory directory")
        inv = Path(target_dir)
        inv.mkdir(parents=True, exist_ok=True)
        if self.group_vars and not (inv / "group_vars").exists():
            (inv / "group_vars").symlink_to(Path(self.group_vars).resolve())
        lines = [
            f"# Generated by tools/fleet/fleetctl.py for fleet {self.name!r}; rewritten on every",
            "# `make demo-fleet`. Hand-written settings belong in group_vars/.",
            "all:",
            "  vars:",
            "    ansible_connection: ssh",
            f"    ansible_ssh_private_key_file: {self.key}",
            f"    ansible_ssh_common_args: {self.ssh_args()}",
            "    ansible_python_interpreter: /usr/bin/python3",
            "  children:",
        ]
        for group in GROUPS:
            members = [h for h in self.hosts if h.group == group]
            lines.append(f"    {group}:")
            if not members:
                lines.append("      hosts: {}")
                continue
            lines.append("      hosts:")
            for h in members:
                hv = [f"ansible_host: {LISTEN}", f"ansible_port: {h.port}", f"ansible_user: {h.user}"]
                if h.become:
                    hv += ["ansible_become: true", "ansible_become_method: sudo"]
                lines.append(f"        {h.name}: {{{', '.join(hv)}}}")
        target = inv / "hosts.yml"
        tmp = inv / ".hosts.yml.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(target)
        return target

    def ssh(self, name: str, command: str, user: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a shell command on a host over SSH (as root unless ``user``)."""
        h = self.host(name)
        argv = ["ssh", "-F", str(self.ssh_config), "-l", user or "root", h.name, command]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((LISTEN, port), timeout=0.3):
            return True
    except OSError:
        return False


def _run(argv: list[str], check: bool = True) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and p.returncode != 0:
        raise FleetError(f"{' '.join(argv[:4])}…: exit {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p.stdout


# ---------------------------------------------------------------------- CLI
def _spec(text: str) -> tuple[str, ...]:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or parts[1] not in GROUPS \
            or (len(parts) == 3 and parts[2] not in ("root", NONROOT_USER)):
        raise argparse.ArgumentTypeError(
            f"expected NAME:servers|workstations[:root|{NONROOT_USER}], got {text!r}")
    return tuple(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="fleetctl", description=__doc__.split("\n\n")[0])
    ap.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("up", help="start a fleet (replaces one of the same name)")
    p.add_argument("name")
    p.add_argument("--host", dest="hosts", action="append", type=_spec, required=True,
                   metavar="NAME:GROUP[:USER]")
    p.add_argument("--base-port", type=int, default=22001)
    p.add_argument("--user", default="root", choices=["root", NONROOT_USER],
                   help="SSH user Ansible logs in as (ops: non-root with become)")
    p.add_argument("--image", default=DEFAULT_IMAGE)
    p.add_argument("--inventory", type=Path, help="inventory directory to write hosts.yml into")
    p.add_argument("--group-vars", type=Path,
                   help="group_vars directory to link into the inventory (if it has none)")

    p = sub.add_parser("add", help="start one more host and add it to the inventory")
    p.add_argument("name")
    p.add_argument("host")
    p.add_argument("--group", default="workstations", choices=GROUPS)
    p.add_argument("--port", type=int)
    p.add_argument("--user", default="root", choices=["root", NONROOT_USER])

    for cmd, text in (("stop", "remove a host's container, keep it in the inventory"),
                      ("start", "recreate a stopped host's container")):
        p = sub.add_parser(cmd, help=text)
        p.add_argument("name")
        p.add_argument("host")

    p = sub.add_parser("down", help="remove every container of the fleet and its state")
    p.add_argument("name")
    p = sub.add_parser("status", help="show the fleet's hosts and whether sshd answers")
    p.add_argument("name")

    a = ap.parse_args(argv)
    try:
        if a.cmd == "up":
            fleet = Fleet(a.name, state_dir=a.state_dir, image=a.image,
                          inventory=a.inventory.resolve() if a.inventory else None,
                          group_vars=a.group_vars.resolve() if a.group_vars else None)
            t0 = time.monotonic()
            fleet.up(a.hosts, a.base_port, user=a.user)
            print(f"fleet {a.name}: {len(fleet.hosts)} hosts up in {time.monotonic() - t0:.1f} s")
        elif a.cmd == "down":
            try:
                Fleet.load(a.name, a.state_dir).down()
            except FleetError:  # no state: still remove containers carrying the label
                Fleet(a.name, state_dir=a.state_dir).remove_containers()
            print(f"fleet {a.name}: removed")
            return 0
        else:
            fleet = Fleet.load(a.name, a.state_dir)
            if a.cmd == "add":
                h = fleet.add(a.host, a.group, a.port, a.user)
                print(f"fleet {a.name}: added {h.name} ({h.group}) on {LISTEN}:{h.port}")
            elif a.cmd == "stop":
                fleet.stop(a.host)
            elif a.cmd == "start":
                fleet.start(a.host)
        for h in fleet.hosts:
            state = "up" if _port_open(h.port) else "DOWN"
            print(f"  {h.name:<12} {h.group:<13} {LISTEN}:{h.port}  user={h.user:<5} {state}")
        if fleet.inventory:
            print(f"  inventory: {fleet.inventory_file}")
        print(f"  ssh: ssh -F {fleet.ssh_config} {fleet.hosts[0].name if fleet.hosts else 'HOST'}")
        return 0
    except FleetError as e:
        print(f"fleetctl: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
