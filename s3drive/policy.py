"""Upload policy as data: names, folders, tags, types, tiers, sizes and key layout."""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from flask import Flask, current_app

from .contenttypes import content_type_allowed
from .errors import AppError, ContentTypeNotAllowed, ValidationFailed, content_type_refused, file_too_large
from .parts import choose_part_size

MAX_NAME_BYTES = 255
MAX_FOLDER_LENGTH = 1024
MAX_TAGS = 50
MAX_TAG_LENGTH = 64
# The upload profile of a file that names none: the global policy (profiles.py reads the others).
DEFAULT_PROFILE = "default"

# Storage tiers clients may ask for, and the S3 storage class each maps to.
TIERS = {
    "standard": "STANDARD",
    "standard_ia": "STANDARD_IA",
    "intelligent_tiering": "INTELLIGENT_TIERING",
    "glacier_ir": "GLACIER_IR",
    "glacier": "GLACIER",
    "deep_archive": "DEEP_ARCHIVE",
}

# Executables and scripts Windows or browsers would run on a double-click.
DENIED_EXTENSIONS = frozenset(
    "exe dll com bat cmd scr msi msp pif cpl hta jar vbs vbe jse wsf wsh ws ps1 psm1 "
    "lnk reg sys gadget application appref-ms msc scf apk app deb rpm".split()
)

# Bidirectional overrides let "txt.exe" display as "exe.txt"; strip them with controls.
_BIDI = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))
_MIME_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_KEY_SAFE = re.compile(r"[A-Za-z0-9._-]+")


def _strip_controls(text: str) -> str:
    if text.isascii() and text.isprintable():
        return text  # the common case, without a per-character walk
    text = text.translate(_BIDI)
    return "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch == "\u200d")


def _truncate_utf8(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore")


def sanitize_file_name(raw: str) -> str:
    """Return a display name: last path part, no controls, at most 255 bytes of UTF-8."""
    name = unicodedata.normalize("NFC", raw)
    if "/" in name or "\\" in name:
        name = re.split(r"[/\\]", name)[-1]
    name = _strip_controls(name).strip().strip(".").strip()
    if not name:
        raise ValidationFailed(
            "File name is empty after removing path parts and control characters.", field="file_name"
        )
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext.encode("utf-8")) <= 16:
            room = MAX_NAME_BYTES - len(ext.encode("utf-8")) - 1
            name = _truncate_utf8(stem, room).rstrip() + "." + ext
        else:
            name = _truncate_utf8(name, MAX_NAME_BYTES).rstrip()
    return name


def checked_name(raw: str) -> str:
    """Return a sanitized display name, refusing executable extensions (as presign does)."""
    name = sanitize_file_name(raw)
    refuse_denied_extension(name)
    return name


def refuse_denied_extension(name: str) -> None:
    """Raise content_type_not_allowed for names Windows or browsers would run on a double-click."""
    if extension_of(name) in DENIED_EXTENSIONS:
        raise ContentTypeNotAllowed(f"Files with the extension .{extension_of(name)} are not allowed.")


def extension_of(name: str) -> str:
    """Return the lowercased extension of a file name, or ''."""
    _, dot, ext = name.rpartition(".")
    return ext.lower() if dot else ""


def key_safe_name(name: str) -> str:
    """Return an ASCII rendering of a display name for use inside an S3 key."""
    if len(name) <= 100 and _KEY_SAFE.fullmatch(name) and name[0] not in "._" and name[-1] not in "._":
        return name  # already safe: the usual "IMG_0001.jpg" skips the Unicode work below
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = _KEY_UNSAFE.sub("_", ascii_name).strip("._") or "file"
    if len(ascii_name) > 100:
        ext = extension_of(ascii_name)
        keep = 100 - len(ext) - 1 if ext and len(ext) <= 16 else 100
        ascii_name = ascii_name[:keep] + ("." + ext if keep < 100 else "")
    return ascii_name


