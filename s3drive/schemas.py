"""Marshmallow schemas: request validation and response shapes (they make the OpenAPI)."""

from __future__ import annotations

import email.header
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from email.errors import HeaderParseError
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_dump, validate, validates_schema
from webargs.fields import DelimitedList

from .config import MAX_QUOTA_BYTES
from .errors import AppError, BatchTooLarge, ValidationFailed
from .models import FileStatus, InspectionState
from .parts import MAX_ETAG_LENGTH, MAX_PART_SIZE, MAX_PARTS, MAX_SIGN_BATCH, MIN_PART_SIZE
from .policy import TIERS, UploadFailure, UploadPolicy, UploadSpec
from .services.inspection import inspection_of
from .services.listing import DEFAULT_LIMIT, DEFAULT_SORT, MAX_LIMIT, MAX_QUERY_LENGTH, SORTS
from .services.shares import DEFAULT_EXPIRES_IN, MAX_EXPIRES_IN
from .timeutil import isoformat_z

USERNAME_RE = r"^[A-Za-z0-9_.-]{3,64}$"


class Timestamp(fields.Field):
    """An ISO 8601 UTC timestamp like 2026-11-21T12:00:00Z."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else isoformat_z(value)


class BaseSchema(Schema):
    class Meta:
        unknown = EXCLUDE


# -- errors ---------------------------------------------------------------------------


class ErrorBodySchema(BaseSchema):
    code = fields.String(required=True, metadata={"example": "file_too_large"})
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class ErrorSchema(BaseSchema):
    error = fields.Nested(ErrorBodySchema, required=True)


# -- auth -----------------------------------------------------------------------------


class CredentialsSchema(BaseSchema):
    username = fields.String(
        required=True,
        validate=validate.Regexp(USERNAME_RE, error="Use 3 to 64 of A-Z a-z 0-9 _ . -"),
    )
    password = fields.String(required=True, validate=validate.Length(min=8, max=1024))


class LoginSchema(BaseSchema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class UserSchema(BaseSchema):
    id = fields.String(required=True)
    username = fields.String(required=True)
    is_admin = fields.Boolean(required=True)
    quota_bytes = fields.Integer(required=True)
    used_bytes = fields.Integer(required=True)
    reserved_bytes = fields.Integer(required=True)
    created_at = Timestamp(required=True)


class UserEnvelopeSchema(BaseSchema):
    user = fields.Nested(UserSchema, required=True)


class TokenPairSchema(BaseSchema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(metadata={"example": "Bearer"}, required=True)
    expires_in = fields.Integer(required=True)


class AccessTokenSchema(BaseSchema):
    access_token = fields.String(required=True)
    expires_in = fields.Integer(required=True)


class MessageSchema(BaseSchema):
    message = fields.String(required=True)


# -- uploads --------------------------------------------------------------------------


class TagsField(fields.Field):
    """Tags as a list of strings or one comma-separated string."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        raise ValidationError("Tags must be a list of strings or a comma-separated string.")


class FileSpecSchema(BaseSchema):
    file_name = fields.String(required=True, validate=validate.Length(min=1, max=4096))
    content_type = fields.String(required=True, validate=validate.Length(min=1, max=255))
    file_size = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))
    checksum_sha256 = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=128))
    tier = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.OneOf(list(TIERS)),
        metadata={"description": "Storage tier; when left out, the profile's `default_tier` (standard)."},
    )
    title = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    description = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))
    tags = TagsField(load_default=None, allow_none=True, metadata={"type": "array", "items": {"type": "string"}})
    folder = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=4096))
    method = fields.String(load_default="PUT", validate=validate.OneOf(["PUT", "POST"]))
    profile = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=64),
        metadata={"description": "Upload profile (GET /api/files/limits lists them); left out: `default`."},
    )


_TIER_NAMES = frozenset(TIERS)
# (field, max length, default when missing or null) of the optional string fields.
_OPTIONAL_STRINGS = (
    ("checksum_sha256", 128),
    ("title", 200),
    ("description", 2000),
    ("folder", 4096),
    ("profile", 64),
)


