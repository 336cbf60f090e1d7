"""``/etc/fleetsafe/agent.yml`` -> a typed, validated ``AgentConfig``.

Contract: ``load_config(path)`` returns an ``AgentConfig`` or raises
``ConfigError`` (exit 2) naming the offending key by its path in the file
(``targets[1].url: expected a string, got 42``).  The schema is strict:
unknown keys are errors, because a typo such as ``exlude:`` silently backing
up everything is worse than a failed run.  The schema is documented in
docs/cli.md ("Configuration"); keep the two in step.

The path comes from ``--config``, else ``$FLEETSAFE_CONFIG``, else
``/etc/fleetsafe/agent.yml`` (``resolve_config_path``).  Every path in the
file may point anywhere, so tests run the whole CLI as non-root against
temporary directories.

Nothing here touches the repository or the keys; it only parses.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetsafe.errors import ConfigError

DEFAULT_CONFIG = "/etc/fleetsafe/agent.yml"
CONFIG_ENV = "FLEETSAFE_CONFIG"
CONFIG_VERSION = 1

DEFAULT_STATE_DIR = "/var/lib/fleetsafe"
DEFAULT_AUDIT_LOG = "/var/log/fleetsafe/audit.jsonl"

_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$")


@dataclass(frozen=True)
class TargetConfig:
    """One storage target.  ``options`` holds backend options (``ca_file``,
    ``known_hosts``, credentials files ...) which the storage layer validates."""

    name: str
    url: str
    primary: bool
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VerifyConfig:
    #: share of blobs ``fleetsafe verify`` decrypts without --read-data flags (VER-CHECKSUM)
    read_data_percent: float = 0.0


@dataclass(frozen=True)
class HooksConfig:
    """Commands around a backup (argv lists; see fleetsafe.hooks)."""

    before_backup: tuple[tuple[str, ...], ...] = ()
    after_backup: tuple[tuple[str, ...], ...] = ()
    timeout: float = 3600.0


@dataclass(frozen=True)
class AgentConfig:
    version: int
    host: str
    key_file: Path
    recovery_public_key: Path | None
    state_dir: Path
    audit_log: Path
    sources: tuple[str, ...]
    exclude: tuple[str, ...]
    one_file_system: bool
    targets: tuple[TargetConfig, ...]
    verify: VerifyConfig
    #: opaque to the engine; read by prune (RET-MIN / RET-HOLD)
    retention: dict[str, Any] = field(default_factory=dict)
    hooks: HooksConfig = field(default_factory=HooksConfig)
    #: where the file was read from (for messages)
    path: Path | None = None

    @property
    def primary(self) -> TargetConfig:
        for t in self.targets:
            if t.primary:
                return t
        raise ConfigError("no primary target")  # unreachable after validation

    def target(self, name: str | None) -> TargetConfig:
        """The named target, or the primary one when ``name`` is None."""
        if name is None:
            return self.primary
        for t in self.targets:
            if t.name == name:
                return t
        known = ", ".join(t.name for t in self.targets)
        raise ConfigError(f"--target {name!r}: no such target (configured: {known})")

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "agent.lock"

    @property
    def restore_dir(self) -> Path:
        return self.state_dir / "restore"


def resolve_config_path(cli_value: str | None) -> Path:
    """``--config`` beats ``$FLEETSAFE_CONFIG`` beats the default."""
    if cli_value:
        return Path(cli_value)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    return Path(DEFAULT_CONFIG)


# --- small typed readers; each names the key path in its error -------------------


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__
    )


def _expect(where: str, value: object, kind: type | tuple[type, ...], what: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int subclass: "version: true" must not pass as an integer.
    if isinstance(value, bool) and bool not in kinds:
        raise ConfigError(f"{where}: expected {what}, got {_type_name(value)}")
    if not isinstance(value, kinds):
        raise ConfigError(f"{where}: expected {what}, got {_type_name(value)}")
    return value


def _abs_path(where: str, value: object) -> str:
    text = _expect(where, value, str, "an absolute path")
    if not text.startswith("/"):
        raise ConfigError(f"{where}: expected an absolute path, got {text!r}")
    if "\0" in text:
        raise ConfigError(f"{where}: path contains a NUL byte")
    parts = text.split("/")
    if any(p in (".", "..") for p in parts):
        raise ConfigError(f"{where}: path must not contain '.' or '..' components, got {text!r}")
    # Normalise "//etc/" -> "/etc" so that sources compare and nest correctly.
    norm = "/" + "/".join(p for p in parts if p)
    return norm


def _check_keys(where: str, data: dict[str, Any], allowed: set[str], required: set[str]) -> None:
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"{where}: keys must be strings, got {key!r}")
        if key not in allowed:
            raise ConfigError(f"{where}{'.' if where else ''}{key}: unknown key (expected one of {', '.join(sorted(allowed))})")
    for key in sorted(required):
        if key not in data:
            raise ConfigError(f"{where}{'.' if where else ''}{key}: required key is missing")


_TOP_KEYS = {
    "version",
    "host",
    "key_file",
    "recovery_public_key",
    "state_dir",
    "audit_log",
    "sources",
    "exclude",
    "one_file_system",
    "targets",
    "verify",
    "retention",
    "hooks",
}
_TOP_REQUIRED = {"version", "key_file", "sources", "targets"}
_TARGET_KEYS = {"name", "url", "primary"}


def _parse_target(where: str, raw: object) -> TargetConfig:
    data = _expect(where, raw, dict, "a mapping with name and url")
    for key in ("name", "url"):
        if key not in data:
            raise ConfigError(f"{where}.{key}: required key is missing")
    name = _expect(f"{where}.name", data["name"], str, "a string")
    if not _TARGET_NAME.match(name):
        raise ConfigError(f"{where}.name: expected [A-Za-z0-9][A-Za-z0-9_.-]*, got {name!r}")
    url = _expect(f"{where}.url", data["url"], str, "a URL or an absolute path")
    if not url or "\0" in url:
        raise ConfigError(f"{where}.url: expected a URL or an absolute path, got {url!r}")
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "" and not url.startswith("/"):
        raise ConfigError(f"{where}.url: expected an absolute path or scheme://..., got {url!r}")
    if scheme and scheme not in ("file", "sftp", "s3"):
        # ENC-TRANSIT: plaintext schemes (http, ftp) are refused outright.
        raise ConfigError(f"{where}.url: unsupported scheme {scheme!r} (expected file, sftp or s3)")
    primary = _expect(f"{where}.primary", data.get("primary", False), bool, "a boolean")
    options = {k: v for k, v in data.items() if k not in _TARGET_KEYS}
    for key in options:
        if not isinstance(key, str):
            raise ConfigError(f"{where}: option keys must be strings, got {key!r}")
    return TargetConfig(name=name, url=url, primary=primary, options=options)


def _parse_command(where: str, raw: object) -> tuple[str, ...]:
    """An argv list, or a string split like a shell would split words (no shell runs it)."""
    import shlex

    if isinstance(raw, str):
        try:
            argv = shlex.split(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: cannot split {raw!r}: {exc}") from exc
    elif isinstance(raw, list) and all(isinstance(a, str) for a in raw):
        argv = list(raw)
    else:
        raise ConfigError(f"{where}: expected a command (a string or a list of strings), got {_type_name(raw)}")
    if not argv or not argv[0].startswith("/"):
        # An absolute program path: a hook must not depend on root's PATH.
        raise ConfigError(f"{where}: expected an absolute program path first, got {argv[:1]!r}")
    if any("\0" in a for a in argv):
        raise ConfigError(f"{where}: NUL in a command")
    return tuple(argv)


def _parse_hooks(raw: object) -> HooksConfig:
    data = _expect("hooks", raw, dict, "a mapping")
    _check_keys("hooks", data, {"before_backup", "after_backup", "timeout"}, set())
    lists: dict[str, tuple[tuple[str, ...], ...]] = {}
    for key in ("before_backup", "after_backup"):
        items = _expect(f"hooks.{key}", data.get(key) or [], list, "a list of commands")
        lists[key] = tuple(_parse_command(f"hooks.{key}[{i}]", c) for i, c in enumerate(items))
    timeout = _expect("hooks.timeout", data.get("timeout", 3600), (int, float), "seconds")
    if timeout <= 0:
        raise ConfigError(f"hooks.timeout: expected a positive number of seconds, got {timeout}")
    return HooksConfig(before_backup=lists["before_backup"], after_backup=lists["after_backup"], timeout=float(timeout))


def parse_config(data: object, *, path: Path | None = None) -> AgentConfig:
    """Validate an already-parsed YAML document."""
    if data is None:
        raise ConfigError("the file is empty")
    top = _expect("(top level)", data, dict, "a mapping")
    _check_keys("", top, _TOP_KEYS, _TOP_REQUIRED)

    version = _expect("version", top["version"], int, "an integer")
    if version != CONFIG_VERSION:
        raise ConfigError(f"version: unsupported version {version} (this agent reads {CONFIG_VERSION})")

    host = top.get("host")
    if host is None:
        host = socket.gethostname()
    host = _expect("host", host, str, "a host name")
    if not _HOST_NAME.match(host):
        raise ConfigError(f"host: expected a host name, got {host!r}")

    key_file = Path(_abs_path("key_file", top["key_file"]))
    rec = top.get("recovery_public_key")
    recovery = Path(_abs_path("recovery_public_key", rec)) if rec is not None else None
    state_dir = Path(_abs_path("state_dir", top.get("state_dir", DEFAULT_STATE_DIR)))
    audit_log = Path(_abs_path("audit_log", top.get("audit_log", DEFAULT_AUDIT_LOG)))

    raw_sources = _expect("sources", top["sources"], list, "a list of absolute paths")
    if not raw_sources:
        raise ConfigError("sources: expected at least one path")
    sources: list[str] = []
    for i, s in enumerate(raw_sources):
        p = _abs_path(f"sources[{i}]", s)
        if p in sources:
            raise ConfigError(f"sources[{i}]: duplicate path {p!r}")
        sources.append(p)

    raw_exclude = top.get("exclude") or []
    _expect("exclude", raw_exclude, list, "a list of glob patterns")
    exclude: list[str] = []
    for i, pat in enumerate(raw_exclude):
        text = _expect(f"exclude[{i}]", pat, str, "a glob pattern")
        if not text or "\0" in text:
            raise ConfigError(f"exclude[{i}]: expected a non-empty glob pattern")
        exclude.append(text)

    one_fs = _expect("one_file_system", top.get("one_file_system", True), bool, "a boolean")

    raw_targets = _expect("targets", top["targets"], list, "a list of targets")
    if not raw_targets:
        raise ConfigError("targets: expected at least one target")
    targets = [_parse_target(f"targets[{i}]", t) for i, t in enumerate(raw_targets)]
    names = [t.name for t in targets]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise ConfigError(f"targets[{i}].name: duplicate target name {n!r}")
    primaries = [t for t in targets if t.primary]
    if not primaries and len(targets) == 1:
        # A single target is the primary one; saying so would be noise.
        targets = [TargetConfig(targets[0].name, targets[0].url, True, targets[0].options)]
    elif len(primaries) != 1:
        raise ConfigError(f"targets: expected exactly one target with primary: true, got {len(primaries)}")

    raw_verify = top.get("verify") or {}
    _expect("verify", raw_verify, dict, "a mapping")
    _check_keys("verify", raw_verify, {"read_data_percent"}, set())
    pct = _expect("verify.read_data_percent", raw_verify.get("read_data_percent", 0), (int, float), "a number")
    if not 0 <= pct <= 100:
        raise ConfigError(f"verify.read_data_percent: expected 0..100, got {pct}")

    retention = top.get("retention") or {}
    _expect("retention", retention, dict, "a mapping")

    hooks = _parse_hooks(top.get("hooks") or {})

    return AgentConfig(
        version=version,
        host=host,
        key_file=key_file,
        recovery_public_key=recovery,
        state_dir=state_dir,
        audit_log=audit_log,
        sources=tuple(sources),
        exclude=tuple(exclude),
        one_file_system=one_fs,
        targets=tuple(targets),
        verify=VerifyConfig(read_data_percent=float(pct)),
        retention=dict(retention),
        hooks=hooks,
        path=path,
    )


def _strict_loader() -> type:
    """A SafeLoader that rejects a key given twice in one mapping, at any level.

    PyYAML keeps the last value silently: an appended second ``targets:`` would switch the
    repository, a second ``sources:`` replace the sources.  The configuration is strict.
    """
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, int] = {}
                for key_node, _value in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # "<<: *base": explicit keys may override merged ones
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.get(key)
                    except TypeError:  # an unhashable key: construct_mapping reports it
                        continue
                    line = key_node.start_mark.line + 1
                    if first is not None:
                        raise ConfigError(f"duplicate key {key!r} (line {first} and line {line})")
                    seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def load_config(path: str | os.PathLike[str]) -> AgentConfig:
    """Read and validate the YAML file at ``path`` (ConfigError on any problem)."""
    import yaml  # imported here so that --help works without PyYAML

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found (use --config or FLEETSAFE_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_strict_loader())  # a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc.details.get('msg', exc)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    try:
        return parse_config(data, path=p)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc.details.get('msg', exc)}") from None
