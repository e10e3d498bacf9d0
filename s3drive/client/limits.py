"""What the server's limits (GET /api/files/limits) say of local files before any is hashed or sent.

A file over the per-file limit or of a type the server refuses fails at once, in the server's
words, instead of after its checksum and a presign call. The server stays the authority: this
only fails early what it would refuse anyway. One code path for the global policy and for an
upload profile: both are a limits object with `max_file_size` and `allowed_content_types` (a
profile's are its effective limits, already narrowed by the server).
"""

from __future__ import annotations

from ..contenttypes import content_type_allowed
from ..errors import AppError, content_type_refused, file_too_large
from .errors import ClientError
from .local_files import LocalFile

DEFAULT_PROFILE = "default"


class UnknownProfile(ValueError):
    """The profile asked for is not one the server lists."""


def profile_names(limits: dict) -> list[str]:
    """Return the server's upload profiles in its order (`default` first); ["default"] for a server without any."""
    profiles = limits.get("profiles")
    return list(profiles) if isinstance(profiles, dict) and profiles else [DEFAULT_PROFILE]


def profile_limits(limits: dict, profile: str | None) -> dict:
    """Return the limits files uploaded with profile must meet: the profile's effective limits, or the
    global ones (no profile, or `default` on a server that lists no profiles). Raise UnknownProfile."""
    profiles = limits.get("profiles") if isinstance(limits.get("profiles"), dict) else {}
    if profile is None:
        return profiles.get(DEFAULT_PROFILE) or limits
    if profile in profiles:
        return profiles[profile]
    if profile == DEFAULT_PROFILE:
        return limits
    raise UnknownProfile(f"unknown profile {profile!r} (this server has: {', '.join(profile_names(limits))})")


def policy_problem(file: LocalFile, limits: dict, profile: str | None = None) -> ClientError | None:
    """Return the error the server would answer for a file too big or of a refused type, or None.

    limits is a limits object (profile_limits'); the refusal is worded as the server words it
    (s3drive/errors.py: "the limit for avatar uploads is 10 MiB"), naming a profile but `default`.
    """
    max_size = limits.get("max_file_size")
    if max_size is not None and file.size > int(max_size):
        return _client_error(file_too_large(file.size, int(max_size), profile))
    allowed = limits.get("allowed_content_types")
    content_type = file.content_type.strip().lower()
    if allowed and not content_type_allowed(content_type, tuple(allowed)):
        return _client_error(content_type_refused(content_type, profile, allowed))
    return None


def _client_error(error: AppError) -> ClientError:
    return ClientError(error.code, error.message, status=error.status, details=error.details)