def load_file_spec_fast(raw: dict) -> dict | None:
    """Return what FileSpecSchema().load(raw) returns, or None to let marshmallow decide.

    A 1,000-file batch spends ~25 ms in marshmallow alone; this plain-Python pass
    accepts only input marshmallow accepts too (tests/test_schemas.py holds them
    equal over random input) and hands everything else, errors included, to it.
    """
    name, ctype, size = raw.get("file_name"), raw.get("content_type"), raw.get("file_size")
    if not (type(name) is str and 0 < len(name) <= 4096 and type(ctype) is str and 0 < len(ctype) <= 255):
        return None
    if type(size) is not int or size < 0:
        return None
    spec = {"file_name": name, "content_type": ctype, "file_size": size}
    for field_name, limit in _OPTIONAL_STRINGS:
        value = raw.get(field_name)
        if value is not None and (type(value) is not str or len(value) > limit):
            return None
        spec[field_name] = value
    tier, method, tags = raw.get("tier"), raw.get("method", "PUT"), raw.get("tags")
    if (tier is not None and tier not in _TIER_NAMES) or method not in ("PUT", "POST"):
        return None
    if tags is not None and type(tags) is not str and not (type(tags) is list and all(type(t) is str for t in tags)):
        return None
    spec.update(tier=tier, method=method, tags=tags)
    return spec


class BatchUploadSchema(BaseSchema):
    files = fields.List(fields.Raw(), required=True, metadata={"items": FileSpecSchema})


_file_spec_schema = FileSpecSchema()
_batch_upload_schema = BatchUploadSchema()


def load_or_fail(schema: Schema, data: Any) -> Any:
    """Load data with a schema; marshmallow's ValidationError becomes validation_error (422)."""
    try:
        return schema.load(data)
    except ValidationError as error:
        raise ValidationFailed(details=error.normalized_messages()) from None


def check_batch_size(values: list, max_batch: int, what: str = "files") -> None:
    """Refuse an empty batch (validation_error) or one over max_batch (batch_too_large)."""
    if len(values) > max_batch:
        raise BatchTooLarge(
            f"A batch holds at most {max_batch} {what}; this one has {len(values)}.",
            details={"max_batch": max_batch, "requested": len(values)},
        )
    if not values:
        raise ValidationFailed("The batch is empty.", details={what: ["Give at least one."]})


def load_upload_request(body: dict, max_batch: int) -> list[Any] | None:
    """Return the raw FileSpecs of a batch body ({"files": [...]}), or None for the single-file form."""
    if "files" not in body:
        return None
    files = body["files"]
    if not isinstance(files, list):  # marshmallow says what is wrong; a list needs no such pass
        files = load_or_fail(_batch_upload_schema, body)["files"]
    check_batch_size(files, max_batch)
    return files


def load_upload_spec(raw: Any, policy: UploadPolicy, index: int = 0, *, multipart: bool = False) -> UploadSpec:
    """Validate one FileSpec (plus an optional part_size) and apply policy; raise its domain error."""
    if not isinstance(raw, dict):
        raise ValidationFailed("Each file must be a JSON object.", details={"_schema": ["Not an object."]})
    loaded = load_file_spec_fast(raw) or load_or_fail(_file_spec_schema, raw)
    loaded["part_size"] = raw.get("part_size")
    return policy.upload_spec(index, loaded, multipart=multipart)


def iter_upload_specs(items: list[Any], policy: UploadPolicy, failures: list[UploadFailure]) -> Iterator[UploadSpec]:
    """Yield the upload of each valid FileSpec of a batch, validated as it is taken (so a big batch's
    first files are in the database while its last are checked); add the others to `failures`."""
    for index, raw in enumerate(items):
        try:
            spec = load_upload_spec(raw, policy, index)
        except AppError as error:
            name = raw.get("file_name") if isinstance(raw, dict) else None
            failures.append(UploadFailure(index, name if isinstance(name, str) else None, error))
            continue
        yield spec


class UploadTicketSchema(BaseSchema):
    id = fields.String(required=True)
    file_name = fields.String(required=True)
    s3_key = fields.String(required=True)
    status = fields.String(required=True)
    method = fields.String()
    presigned_url = fields.String()
    headers = fields.Dict(keys=fields.String(), values=fields.String())
    fields_ = fields.Dict(data_key="fields", allow_none=True)
    expires_at = Timestamp(required=True)
    multipart = fields.Boolean(required=True)


class FailedUploadSchema(BaseSchema):
    index = fields.Integer(required=True)
    file_name = fields.String(allow_none=True, required=True)
    error = fields.Nested(ErrorBodySchema, required=True)


class BatchUploadResultSchema(BaseSchema):
    message = fields.String(required=True)
    successful = fields.List(fields.Nested(UploadTicketSchema), required=True)
    failed = fields.List(fields.Nested(FailedUploadSchema), required=True)
    total_requested = fields.Integer(required=True)
    total_successful = fields.Integer(required=True)
    total_failed = fields.Integer(required=True)


