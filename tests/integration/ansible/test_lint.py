"""Static checks that `make test` enforces: ansible-lint with the production
profile (ECOSYSTEM C17) and antsibull-changelog lint (D3)."""

from __future__ import annotations

import os
import subprocess

import harness
import pytest

pytestmark = pytest.mark.ansible


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update({"ANSIBLE_COLLECTIONS_PATH": str(harness.link_collection()), "NO_COLOR": "1",
                "ANSIBLE_CONFIG": str(harness.ROOT / "ansible.cfg")})
    return subprocess.run(list(argv), check=False, cwd=harness.ROOT, env=env, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)


def test_ansible_lint_production_profile_is_clean():
    out = _run(str(harness.VENV_BIN / "ansible-lint"), "--nocolor")
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    assert "Profile 'production'" in out.stdout + out.stderr


def test_changelog_fragments_are_valid():
    out = _run(str(harness.VENV_BIN / "antsibull-changelog"), "lint")
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr
