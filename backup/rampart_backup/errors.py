"""Every error the backup agent reports, each with its own exit status.

BackupError (1)
├── UsageError (2)           bad arguments, an unreadable key file
├── SourceUnreachable (3)    the database or path to back up (or restore into) cannot be reached
├── WrongKey (4)             the key is not the one the backup was made with
├── Tampered (5)             a chunk failed authentication: the file was changed
├── Truncated (6)            the file ends before its last chunk
└── RestoreFailed (7)        the target refused the data; nothing was kept
"""

from __future__ import annotations

__all__ = [
    "BackupError",
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