class ConfirmOneSchema(BaseSchema):
    s3_key = fields.String(validate=validate.Length(min=1, max=1024))
    id = fields.String(validate=validate.Length(min=1, max=64))

    @validates_schema
    def one_of(self, data: dict, **kwargs) -> None:
        """Require exactly one of id and s3_key."""
        if ("id" in data) == ("s3_key" in data):
            raise ValidationError("Give id or s3_key.", field_name="id")


class ConfirmManySchema(BaseSchema):
    s3_keys = fields.List(fields.String(validate=validate.Length(min=1, max=1024)))
    ids = fields.List(fields.String(validate=validate.Length(min=1, max=64)))

    @validates_schema
    def one_of(self, data: dict, **kwargs) -> None:
        """Require exactly one of ids and s3_keys."""
        if ("ids" in data) == ("s3_keys" in data):
            raise ValidationError("Give ids or s3_keys.", field_name="ids")


class ReasonSchema(BaseSchema):
    code = fields.String(
        required=True, metadata={"description": "content_mismatch, executable_content, image_too_large, …"}
    )
    message = fields.String(required=True)


class InspectionSchema(BaseSchema):
    state = fields.String(validate=validate.OneOf([s.value for s in InspectionState]), required=True)
    detected_type = fields.String(allow_none=True, required=True)
    width = fields.Integer(allow_none=True, required=True)
    height = fields.Integer(allow_none=True, required=True)
    duration_seconds = fields.Float(allow_none=True, required=True)
    pages = fields.Integer(allow_none=True, required=True)
    entry_count = fields.Integer(allow_none=True, required=True)
    thumbnail_url = fields.String(
        allow_none=True, required=True, metadata={"description": "presigned GET of a WebP preview"}
    )
    reason = fields.Nested(ReasonSchema, allow_none=True, required=True)


class FileSchema(BaseSchema):
    id = fields.String(required=True)
    file_name = fields.String(required=True)
    s3_key = fields.String(required=True)
    content_type = fields.String(required=True)
    size = fields.Integer(required=True)
    checksum_sha256 = fields.String(allow_none=True, required=True)
    tier = fields.String(required=True)
    title = fields.String(allow_none=True, required=True)
    description = fields.String(allow_none=True, required=True)
    tags = fields.List(fields.String(), required=True)
    folder = fields.String(required=True)
    profile = fields.String(required=True, metadata={"description": "the upload profile it was uploaded under"})
    status = fields.String(required=True)
    created_at = Timestamp(required=True)
    confirmed_at = Timestamp(allow_none=True, required=True)
    etag = fields.String(allow_none=True, required=True)
    inspection = fields.Method(
        "_inspection",
        allow_none=True,
        required=True,
        metadata={"description": "content inspection; null if the file was never inspected"},
    )

    def _inspection(self, record) -> dict | None:
        view = inspection_of(record) if not isinstance(record, dict) else record.get("inspection")
        return None if view is None else InspectionSchema().dump(view)


class ConfirmOneResultSchema(BaseSchema):
    s3_key = fields.String(required=True)
    id = fields.String(required=True)
    status = fields.String(required=True)
    message = fields.String(required=True)
    file = fields.Nested(FileSchema, required=True)


class ConfirmItemSchema(BaseSchema):
    s3_key = fields.String(allow_none=True, required=True)
    id = fields.String(allow_none=True, required=True)
    status = fields.String(
        validate=validate.OneOf(["success", "missing", "mismatch", "not_found", "error"]), required=True
    )
    message = fields.String(required=True)


class ConfirmManyResultSchema(BaseSchema):
    message = fields.String(required=True)
    results = fields.List(fields.Nested(ConfirmItemSchema), required=True)
    total_requested = fields.Integer(required=True)
    total_successful = fields.Integer(required=True)
    total_failed = fields.Integer(required=True)


class UsageSchema(BaseSchema):
    used_bytes = fields.Integer(required=True)
    reserved_bytes = fields.Integer(required=True)
    quota_bytes = fields.Integer(required=True)
    file_count = fields.Integer(required=True)


class LimitsSchema(BaseSchema):
    max_file_size = fields.Integer(required=True)
    max_batch = fields.Integer(required=True)
    multipart_threshold = fields.Integer(required=True)
    default_part_size = fields.Integer(required=True)
    allowed_content_types = fields.List(fields.String(), required=True)
    tiers = fields.List(fields.String(), required=True)
    url_expires_in = fields.Integer(required=True)
    profiles = fields.Dict(
        keys=fields.String(),
        values=fields.Nested("ProfileSchema"),
        required=True,
        metadata={"description": "Upload profiles by name, `default` (the limits above) first; effective limits."},
    )


