"""What the server's limits (GET /api/files/limits) say of local files before any is hashed or sent.

A file over the per-file limit or of a type the server refuses fails at once, in the server's
words, instead of after its checksum and a presign call. The server stays the authority: this
only fails early what it would refuse anyway. One code path for the global policy and for an
upload profile: both are a limits object with `max_file_size` and `allowed_content_types` (a
profile's are its effective limits, already narrowed by the server).
"""

from __future__ import annotations

from ..contenttypes import content_type_allowed
from ..sizes import distinct_sizes
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

    limits is a limits object (profile_limits'); with a profile other than `default` the message
    names it, in the server's words (s3drive/policy.py: "the limit for avatar uploads is 10 MiB").
    """
    named = profile not in (None, DEFAULT_PROFILE)
    max_size = limits.get("max_file_size")
    if max_size is not None and file.size > int(max_size):
        size, limit = distinct_sizes(file.size, int(max_size))
        details = {"file_size": file.size, "max_file_size": int(max_size), **({"profile": profile} if named else {})}
        whose = f" for {profile} uploads" if named else ""
        return ClientError(
            "file_too_large", f"File is {size}; the limit{whose} is {limit}.", status=413, details=details
        )
    allowed = limits.get("allowed_content_types")
    content_type = file.content_type.strip().lower()
    if allowed and not content_type_allowed(content_type, tuple(allowed)):
        if not named:
            return ClientError("content_type_not_allowed", f"Content type {content_type} is not allowed.", status=415)
        message = f"Content type {content_type} is not allowed for {profile} uploads (they take {', '.join(allowed)})."
        details = {"profile": profile, "allowed_content_types": list(allowed)}
        return ClientError("content_type_not_allowed", message, status=415, details=details)
    return None
