"""The SQLite database file on disk: created readable and writable by its owner only.

The file holds every account's Cal.com API key and secrets. SQLite gives its WAL and shared-memory
files the permissions of the database file, so creating that one private covers all three.
"""

from __future__ import annotations

import os

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def prepare_sqlite_file(path: str) -> None:
    """Create the database's directory (owner only) and an empty file (owner only) unless they exist."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=DIRECTORY_MODE, exist_ok=True)
        os.chmod(directory, DIRECTORY_MODE)  # makedirs' mode is filtered through the umask (and parents get the default)
    if not os.path.exists(path):
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:  # another process created it first
            return
        os.close(descriptor)
        os.chmod(path, FILE_MODE)


def sqlite_file_exists(path: str) -> bool:
    """Whether the database file is there (the command line never creates one by accident)."""
    return os.path.exists(os.path.abspath(path))