class ProfileSchema(BaseSchema):
    description = fields.String(allow_none=True, required=True)
    max_file_size = fields.Integer(required=True)
    allowed_content_types = fields.List(fields.String(), required=True)
    max_image_pixels = fields.Integer(required=True)
    min_image_side = fields.Integer(allow_none=True, required=True)
    max_image_side = fields.Integer(allow_none=True, required=True)
    min_media_seconds = fields.Raw(allow_none=True, required=True, metadata={"type": "number"})
    max_media_seconds = fields.Raw(required=True, metadata={"type": "number"})
    default_tier = fields.String(required=True)
    folder = fields.String(required=True, metadata={"description": "the folder its files go under ('' the root)"})


class HealthSchema(BaseSchema):
    status = fields.String(required=True)
    checks = fields.Dict()


# -- multipart ----------------------------------------------------------------------------


class MultipartCreateSchema(FileSpecSchema):
    part_size = fields.Integer(
        strict=True,
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=MIN_PART_SIZE, max=MAX_PART_SIZE),
        metadata={"description": "Bytes per part (the last may be smaller); default chosen from file_size."},
    )


class UploadedPartSchema(BaseSchema):
    part_number = fields.Integer(required=True)
    size = fields.Integer(required=True)
    etag = fields.String(required=True)


class MultipartUploadSchema(BaseSchema):
    id = fields.String(required=True)
    s3_key = fields.String(required=True)
    file_name = fields.String(required=True)
    upload_id = fields.String(allow_none=True, required=True)
    part_size = fields.Integer(required=True)
    part_count = fields.Integer(required=True)
    file_size = fields.Integer(required=True)
    status = fields.String(required=True)
    expires_at = Timestamp(required=True)
    parts = fields.List(fields.Nested(UploadedPartSchema), metadata={"description": "Only in the status answer."})
    bytes_uploaded = fields.Integer(metadata={"description": "Only in the status answer."})

    @post_dump
    def only_in_status(self, data: dict, **kwargs) -> dict:
        """Leave out parts and bytes_uploaded where they were not read (create answers)."""
        for name in ("parts", "bytes_uploaded"):
            if data.get(name) is None:
                data.pop(name, None)
        return data


class SignPartsSchema(BaseSchema):
    part_numbers = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_PARTS)),
        required=True,
        validate=validate.Length(min=1, max=MAX_SIGN_BATCH),
    )


class SignedPartSchema(BaseSchema):
    part_number = fields.Integer(required=True)
    url = fields.String(required=True)
    headers = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    size = fields.Integer(
        metadata={"description": "Exact bytes to send; the URL signs this Content-Length."}, required=True
    )


class SignedPartsSchema(BaseSchema):
    parts = fields.List(fields.Nested(SignedPartSchema), required=True)
    expires_at = Timestamp(required=True)


class CompletedPartSchema(BaseSchema):
    part_number = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=MAX_PARTS))
    etag = fields.String(required=True, validate=validate.Length(min=1, max=MAX_ETAG_LENGTH + 2))


class CompleteMultipartSchema(BaseSchema):
    parts = fields.List(
        fields.Nested(CompletedPartSchema),
        load_default=None,
        validate=validate.Length(min=1, max=MAX_PARTS),
        metadata={"description": "Leave out (send {}) to let the server list the parts in S3."},
    )


class MultipartAbortSchema(BaseSchema):
    id = fields.String(required=True)
    status = fields.String(required=True)


# -- file management ----------------------------------------------------------------------


class FileUpdateSchema(BaseSchema):
    file_name = fields.String(validate=validate.Length(min=1, max=4096))
    title = fields.String(allow_none=True, validate=validate.Length(max=200))
    description = fields.String(allow_none=True, validate=validate.Length(max=2000))
    tags = TagsField(allow_none=True, metadata={"type": "array", "items": {"type": "string"}})
    folder = fields.String(allow_none=True, validate=validate.Length(max=4096))
    tier = fields.String(validate=validate.OneOf(list(TIERS)))


class DeletedSchema(BaseSchema):
    id = fields.String(required=True)
    status = fields.String(metadata={"example": "deleted"}, required=True)


class BatchDeleteSchema(BaseSchema):
    ids = fields.List(fields.String(validate=validate.Length(min=1, max=64)), required=True)


class FailedDeleteSchema(BaseSchema):
    id = fields.String(required=True)
    error = fields.Nested(ErrorBodySchema, required=True)


class BatchDeleteResultSchema(BaseSchema):
    deleted = fields.List(fields.String(), required=True)
    failed = fields.List(fields.Nested(FailedDeleteSchema), required=True)


