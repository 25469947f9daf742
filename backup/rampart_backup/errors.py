"""Every error the backup agent reports, each with its own exit status.

BackupError (1)
├── UsageError (2)           bad arguments, an unreadable or weak key file, a format-1
│                            backup without --allow-format-1
├── SourceUnreachable (3)    what to back up, or to restore or drill into, cannot be reached
├── WrongKey (4)             the key is not the one the backup was made with
├── Tampered (5)             a chunk or the manifest failed authentication: it was changed
├── Truncated (6)            the file ends before its last chunk
├── RestoreFailed (7)        the target refused the data; nothing was kept
├── DrillFailed (8)          a restore drill's restored data failed a check, or the drill
│                            server is another major version than the backed-up one
├── NoBackup (9)             no complete, authenticated backup to drill
└── Misplaced (10)           authentic, but another backup's: a data file or manifest
                             copied or moved into this backup's folder, or the folder renamed
"""

from __future__ import annotations

__all__ = [
    "BackupError",
    "DrillFailed",
    "Misplaced",
    "NoBackup",
    "RestoreFailed",
    "SourceUnreachable",
    "Tampered",
    "Truncated",
    "UsageError",
    "WrongKey",
]


class BackupError(Exception):
    exit_code = 1


class UsageError(BackupError):
    exit_code = 2


class SourceUnreachable(BackupError):
    exit_code = 3


class WrongKey(BackupError):
    exit_code = 4


class Tampered(BackupError):
    exit_code = 5


class Truncated(BackupError):
    exit_code = 6


class RestoreFailed(BackupError):
    exit_code = 7


class DrillFailed(BackupError):
    exit_code = 8


class NoBackup(BackupError):
    exit_code = 9


class Misplaced(BackupError):
    exit_code = 10
