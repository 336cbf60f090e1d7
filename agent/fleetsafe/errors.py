"""The one exception tree of the fleetsafe agent, and its stable exit codes.

Contract: every error the agent raises on purpose is a ``FleetsafeError``
subclass.  Each class carries a message template and an exit code; the CLI
turns an uncaught ``FleetsafeError`` into that exit code and a JSON error
document.  Third-party exceptions (paramiko, botocore, OSError from a backend)
are translated at the layer that calls the library, never passed upwards.

Exit codes are a public contract (docs/cli.md); a number is never reused for
a different meaning.

This module imports nothing from the package: every layer may import it.
"""

from __future__ import annotations

from typing import Any

# --- exit codes (docs/cli.md) -------------------------------------------------
EXIT_OK = 0
EXIT_FAILURE = 1  # the action failed; nothing usable was produced
EXIT_USAGE = 2  # bad command line or configuration
EXIT_PARTIAL = 3  # finished, but some files or targets were skipped (named in errors[])
EXIT_LOCKED = 4  # another run holds the repository lock
EXIT_INTEGRITY = 5  # verify found damaged, missing or unauthenticated data
EXIT_KEY = 6  # no key slot opens the repository (wrong or missing key)
EXIT_TARGET = 7  # a storage target is unreachable or refused us
EXIT_REFUSED = 8  # a restore was refused (unsafe path, would overwrite, integrity)
EXIT_NOT_FOUND = 9  # snapshot, object or repository not found

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "ok",
    EXIT_FAILURE: "failure",
    EXIT_USAGE: "usage",
    EXIT_PARTIAL: "partial",
    EXIT_LOCKED: "locked",
    EXIT_INTEGRITY: "integrity",
    EXIT_KEY: "key",
    EXIT_TARGET: "target",
    EXIT_REFUSED: "refused",
    EXIT_NOT_FOUND: "not_found",
}


class FleetsafeError(Exception):
    """Base of every deliberate agent error.

    Subclasses set ``template`` (``str.format`` fields filled from the keyword
    arguments) and ``exit_code``.  ``details`` keeps the keyword arguments for
    the JSON error document.
    """

    template = "{msg}"
    exit_code = EXIT_FAILURE
    kind = "failure"
    #: the audit event status of a run that ended in this error, when not ``failure``
    audit_status: str | None = None

    def __init__(self, msg: str = "", **details: Any) -> None:
        self.details = dict(details)
        if msg:
            self.details.setdefault("msg", msg)
        try:
            text = self.template.format(**self.details) if self.details else (msg or self.template)
        except (KeyError, IndexError):
            text = msg or self.template
        super().__init__(text)

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.kind, "message": str(self), "exit_code": self.exit_code}


# --- usage / configuration ----------------------------------------------------
class UsageError(FleetsafeError):
    exit_code = EXIT_USAGE
    kind = "usage"


class ConfigError(UsageError):
    template = "configuration error: {msg}"
    kind = "config"


# --- format / integrity -----------------------------------------------------------
class IntegrityError(FleetsafeError):
    """Data is damaged, truncated, or fails authentication."""

    exit_code = EXIT_INTEGRITY
    kind = "integrity"


class FormatError(IntegrityError):
    """Strict parsing failed: 'expected X, got Y'."""

    template = "{what}: expected {expected}, got {got}"
    kind = "format"


class UnsupportedVersion(FormatError):
    template = "{what}: unsupported version {got} (this agent reads {expected})"
    kind = "unsupported_version"


class AuthenticationFailed(IntegrityError):
    template = "authentication failed for {what}: data was modified or the key is wrong"
    kind = "authentication"


# --- keys -----------------------------------------------------------------------
class KeyError_(FleetsafeError):  # the underscore: not to shadow builtins.KeyError
    exit_code = EXIT_KEY
    kind = "key"


class NoMatchingKeySlot(KeyError_):
    template = "no key slot of repository {repo} opens with key {fingerprint}"
    kind = "wrong_key"


class KeyFileError(KeyError_):
    template = "key file {path}: {msg}"
    kind = "key_file"


class WrongPassphrase(KeyFileError):
    """The recovery private key does not decrypt with the passphrase given: an access denial (AC-LOG)."""

    audit_status = "denied"


# --- storage ------------------------------------------------------------------------
class StorageError(FleetsafeError):
    """Permanent storage error (permission denied, invalid name, disk full)."""

    exit_code = EXIT_TARGET
    kind = "storage"


class InvalidObjectName(StorageError):
    template = "invalid object name {name!r}: {msg}"
    kind = "invalid_name"
    exit_code = EXIT_FAILURE


class ObjectNotFound(StorageError):
    template = "object {name} not found on {backend}"
    kind = "not_found"
    exit_code = EXIT_NOT_FOUND


class BackendConnectionError(StorageError):
    """Transient: the target is down or the connection broke.  Retryable."""

    template = "target {backend} unreachable: {msg}"
    kind = "connection"


class StorageFull(StorageError):
    template = "target {backend} is full: {msg}"
    kind = "disk_full"


class UntrustedTarget(StorageError):
    """ENC-TRANSIT: the target's identity could not be verified (SSH host key
    not pinned or different, TLS certificate not trusted).  Permanent: it is
    never retried, because retrying cannot make an impostor trustworthy."""

    template = "target {backend} is not trusted: {msg}"
    kind = "untrusted_target"


class InvalidRange(StorageError):
    """A caller asked for a negative offset or size (a programming error)."""

    template = "invalid range for {name}: offset={offset} size={size}"
    kind = "invalid_range"
    exit_code = EXIT_FAILURE


# --- repository state -----------------------------------------------------------------
class RepositoryNotFound(FleetsafeError):
    template = "no fleetsafe repository at {location}"
    exit_code = EXIT_NOT_FOUND
    kind = "repository_not_found"


class RepositoryExists(FleetsafeError):
    template = "a repository already exists at {location}"
    exit_code = EXIT_USAGE
    kind = "repository_exists"


class SnapshotNotFound(FleetsafeError):
    template = "snapshot {snapshot} not found"
    exit_code = EXIT_NOT_FOUND
    kind = "snapshot_not_found"


class LockedError(FleetsafeError):
    template = "repository is locked by {holder}"
    exit_code = EXIT_LOCKED
    kind = "locked"
    #: an overlapping run that did nothing is not a failed backup
    audit_status = "locked"


# --- restore ------------------------------------------------------------------------
class RestoreRefused(FleetsafeError):
    """REST-SAFE: the restore would leave its target, follow a symlink, or overwrite."""

    template = "restore refused for {path}: {msg}"
    exit_code = EXIT_REFUSED
    kind = "restore_refused"


# --- repository format (added by the repository layer; new subclasses only) ---------
class BlobNotFound(IntegrityError):
    """A blob a snapshot or caller needs is in no index: the repository is incomplete."""

    template = "blob {blob} is not in the index of repository {repo}"
    kind = "blob_not_found"


class AmbiguousSnapshotId(UsageError):
    template = "snapshot id prefix {snapshot!r} matches {count} snapshots; give more characters"
    kind = "ambiguous_snapshot"