class MoveFilesSchema(BaseSchema):
    ids = fields.List(fields.String(validate=validate.Length(min=1, max=64)), required=True)
    folder = fields.String(
        required=True, allow_none=True, validate=validate.Length(max=4096), metadata={"description": "'' is the top"}
    )


class MoveFilesResultSchema(BaseSchema):
    folder = fields.String(required=True)
    moved = fields.List(fields.String(), required=True)
    failed = fields.List(fields.Nested(FailedDeleteSchema), required=True)


# -- folders ------------------------------------------------------------------------------


class FolderCreateSchema(BaseSchema):
    path = fields.String(required=True, validate=validate.Length(min=1, max=4096), metadata={"example": "photos/2026"})


class FolderMoveSchema(BaseSchema):
    new_path = fields.String(required=True, validate=validate.Length(min=1, max=4096))


class FolderSchema(BaseSchema):
    path = fields.String(required=True)
    files_moved = fields.Integer(metadata={"description": "after a move: the files that moved with it"})


class FolderDeletedSchema(BaseSchema):
    path = fields.String(required=True)
    status = fields.String(required=True, metadata={"example": "deleted"})


class DownloadArgsSchema(BaseSchema):
    disposition = fields.String(load_default="attachment", validate=validate.OneOf(["attachment", "inline"]))
    redirect = fields.Boolean(load_default=False)


class DownloadSchema(BaseSchema):
    url = fields.String(required=True)
    expires_at = Timestamp(required=True)


class CopySchema(BaseSchema):
    file_name = fields.String(validate=validate.Length(min=1, max=4096))
    folder = fields.String(allow_none=True, validate=validate.Length(max=4096))


# -- listing ------------------------------------------------------------------------------


class PageQuerySchema(BaseSchema):
    """The paging arguments of a listing: how many items, and where the previous page ended."""

    @staticmethod
    def cursor_field(description: str = "`next_cursor` of the previous page.") -> fields.String:
        """Return the cursor argument, described."""
        return fields.String(
            load_default=None, validate=validate.Length(max=2048), metadata={"description": description}
        )

    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = cursor_field()


class PageSchema(BaseSchema):
    """A page of a listing: its items (in each subclass), and where the next page starts."""

    next_cursor = fields.String(
        allow_none=True,
        metadata={"description": "Pass as `cursor` for the next page; null on the last page."},
        required=True,
    )


class FileListQuerySchema(PageQuerySchema):
    status = fields.String(
        load_default=FileStatus.COMPLETE,
        validate=validate.OneOf(list(FileStatus)),
        metadata={"description": "Only files with this status."},
    )
    folder = fields.String(
        load_default=None,
        validate=validate.Length(max=4096),
        metadata={
            "description": "Only files directly in this folder (`photos/2026`; empty for the root), and list the "
            "folders directly under it in `folders`. Omitted: files of every folder, and `folders` is null."
        },
    )
    q = fields.String(
        load_default=None,
        validate=validate.Length(max=MAX_QUERY_LENGTH),
        metadata={"description": "Text the name or title contains, case-insensitive; % and _ are literal."},
    )
    tag = fields.String(
        load_default=None,
        validate=validate.Length(max=256),
        metadata={"description": "Only files with exactly this tag (case-insensitive, as tags are stored lowercase)."},
    )
    profile = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "Only files uploaded under this upload profile (`default`: under none)."},
    )
    sort = fields.String(
        load_default=DEFAULT_SORT,
        validate=validate.OneOf(SORTS),
        metadata={"description": "created_at, file_name or size; a leading - sorts descending."},
    )
    cursor = PageQuerySchema.cursor_field("`next_cursor` of the previous page, with the same sort.")


class FileListSchema(PageSchema):
    items = fields.List(fields.Nested(FileSchema), required=True)
    folders = fields.List(
        fields.String(),
        allow_none=True,
        metadata={
            "description": "Names of the folders directly under `folder` that hold files of the listed status "
            "(on every page); null when `folder` was not given."
        },
        required=True,
    )


# -- share links --------------------------------------------------------------------------


class ShareCreateSchema(BaseSchema):
    class Meta:
        unknown = RAISE  # a mistyped "max_download" must not make a link without a limit

    expires_in = fields.Integer(
        strict=True,
        load_default=DEFAULT_EXPIRES_IN,
        validate=validate.Range(min=1, max=MAX_EXPIRES_IN),
        metadata={"description": "Seconds the link works: default 7 days, at most 30 days."},
    )
    max_downloads = fields.Integer(
        strict=True,
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=1, max=2**31 - 1),
        metadata={"description": "Downloads the link allows; null: no limit."},
    )
    password = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=1024),
        metadata={"description": "A password visitors must give (POST /s/<token>); null: none."},
    )


