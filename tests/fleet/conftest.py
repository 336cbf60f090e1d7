"""Fixtures for the container-fleet tests (issue 3): podman systemd hosts over real SSH.

Everything here is real: containers from the test-host image
(tools/testbed/build-image.sh), each with systemd as PID 1 and its own sshd on
127.0.0.1, driven by ``ansible-playbook`` over OpenSSH. ``make test`` runs
``make fleet-image`` first; the ``fleet_image`` fixture still (re)builds the image when
it is missing or stale, so ``pytest tests/fleet`` works on its own as root.

Ports: the fleet test uses 127.0.0.1:22021-22029, molecule scenarios 22031+,
``make demo-fleet`` 22001-22010, so they can run side by side.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from fleetlib import (
    BUILD,
    IMAGE,
    REPO,
    VENV_BIN,
    WHEELS,
    MoleculeRuns,
    ansible_env,
    run_playbook,
)


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: run `make fleet-host-setup` (tools/testbed/host-setup.sh)")


# Containers, their names and the loopback ports are machine-wide, while build/ is per
# clone: a second `make test` (another clone, another engineer) waits here for the
# first one's fleet tests instead of replacing its containers.
LOCK_PATH = Path(os.environ.get("FLEET_TESTS_LOCK", "/tmp/fleetsafe-fleet-tests.lock"))


@pytest.fixture(scope="session")
def fleet_lock():
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
    t0 = time.monotonic()
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - t0 > 1800:
                    pytest.fail(f"another fleet test session has held {LOCK_PATH} for 30 min")
                time.sleep(2)
        waited = time.monotonic() - t0
        if waited > 2:
            print(f"fleet tests waited {waited:.0f} s for another session ({LOCK_PATH})")
        yield
    finally:
        os.close(fd)  # releases the lock


@pytest.fixture(scope="session")
def fleet_image(fleet_lock) -> str:
    """The test-host image, built once and cached by the hash of its build script."""
    _need("podman")
    _need("debootstrap")
    t0 = time.monotonic()
    subprocess.run([str(REPO / "tools" / "testbed" / "build-image.sh"), IMAGE], check=True,
                   capture_output=True, text=True, timeout=900)
    if time.monotonic() - t0 > 10:
        print(f"fleet image built in {time.monotonic() - t0:.0f} s")
    return IMAGE


@pytest.fixture(scope="session")
def collections_path() -> Path:
    """A collections dir in which fleetsafe.backup is this working tree (TESTBED §2).
    FLEET_COLLECTIONS_PATH points the tests at another copy (to try a patch)."""
    if os.environ.get("FLEET_COLLECTIONS_PATH"):
        return Path(os.environ["FLEET_COLLECTIONS_PATH"])
    root = BUILD / "collections"
    link = root / "ansible_collections" / "fleetsafe" / "backup"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink() or link.resolve() != REPO:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(REPO)
    return root


# ---------------------------------------------------------------- the controller
@pytest.fixture(scope="session")
def controller_ready(collections_path) -> Path:
    """The tests' wheel set and the recovery key pair, made ONCE before anything runs in
    parallel (concurrent tools/build-wheels.sh runs would race on the same directory).
    The wheels are rebuilt when an agent source file is newer than them, and stay as
    they are for the whole session."""
    wheels = WHEELS
    sums = wheels / "SHA256SUMS"
    sources = [p for p in (REPO / "agent").rglob("*") if p.suffix in (".py", ".toml")
               and "build" not in p.relative_to(REPO / "agent").parts]
    newest = max(p.stat().st_mtime for p in sources)
    if not sums.exists() or sums.stat().st_mtime < newest:
        subprocess.run([str(REPO / "tools" / "build-wheels.sh"), str(wheels)], cwd=REPO, check=True,
                       env=dict(os.environ, PIP=str(VENV_BIN / "pip")), timeout=600)
    log = BUILD / "test-logs" / "controller.log"
    r = run_playbook(REPO / "playbooks" / "recovery_key.yml", REPO / "inventories" / "local",
                     ansible_env(collections_path), log)
    assert r.rc == 0, r.summary()
    return wheels


@pytest.fixture(scope="session")
def molecule_runs(request, fleet_image, collections_path, controller_ready):
    selected = sorted({item.callspec.params["scenario"] for item in request.session.items
                       if item.originalname == "test_molecule_scenario"})
    env = ansible_env(collections_path, MOLECULE_GLOB="extensions/molecule/*/molecule.yml",
                      PY_COLORS="0", ANSIBLE_NOCOLOR="1")
    runs = MoleculeRuns(selected, env)
    yield runs
    runs.stop()
