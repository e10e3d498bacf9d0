"""Upload profiles: named narrowings of the upload policy for one purpose, read from a TOML file.

An operator writes one table per profile (S3DRIVE_UPLOAD_PROFILES_FILE, see
s3drive/dev/upload-profiles.toml); a client names one per file (FileSpec `profile`). The built-in
`default` profile is the global policy (the S3DRIVE_* settings). A profile only narrows it: a field
left out keeps the global value, and a value the global policy would refuse (a larger size, a type
it does not allow) stops the start-up, as does any other mistake, with one line naming the profile
and the field. Presign checks size and type against the file's profile; content inspection the rest.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from .config import ConfigError
from .contenttypes import content_type_allowed
from .errors import ValidationFailed
from .policy import DEFAULT_PROFILE, TIERS, Profile, default_profile, normalize_folder
from .sizes import human_size, parse_size

SETTING = "S3DRIVE_UPLOAD_PROFILES_FILE"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_TYPE_PATTERN = re.compile(r"[a-z0-9*][a-z0-9!#$&^_.+*-]{0,126}/[a-z0-9*][a-z0-9!#$&^_.+*-]{0,126}")
# The limits a worker checks on the bytes: a profile that sets one needs content inspection.
INSPECTED_FIELDS = ("max_image_pixels", "min_image_side", "max_image_side", "min_media_seconds", "max_media_seconds")
# A side no image format stores (JPEG and WebP stop at 65,535; PNG's 2**31 would be 4 EiB of pixels).
MAX_SIDE = 1_000_000


def load_profiles(config: dict[str, Any]) -> dict[str, Profile]:
    """Return the profiles by name, `default` first and then the file's in its order; raise ConfigError."""
    default = default_profile(config)
    profiles = {DEFAULT_PROFILE: default}
    path = config.get("UPLOAD_PROFILES_FILE")
    if not path:
        return profiles
    tables = _read(str(path))
    for name, table in tables.items():
        where = f"{SETTING} {path}: profile {name!r}"
        if name == DEFAULT_PROFILE:
            raise ConfigError(f"{where}: 'default' is built in (it is the S3DRIVE_* policy); choose another name")
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{where}: a name is 1 to 64 of a-z, 0-9, _ and -, starting with a letter or digit")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: must be a table: [{name}] followed by its fields")
        profiles[name] = _profile(name, table, default, config["INSPECT"], where)
    return profiles


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"{SETTING} {path}: cannot be read ({error.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{SETTING} {path}: not valid TOML: {error}") from None


def _profile(name: str, table: dict[str, Any], default: Profile, inspect: bool, where: str) -> Profile:
    try:
        given = _ProfileSchema().load(table)
    except ValidationError as error:
        field, messages = _first_error(error.normalized_messages(), list(table))
        raise ConfigError(f"{where}, field {field}: {messages}") from None
    profile = Profile(name=name, **{**_inherited(default), **given})
    problem = _narrowing_problem(profile, default, given, inspect)
    if problem:
        field, message = problem
        raise ConfigError(f"{where}, field {field}: {message}")
    return profile


def _inherited(default: Profile) -> dict[str, Any]:
    values = asdict(default)
    del values["name"]
    return values


def _first_error(messages: dict[str, Any], order: list[str]) -> tuple[str, str]:
    """Return the first field at fault in the file's order, and its messages as one line."""
    field = min(messages, key=lambda name: order.index(name) if name in order else len(order))
    found = messages[field]
    if isinstance(found, dict):  # a list field: {index: [messages]}
        index, found = next(iter(found.items()))
        field = f"{field}[{index}]"
    text = " ".join(found) if isinstance(found, list) else str(found)
    if text == "Unknown field.":
        text = f"unknown field (a profile takes {', '.join(_ProfileSchema().fields)})"
    return field, text


def _narrowing_problem(profile: Profile, default: Profile, given: dict, inspect: bool) -> tuple[str, str] | None:
    """Return (field, why) when the profile would widen the global policy or cannot be met, else None."""
    if profile.max_file_size > default.max_file_size:
        return "max_file_size", (
            f"{human_size(profile.max_file_size)} is more than S3DRIVE_MAX_FILE_SIZE "
            f"({human_size(default.max_file_size)}); a profile narrows the global policy"
        )
    for pattern in profile.allowed_content_types:
        if not content_type_allowed(pattern, default.allowed_content_types):
            return "allowed_content_types", f"{pattern} is not allowed by S3DRIVE_ALLOWED_CONTENT_TYPES"
    for field, setting in (("max_image_pixels", "MAX_IMAGE_PIXELS"), ("max_media_seconds", "MAX_MEDIA_SECONDS")):
        if getattr(profile, field) > getattr(default, field):
            return field, f"{getattr(profile, field)} is more than S3DRIVE_{setting} ({getattr(default, field)})"
    low, high = profile.min_image_side, profile.max_image_side
    if low is not None and high is not None and low > high:
        return "min_image_side", f"{low} is more than max_image_side ({high})"
    if low is not None and low * low > profile.max_image_pixels:
        return "min_image_side", f"a {low} × {low} image is more than max_image_pixels ({profile.max_image_pixels})"
    if profile.min_media_seconds is not None and profile.min_media_seconds > profile.max_media_seconds:
        return "min_media_seconds", f"{profile.min_media_seconds} is more than max_media_seconds"
    checked_on_bytes = [field for field in INSPECTED_FIELDS if field in given]
    if checked_on_bytes and not inspect:
        return checked_on_bytes[0], "is checked by content inspection, which S3DRIVE_INSPECT=false turns off"
    return None


class _Size(fields.Field):
    """Bytes, or a written size like "10 MiB"."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            try:
                value = parse_size(value)
            except ValueError as error:
                raise ValidationError(str(error)) from None
        if type(value) is not int or value < 1:
            raise ValidationError('must be a size: bytes (an integer of at least 1) or a text like "10 MiB"')
        return value


class _Seconds(fields.Field):
    """A number of seconds: an integer or a decimal, not a string."""

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) not in (int, float) or value <= 0:
            raise ValidationError("must be a number of seconds above 0, like 180 or 1.5")
        return value


class _Folder(fields.String):
    """A folder path, normalized as a FileSpec's."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return normalize_folder(super()._deserialize(value, attr, data, **kwargs))
        except ValidationFailed as error:
            raise ValidationError(error.message) from None


def _side(**kwargs) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_SIDE), **kwargs)


class _ProfileSchema(Schema):
    """The fields an operator may set in a profile's table (API.md, Upload profiles)."""

    class Meta:
        unknown = RAISE
        ordered = True

    description = fields.String(validate=validate.Length(min=1, max=200))
    max_file_size = _Size()
    allowed_content_types = fields.List(
        fields.String(
            validate=validate.Regexp(_TYPE_PATTERN, error="not a MIME type or pattern like image/png or image/*")
        ),
        validate=validate.Length(min=1, error="list at least one type"),
    )
    max_image_pixels = fields.Integer(strict=True, validate=validate.Range(min=1))
    min_image_side = _side()
    max_image_side = _side()
    min_media_seconds = _Seconds()
    max_media_seconds = _Seconds()
    default_tier = fields.String(validate=validate.OneOf(list(TIERS)))
    folder = _Folder(validate=validate.Length(max=4096))

    def load(self, data, **kwargs):
        loaded = super().load(data, **kwargs)
        if "allowed_content_types" in loaded:
            loaded["allowed_content_types"] = tuple(t.lower() for t in loaded["allowed_content_types"])
        return loaded