class ShareSchema(BaseSchema):
    id = fields.String(required=True)
    file_id = fields.String(required=True)
    url = fields.String(
        allow_none=True,
        required=True,
        metadata={
            "description": "The public link `<base>/s/<token>`: only in the answer that makes the link (the server "
            "keeps only a hash of its token); null afterwards."
        },
    )
    expires_at = Timestamp(required=True)
    max_downloads = fields.Integer(allow_none=True, required=True)
    downloads = fields.Integer(required=True, metadata={"description": "URLs issued so far"})
    has_password = fields.Boolean(required=True)
    revoked = fields.Boolean(required=True)
    created_at = Timestamp(required=True)


class ShareListQuerySchema(PageQuerySchema):
    file_id = fields.String(
        load_default=None, validate=validate.Length(min=1, max=64), metadata={"description": "Only this file's links."}
    )


class ShareListSchema(PageSchema):
    items = fields.List(fields.Nested(ShareSchema), required=True)


class SharePasswordSchema(BaseSchema):
    password = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=1024))


class SharedFileSchema(BaseSchema):
    file_name = fields.String(required=True)
    size = fields.Integer(required=True)
    content_type = fields.String(required=True)
    thumbnail_url = fields.String(allow_none=True, required=True, metadata={"description": "a WebP preview, or null"})
    url = fields.String(required=True, metadata={"description": "a short-lived presigned GET of the file"})
    expires_at = Timestamp(required=True, metadata={"description": "when `url` stops working"})


# -- administration -----------------------------------------------------------------------


class CountBytesSchema(BaseSchema):
    count = fields.Integer(required=True)
    bytes = fields.Integer(required=True)


class UserCountsSchema(BaseSchema):
    total = fields.Integer(required=True)
    active = fields.Integer(required=True)
    disabled = fields.Integer(required=True)
    admins = fields.Integer(metadata={"description": "active administrators"}, required=True)


class AdminStatsSchema(BaseSchema):
    users = fields.Nested(UserCountsSchema, required=True)
    files = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(CountBytesSchema),
        metadata={"description": "by status"},
        required=True,
    )
    used_bytes = fields.Integer(required=True)
    reserved_bytes = fields.Integer(
        metadata={"description": "held by upload URLs that have not expired"}, required=True
    )
    quota_bytes = fields.Integer(metadata={"description": "sum of all quotas"}, required=True)
    lapsed_reservations = fields.Integer(
        metadata={"description": "expired uploads the sweeper has yet to settle"}, required=True
    )


class AdminUserSchema(UserSchema):
    """The User shape, plus what only admins see."""

    is_active = fields.Boolean(required=True)
    file_count = fields.Integer(required=True)


