"""fleetsafe.config: strict agent.yml schema with errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from fleetsafe.config import (
    DEFAULT_CONFIG,
    load_config,
    parse_config,
    resolve_config_path,
)
from fleetsafe.errors import EXIT_USAGE, ConfigError


def base(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": 1,
        "host": "web1",
        "key_file": "/etc/fleetsafe/keys/repo.key",
        "sources": ["/etc", "/home/"],
        "targets": [{"name": "onsite", "url": "/srv/fleetsafe/repo"}],
    }
    data.update(over)
    return data


def test_minimal_config_defaults() -> None:
    cfg = parse_config(base())
    assert cfg.host == "web1"
    assert cfg.sources == ("/etc", "/home")  # trailing slash normalised
    assert cfg.primary.name == "onsite" and cfg.primary.primary  # a lone target is primary
    assert cfg.state_dir == Path("/var/lib/fleetsafe")
    assert cfg.audit_log == Path("/var/log/fleetsafe/audit.jsonl")
    assert cfg.one_file_system is True
    assert cfg.recovery_public_key is None
    assert cfg.verify.read_data_percent == 0
    assert cfg.lock_file == Path("/var/lib/fleetsafe/agent.lock")


def test_full_config(tmp_path: Path) -> None:
    data = base(
        recovery_public_key="/etc/fleetsafe/keys/recovery.pub",
        state_dir=str(tmp_path / "state"),
        audit_log=str(tmp_path / "audit.jsonl"),
        exclude=["*.tmp", "/var/cache/*"],
        one_file_system=False,
        targets=[
            {"name": "onsite", "url": "file:///srv/repo", "primary": True},
            {"name": "offsite", "url": "sftp://backup@vault:22/srv/web1", "known_hosts": "/etc/fleetsafe/known_hosts"},
        ],
        verify={"read_data_percent": 2.5},
        retention={"min_days": 365},
    )
    p = tmp_path / "agent.yml"
    p.write_text(yaml.safe_dump(data))
    cfg = load_config(p)
    assert cfg.target("offsite").options == {"known_hosts": "/etc/fleetsafe/known_hosts"}
    assert cfg.target(None).name == "onsite"
    assert cfg.exclude == ("*.tmp", "/var/cache/*")
    assert cfg.verify.read_data_percent == 2.5
    assert cfg.path == p


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"exlude": ["x"]}, "exlude: unknown key"),
        ({"version": 2}, "unsupported version 2"),
        ({"version": True}, "version: expected an integer, got a boolean"),
        ({"sources": ["etc"]}, "sources[0]: expected an absolute path"),
        ({"sources": ["/etc/../root"]}, "sources[0]: path must not contain"),
        ({"sources": []}, "sources: expected at least one path"),
        ({"sources": "/etc"}, "sources: expected a list"),
        ({"key_file": 3}, "key_file: expected an absolute path, got an integer"),
        ({"one_file_system": "yes"}, "one_file_system: expected a boolean"),
        ({"targets": [{"name": "a", "url": "http://x/y"}]}, "unsupported scheme 'http'"),
        ({"targets": [{"name": "a"}]}, "targets[0].url: required key is missing"),
        ({"targets": [{"name": "a b", "url": "/r"}]}, "targets[0].name"),
        ({"targets": [{"name": "a", "url": "/r"}, {"name": "a", "url": "/s", "primary": True}]}, "duplicate target name"),
        ({"targets": [{"name": "a", "url": "/r"}, {"name": "b", "url": "/s"}]}, "exactly one target with primary: true, got 0"),
        ({"verify": {"read_data_percent": 101}}, "expected 0..100"),
        ({"verify": {"sample": 1}}, "verify.sample: unknown key"),
    ],
)
def test_strict_errors_name_the_key(over: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config(base(**over))
    assert needle in str(ei.value)
    assert ei.value.exit_code == EXIT_USAGE


def test_missing_required_key() -> None:
    data = base()
    del data["key_file"]
    with pytest.raises(ConfigError, match="key_file: required key is missing"):
        parse_config(data)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("version: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    with pytest.raises(ConfigError, match=r"empty\.yml: the file is empty"):
        load_config(empty)


def test_duplicate_keys_are_rejected_at_any_level(tmp_path: Path) -> None:
    good = yaml.safe_dump(base(), sort_keys=False)
    cases = {
        # an appended second targets: would silently switch the repository
        "targets": (good + "targets:\n  - {name: other, url: /srv/other}\n", "'targets'"),
        "sources": (good + "sources: [/tmp]\n", "'sources'"),
        "nested": (good.replace("version: 1\n", "version: 1\nverify:\n  read_data_percent: 5\n  read_data_percent: 50\n"),
                   "'read_data_percent'"),
        "in_list": (good + "hooks:\n  timeout: 5\n  timeout: 6\n", "'timeout'"),
    }
    for name, (text, key) in cases.items():
        f = tmp_path / f"{name}.yml"
        f.write_text(text)
        lines = [i for i, ln in enumerate(text.splitlines(), 1) if ln.strip().startswith(key.strip("'") + ":")]
        assert len(lines) == 2, name
        with pytest.raises(ConfigError) as ei:
            load_config(f)
        msg = str(ei.value)
        assert f"duplicate key {key}" in msg and f"line {lines[0]}" in msg and f"line {lines[1]}" in msg, msg
        assert str(f) in msg and ei.value.exit_code == EXIT_USAGE
    # a target list entry with a key twice
    f = tmp_path / "target.yml"
    f.write_text(good.replace("url: /srv/fleetsafe/repo", "url: /srv/fleetsafe/repo\n  url: /srv/elsewhere"))
    with pytest.raises(ConfigError, match=r"duplicate key 'url' \(line \d+ and line \d+\)"):
        load_config(f)
    # YAML merge keys stay allowed: an explicit key may override a merged one
    from fleetsafe.config import _strict_loader

    assert yaml.load("a: &b {x: 1}\nc: {<<: *b, x: 2}\n", Loader=_strict_loader()) == {"a": {"x": 1}, "c": {"x": 2}}


def test_unknown_target_name() -> None:
    cfg = parse_config(base())
    with pytest.raises(ConfigError, match="no such target"):
        cfg.target("cloud")


def test_resolve_config_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEETSAFE_CONFIG", raising=False)
    assert resolve_config_path(None) == Path(DEFAULT_CONFIG)
    monkeypatch.setenv("FLEETSAFE_CONFIG", "/tmp/x.yml")
    assert resolve_config_path(None) == Path("/tmp/x.yml")
    assert resolve_config_path("/a.yml") == Path("/a.yml")


def test_hooks() -> None:
    cfg = parse_config(base(hooks={"before_backup": ["/usr/bin/pg_dump -f '/var/backups/db dump.sql' app"],
                                   "after_backup": [["/bin/systemctl", "start", "app"]], "timeout": 60}))
    assert cfg.hooks.before_backup == (("/usr/bin/pg_dump", "-f", "/var/backups/db dump.sql", "app"),)
    assert cfg.hooks.after_backup == (("/bin/systemctl", "start", "app"),)
    assert cfg.hooks.timeout == 60
    assert parse_config(base()).hooks.before_backup == ()
    for bad, needle in [({"before_backup": ["pg_dump x"]}, "absolute program path"),
                        ({"before_backup": [3]}, "expected a command"),
                        ({"befor_backup": []}, "hooks.befor_backup: unknown key"),
                        ({"timeout": 0}, "positive")]:
        with pytest.raises(ConfigError, match=needle):
            parse_config(base(hooks=bad))
