"""Where the client keeps its state: credentials (mode 0600) and multipart resume files."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs

from .errors import ClientError

# Lets scripts (and tests) keep several logins apart without changing HOME.
CONFIG_DIR_ENV = "S3DRIVE_CLIENT_CONFIG_DIR"
CREDENTIALS_FILE = "credentials.json"


@dataclass
class Credentials:
    """The API URL and the tokens of the signed-in user."""

    url: str
    username: str
    access_token: str
    refresh_token: str


def config_dir() -> Path:
    """Return the client's config directory (platformdirs' user config dir for "s3drive")."""
    override = os.environ.get(CONFIG_DIR_ENV)
    return Path(override) if override else Path(platformdirs.user_config_dir("s3drive"))


def uploads_dir() -> Path:
    """Return the directory holding multipart resume state files."""
    return config_dir() / "uploads"


def credentials_path() -> Path:
    """Return the path of the credentials file."""
    return config_dir() / CREDENTIALS_FILE


def write_private(path: Path, data: bytes) -> None:
    """Write data to path atomically, readable by the owner only (0600, directory 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created 0600 from the start (never world-readable, not even for a moment), then renamed
    # over the old file so a crash never leaves half a file behind.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict | None:
    """Return the JSON object stored at path, or None if there is none (or it is unreadable)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def save_credentials(credentials: Credentials) -> Path:
    """Store the credentials in the config dir with mode 0600 and return the file's path."""
    path = credentials_path()
    write_private(path, json.dumps(asdict(credentials), indent=2).encode())
    return path


def load_credentials() -> Credentials:
    """Return the stored credentials, or raise not_logged_in."""
    data = read_json(credentials_path())
    try:
        return Credentials(**{name: str(data[name]) for name in Credentials.__dataclass_fields__})
    except (TypeError, KeyError):
        raise ClientError("not_logged_in", "Not logged in: run `s3drive-client login URL USERNAME` first.") from None


def delete_credentials() -> bool:
    """Remove the stored credentials; return whether there were any."""
    try:
        credentials_path().unlink()
    except FileNotFoundError:
        return False
    return True