class AdminUserPageSchema(BaseSchema):
    items = fields.List(fields.Nested(AdminUserSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class AdminUserQuerySchema(BaseSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=1000))
    cursor = fields.String(load_default=None, validate=validate.Length(max=512))
    q = fields.String(load_default=None, validate=validate.Length(max=64), metadata={"description": "in username"})


class AdminUserUpdateSchema(BaseSchema):
    class Meta:
        unknown = RAISE  # a mistyped field must not pass as a no-op

    quota_bytes = fields.Integer(
        strict=True, validate=validate.Range(min=0, max=MAX_QUOTA_BYTES), metadata={"description": "at most 1 PiB"}
    )
    is_active = fields.Boolean()
    is_admin = fields.Boolean()


class SweepResultSchema(BaseSchema):
    confirmed = fields.Integer(
        metadata={"description": "expired uploads whose objects arrived and fit the quota"}, required=True
    )
    expired = fields.Integer(
        metadata={"description": "expired uploads without an object, or over the quota"}, required=True
    )
    rejected = fields.Integer(
        metadata={"description": "expired uploads whose objects differ from the declaration"}, required=True
    )
    multipart_aborted = fields.Integer(required=True)
    keys_purged = fields.Integer(
        metadata={"description": "keys of rejected/expired records deleted from S3"}, required=True
    )
    revoked_tokens_deleted = fields.Integer(required=True)
    shares_deleted = fields.Integer(
        metadata={"description": "share links expired or revoked more than 30 days ago"}, required=True
    )
    deletes_finished = fields.Integer(
        metadata={"description": "deletes a dead process or an S3 failure left half done"}, required=True
    )
    inspections_queued = fields.Integer(
        metadata={"description": "inspections queued again: their worker died or their message was lost"},
        required=True,
    )
    errors = fields.Integer(
        metadata={"description": "S3 failures; those records are retried on the next run"}, required=True
    )
    more = fields.Boolean(metadata={"description": "a batch was full: run again"}, required=True)


# -- Uppy (Companion's field names) -------------------------------------------------------


class SessionSchema(BaseSchema):
    companion_endpoint = fields.String(
        metadata={"description": "Give it to Uppy 6 as `companionEndpoint`."}, required=True
    )
    expires_at = Timestamp(required=True)


class ParamsQuerySchema(BaseSchema):
    filename = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    type = fields.String(load_default=None, validate=validate.Length(max=255))


class ParamsSchema(BaseSchema):
    method = fields.String(required=True)
    url = fields.String(required=True)
    form_fields = fields.Dict(keys=fields.String(), values=fields.String(), data_key="fields", required=True)
    expires = fields.Integer(metadata={"description": "Seconds the form stays valid."}, required=True)


class CreateUploadSchema(BaseSchema):
    filename = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    type = fields.String(load_default=None, validate=validate.Length(max=255))
    metadata = fields.Dict(load_default=dict, metadata={"description": "Uppy meta; `size` declares the size."})


class CreatedUploadSchema(BaseSchema):
    key = fields.String(required=True)
    uploadId = fields.String(required=True)  # Companion's field names
    bucket = fields.String(required=True)


class KeyQuerySchema(BaseSchema):
    key = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class BatchQuerySchema(KeyQuerySchema):
    partNumbers = DelimitedList(
        fields.Integer(validate=validate.Range(min=1, max=MAX_PARTS)),
        required=True,
        validate=validate.Length(min=1, max=MAX_SIGN_BATCH),
    )


class CompanionStoredPartSchema(BaseSchema):
    PartNumber = fields.Integer(required=True)
    ETag = fields.String(required=True)
    Size = fields.Integer(required=True)


class CompanionSignedPartSchema(BaseSchema):
    url = fields.String(required=True)
    expires = fields.Integer(required=True)


class CompanionSignedBatchSchema(BaseSchema):
    presignedUrls = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class CompanionPartSchema(BaseSchema):
    PartNumber = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_PARTS))
    ETag = fields.String(required=True, validate=validate.Length(min=1, max=MAX_ETAG_LENGTH + 2))


class CompleteUploadSchema(BaseSchema):
    parts = fields.List(
        fields.Nested(CompanionPartSchema), required=True, validate=validate.Length(min=1, max=MAX_PARTS)
    )


class CompanionErrorSchema(BaseSchema):
    error = fields.String(required=True, metadata={"description": "what went wrong (Companion's field)"})
    message = fields.String(metadata={"description": "the same, where Uppy 5 shows it"})


class CompletedUploadSchema(BaseSchema):
    location = fields.String(required=True)
    key = fields.String(required=True)
    bucket = fields.String(required=True)


# -- Companion metadata (Uppy sends name, type and a file's meta fields) --------------------

# Meta fields Uppy may send that mean something here; Uppy sends all of a file's meta, the rest is ignored.
METADATA_KEYS = frozenset(
    {"name", "type", "size", "title", "description", "tags", "folder", "relativePath", "tier", "profile"}
)
MAX_METADATA_VALUE = 4096
# Uppy 6 sends String(value) for every meta field, so an unset one arrives as "null".
_ABSENT = frozenset({"", "null", "undefined"})


@dataclass
class CompanionFile:
    """An Uppy file as Companion's routes describe it: FileSpec fields but the size, and the size if declared."""

    fields: dict[str, Any]
    declared_size: int | None


def load_companion_file(filename: Any, content_type: Any, raw_metadata: Any) -> CompanionFile:
    """Decode an Uppy file's name, type and meta into FileSpec fields (its size only if the app declared it)."""
    metadata = decode_metadata(raw_metadata)
    return CompanionFile(file_spec_fields(filename, content_type, metadata), declared_size(metadata))


def decode_text(value: Any, field: str) -> str:
    """Return a metadata string with RFC 2047 encoded-words (=?UTF-8?B?...?=) decoded."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValidationFailed(details={field: ["Must be a string."]})
    text = str(value)
    if len(text) > MAX_METADATA_VALUE:
        raise ValidationFailed(details={field: [f"Longer than {MAX_METADATA_VALUE} characters."]})
    if "=?" not in text:
        return text  # the usual case; decode_header would also fold whitespace
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        raise ValidationFailed(details={field: ["Not a valid RFC 2047 encoded word."]}) from None


def decode_metadata(raw: Any) -> dict[str, str]:
    """Return the allow-listed metadata fields, decoded; unset ('null') and unknown fields are dropped."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValidationFailed(details={"metadata": ["Must be an object of meta fields."]})
    metadata = {}
    for key, value in raw.items():
        if key not in METADATA_KEYS or value is None:
            continue
        text = decode_text(value, f"metadata.{key}").strip()
        if text not in _ABSENT:
            metadata[key] = text
    return metadata