def normalize_folder(raw: str | None) -> str:
    """Return a virtual folder path like 'photos/2026'; '' is the root. Refuse '..'."""
    if raw is None:
        return ""
    parts = []
    for part in re.split(r"[/\\]+", unicodedata.normalize("NFC", raw)):
        part = _strip_controls(part).strip()
        if part in ("", "."):
            continue
        if part == "..":
            raise ValidationFailed("Folder may not contain '..'.", field="folder")
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            raise ValidationFailed("Folder names are limited to 255 bytes each.", field="folder")
        parts.append(part)
    folder = "/".join(parts)
    if folder_too_long(folder):
        raise ValidationFailed(f"Folder is limited to {MAX_FOLDER_LENGTH} bytes (UTF-8).", field="folder")
    return folder


def folder_too_long(folder: str) -> bool:
    """Tell whether a folder path is over the limit: counted in UTF-8 bytes, as indexes store it
    (1,024 characters of emoji would be 4 KiB, over PostgreSQL's 2,704-byte limit of a btree entry)."""
    return len(folder) > MAX_FOLDER_LENGTH or len(folder.encode("utf-8")) > MAX_FOLDER_LENGTH


def normalize_tags(raw: list[str] | str | None) -> list[str]:
    """Return tags trimmed, lowercased and deduplicated in first-seen order."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return list(_normalize_tag_string(raw))  # a batch often repeats one string of tags
    return _normalize_tag_list(raw)


@lru_cache(maxsize=1024)
def _normalize_tag_string(raw: str) -> tuple[str, ...]:
    return tuple(_normalize_tag_list(raw.split(",")))


def _normalize_tag_list(items: list[str]) -> list[str]:
    tags: list[str] = []
    for item in items:
        tag = _strip_controls(item).strip().lower()
        if not tag or tag in tags:
            continue
        if len(tag) > MAX_TAG_LENGTH:
            raise ValidationFailed(f"Tags are limited to {MAX_TAG_LENGTH} characters.", field="tags")
        tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise ValidationFailed(f"At most {MAX_TAGS} tags per file.", field="tags")
    return tags


def normalize_checksum(raw: str | None) -> str | None:
    """Return a base64 SHA-256 digest, or raise if it is not 32 bytes of base64."""
    if raw is None or raw == "":
        return None
    try:
        digest = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 32:
        raise ValidationFailed(
            "checksum_sha256 must be the base64 SHA-256 digest (44 characters).", field="checksum_sha256"
        )
    return base64.b64encode(digest).decode()


@dataclass(slots=True)
class UploadSpec:
    """One upload as presign takes it: validated, sanitized and checked against policy.

    `index` is its position in the request (failures name it). `part_size` is set for a
    multipart upload. With size_declared False (an Uppy form of unknown size), `size` is the
    most the upload may be; it reserves nothing, and confirm counts the size S3 reports if it fits.
    `watch`: nobody will report the upload (an Uppy form): the upload watcher looks for it.
    """

    index: int
    file_name: str
    content_type: str
    size: int
    checksum_sha256: str | None = None
    tier: str = "standard"
    title: str | None = None
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    folder: str = ""
    method: str = "PUT"
    part_size: int | None = None
    size_declared: bool = True
    watch: bool = False
    profile: str = DEFAULT_PROFILE


@dataclass
class UploadFailure:
    """An upload of a batch that was refused: its position, its name as sent, and why."""

    index: int
    file_name: str | None
    error: AppError


@dataclass(frozen=True)
class Profile:
    """The effective limits of one purpose (API.md, Upload profiles): the global policy, narrowed."""

    name: str
    description: str | None
    max_file_size: int
    allowed_content_types: tuple[str, ...]
    max_image_pixels: int
    min_image_side: int | None
    max_image_side: int | None
    min_media_seconds: float | None
    max_media_seconds: float
    default_tier: str
    folder: str

    def describe(self) -> dict[str, Any]:
        """Return the profile as GET /api/files/limits lists it (without its name)."""
        described = asdict(self)
        del described["name"]
        described["allowed_content_types"] = list(self.allowed_content_types)
        return described


def default_profile(config: Mapping[str, Any]) -> Profile:
    """Return the built-in profile: the global policy of the S3DRIVE_* settings."""
    return Profile(
        name=DEFAULT_PROFILE,
        description=None,
        max_file_size=config["MAX_FILE_SIZE"],
        allowed_content_types=tuple(config["ALLOWED_CONTENT_TYPES"]),
        max_image_pixels=config["MAX_IMAGE_PIXELS"],
        min_image_side=None,
        max_image_side=None,
        min_media_seconds=None,
        max_media_seconds=config["MAX_MEDIA_SECONDS"],
        default_tier="standard",
        folder="",
    )


@dataclass(frozen=True)
class UploadPolicy:
    """The limits one upload is checked against; built once from the app config and its profiles."""

    multipart_threshold: int
    default_part_size: int
    # By name, `default` first (the global policy), then the operator's in their file's order.
    profiles: Mapping[str, Profile]

    @classmethod
    def from_config(cls, config, profiles: Mapping[str, Profile] | None = None) -> UploadPolicy:
        """Build the policy from app.config and the upload profiles (only `default` when None)."""
        return cls(
            multipart_threshold=config["MULTIPART_THRESHOLD"],
            default_part_size=config["DEFAULT_PART_SIZE"],
            profiles=profiles or {DEFAULT_PROFILE: default_profile(config)},
        )

    @property
    def max_file_size(self) -> int:
        """The global per-file limit (the default profile's)."""
        return self.profiles[DEFAULT_PROFILE].max_file_size

    @property
    def allowed_content_types(self) -> tuple[str, ...]:
        """The global allow-list of types (the default profile's)."""
        return self.profiles[DEFAULT_PROFILE].allowed_content_types

    def profile(self, name: str | None) -> Profile:
        """Return the named profile (None: the default); an unknown name is a validation_error."""
        found = self.profiles.get(name or DEFAULT_PROFILE)
        if found is None:
            known = ", ".join(self.profiles)
            raise ValidationFailed(f"There is no upload profile {name!r}; this server has: {known}.", field="profile")
        return found

    def profile_of(self, name: str) -> Profile:
        """Return the profile a stored file was uploaded under; one the operator has since removed is the default."""
        return self.profiles.get(name) or self.profiles[DEFAULT_PROFILE]

    def upload_spec(self, index: int, fields: dict, *, multipart: bool = False) -> UploadSpec:
        """Apply policy to a FileSpec's loaded fields; return the upload, or raise its domain error.

        The file's profile sets its limits, its tier unless one is asked for, and the folder its own
        folder is under. Files above the multipart threshold (all of them with multipart=True) become
        multipart uploads, with the requested `part_size` if S3 allows it.
        """
        profile = self.profile(fields.get("profile"))
        name = sanitize_file_name(fields["file_name"])
        self.check_size(fields["file_size"], profile)
        content_type = self.check_content_type(fields["content_type"], name, profile)
        if fields["method"] == "POST" and fields["checksum_sha256"]:
            # S3-compatible stores neither check nor keep a checksum sent in a POST form.
            raise ValidationFailed(
                "checksum_sha256 needs method PUT; POST forms cannot carry a verified checksum.",
                field="checksum_sha256",
            )
        folder = fields["folder"]
        if profile.folder:
            folder = f"{profile.folder}/{folder or ''}"
        spec = UploadSpec(
            index,
            name,
            content_type,
            fields["file_size"],
            normalize_checksum(fields["checksum_sha256"]),
            fields["tier"] or profile.default_tier,
            fields["title"],
            fields["description"],
            normalize_tags(fields["tags"]),
            normalize_folder(folder),
            fields["method"],
            profile=profile.name,
        )
        if multipart or spec.size > self.multipart_threshold:
            self.make_multipart(spec, fields.get("part_size"))
        return spec

    def make_multipart(self, spec: UploadSpec, requested_part_size: object = None) -> None:
        """Turn an upload into a multipart one, with its part size."""
        if spec.checksum_sha256:
            # S3 keeps SHA-256 only per part for multipart objects: a whole-file digest cannot be verified.
            raise ValidationFailed(
                "checksum_sha256 cannot be verified for multipart uploads; leave it out for large files.",
                details={"checksum_sha256": ["Not supported for multipart uploads."]},
            )
        spec.method = "PUT"
        spec.part_size = choose_part_size(spec.size, requested_part_size, self.default_part_size)

    def check_content_type(self, content_type: str, file_name: str, profile: Profile | None = None) -> str:
        """Return the normalized MIME type, or raise content_type_not_allowed (by the profile's types)."""
        profile = profile or self.profiles[DEFAULT_PROFILE]
        ctype = content_type.strip().lower()
        if not _MIME_RE.match(ctype):
            raise ValidationFailed("content_type must be a MIME type like image/jpeg.", field="content_type")
        refuse_denied_extension(file_name)
        if not content_type_allowed(ctype, profile.allowed_content_types):
            raise content_type_refused(ctype, profile.name, profile.allowed_content_types)
        return ctype

    def check_size(self, size: int, profile: Profile | None = None) -> None:
        """Raise file_too_large when a file exceeds the per-file limit (of its profile)."""
        profile = profile or self.profiles[DEFAULT_PROFILE]
        if size > profile.max_file_size:
            raise file_too_large(size, profile.max_file_size, profile.name)


def init_app(app: Flask, profiles: Mapping[str, Profile] | None = None) -> None:
    """Build the app's upload policy from its config and its upload profiles."""
    app.extensions["s3drive.policy"] = UploadPolicy.from_config(app.config, profiles)


def get_policy() -> UploadPolicy:
    """Return the current app's upload policy."""
    return current_app.extensions["s3drive.policy"]


# -- key layout: <prefix>users/<user id>/<batch id>/<file id>/<key-safe name> -------------


def user_prefix(prefix: str, user_id: str) -> str:
    """Return the key prefix of all of a user's objects."""
    return f"{prefix}users/{user_id}/"


def batch_prefix(prefix: str, user_id: str, batch_id: str) -> str:
    """Return the key prefix shared by the files of one presign request."""
    return f"{user_prefix(prefix, user_id)}{batch_id}/"


def object_key(prefix: str, user_id: str, batch_id: str, file_id: str, file_name: str) -> str:
    """Return the server-chosen key: owner-scoped, per-batch prefix, never raw input."""
    return f"{batch_prefix(prefix, user_id, batch_id)}{file_id}/{key_safe_name(file_name)}"


def preview_key(s3_key: str) -> str:
    """Return the key of an object's WebP preview: <prefix>previews/<user id>/<batch id>/<file id>.webp.

    Outside the users/ tree, so no listing of a user's or a batch's uploads meets it.
    """
    key = parse_key(s3_key)
    return f"{key.prefix}previews/{key.user_id}/{key.batch_id}/{key.file_id}.webp"


def quarantine_key(s3_key: str) -> str:
    """Return where a rejected object is kept for review: <prefix>quarantine/<user id>/<batch>/<file id>/<name>."""
    key = parse_key(s3_key)
    return f"{key.prefix}quarantine/{key.user_id}/{key.batch_id}/{key.file_id}/{key.name}"


@dataclass(frozen=True)
class KeyParts:
    """The parts of a key made by object_key."""

    prefix: str
    user_id: str
    batch_id: str
    file_id: str
    name: str


def parse_key(key: str) -> KeyParts:
    """Split a key made by object_key into its parts; raise ValueError for any other key."""
    head, marker, rest = key.rpartition("users/")
    parts = rest.split("/", 3)
    if not marker or len(parts) != 4 or not all(parts):
        raise ValueError(f"not an s3drive object key: {key!r}")
    return KeyParts(head, *parts)