def declared_size(metadata: dict[str, str]) -> int | None:
    """Return the file size the app declared in the meta, or None."""
    text = metadata.get("size")
    if text is None:
        return None
    if not text.isdigit() or len(text) > 18:
        raise ValidationFailed(details={"metadata.size": ["Must be the file's size in bytes."]})
    return int(text)


def file_spec_fields(filename: Any, content_type: Any, metadata: dict[str, str]) -> dict[str, Any]:
    """Return the FileSpec fields of an Uppy file but its size: name, type, and the allow-listed meta."""
    name = decode_text(filename, "filename") if filename not in (None, "") else metadata.get("name", "")
    ctype = content_type if content_type not in (None, "") else metadata.get("type") or "application/octet-stream"
    folder = metadata.get("folder", "")
    relative = metadata.get("relativePath", "")
    if relative:
        # A dropped folder: "holiday/day1/a.jpg" files a.jpg under <folder>/holiday/day1.
        folder = posixpath.join(folder, posixpath.dirname(relative.replace("\\", "/")))
    spec: dict[str, Any] = {"file_name": name, "content_type": ctype}
    for field in ("title", "description", "tags", "tier", "profile"):
        if field in metadata:
            spec[field] = metadata[field]
    if folder:
        spec["folder"] = folder
    return spec


# -- content inspection ------------------------------------------------------------------


class FormatKindSchema(BaseSchema):
    types = fields.List(fields.String(), required=True, metadata={"description": "allowed types of this kind"})
    max_pixels = fields.Integer(metadata={"description": "images"})
    min_side = fields.Integer(metadata={"description": "images: the shorter side at least (a profile's)"})
    max_side = fields.Integer(metadata={"description": "images: the longer side at most (a profile's)"})
    max_seconds = fields.Raw(metadata={"type": "number", "description": "audio and video"})
    min_seconds = fields.Raw(metadata={"type": "number", "description": "audio and video (a profile's)"})
    max_entries = fields.Integer(metadata={"description": "archives"})
    max_uncompressed = fields.Integer(metadata={"description": "archives, bytes"})
    max_ratio = fields.Integer(metadata={"description": "archives, uncompressed / compressed"})
    reject_active = fields.Boolean(metadata={"description": "PDF with JavaScript or launch actions"})
    previews = fields.Boolean(required=True, metadata={"description": "a WebP thumbnail is made"})


class FormatsSchema(BaseSchema):
    inspect = fields.Boolean(required=True, metadata={"description": "uploads are inspected (S3DRIVE_INSPECT)"})
    thumbnail_size = fields.Integer(required=True)
    kinds = fields.Dict(keys=fields.String(), values=fields.Nested(FormatKindSchema), required=True)
    profiles = fields.Dict(
        keys=fields.String(),
        values=fields.Nested("ProfileFormatsSchema"),
        required=True,
        metadata={"description": "the same, under each upload profile (`default`: the kinds above)"},
    )


class ProfileFormatsSchema(BaseSchema):
    kinds = fields.Dict(keys=fields.String(), values=fields.Nested(FormatKindSchema), required=True)


class QuarantinedSchema(FileSchema):
    """A rejected file kept for review: the File shape, plus its owner and where it is kept."""

    user_id = fields.String(required=True)
    quarantine_key = fields.String(allow_none=True, required=True, metadata={"description": "null once released"})
    inspected_at = Timestamp(allow_none=True, required=True)


class QuarantineListSchema(BaseSchema):
    items = fields.List(fields.Nested(QuarantinedSchema), required=True)


class QuarantineQuerySchema(BaseSchema):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class ReinspectSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    ids = fields.List(fields.UUID(), validate=validate.Length(min=1, max=10_000))
    since = fields.AwareDateTime(default_timezone=None)

    @validates_schema
    def _one_of(self, data, **kwargs):
        if ("ids" in data) == ("since" in data):
            raise ValidationError("Give ids or since, not both.", field_name="ids")


class ReinspectResultSchema(BaseSchema):
    queued = fields.Integer(required=True, metadata={"description": "complete files marked pending and queued"})
    ids = fields.List(fields.String(), required=True)


class QuarantineDeletedSchema(BaseSchema):
    id = fields.String(required=True)
    status = fields.String(required=True)
