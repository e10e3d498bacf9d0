"""Marshmallow schemas: request validation and response shapes (they make the OpenAPI)."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from .policy import TIERS
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
    details = fields.Dict(load_default=dict)


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
    id = fields.String()
    username = fields.String()
    is_admin = fields.Boolean()
    quota_bytes = fields.Integer()
    used_bytes = fields.Integer()
    reserved_bytes = fields.Integer()
    created_at = Timestamp()


class UserEnvelopeSchema(BaseSchema):
    user = fields.Nested(UserSchema)


class TokenPairSchema(BaseSchema):
    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String(metadata={"example": "Bearer"})
    expires_in = fields.Integer()


class AccessTokenSchema(BaseSchema):
    access_token = fields.String()
    expires_in = fields.Integer()


class MessageSchema(BaseSchema):
    message = fields.String()


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
    tier = fields.String(load_default="standard", validate=validate.OneOf(list(TIERS)))
    title = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    description = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))
    tags = TagsField(load_default=None, allow_none=True, metadata={"type": "array", "items": {"type": "string"}})
    folder = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=4096))
    method = fields.String(load_default="PUT", validate=validate.OneOf(["PUT", "POST"]))


_TIER_NAMES = frozenset(TIERS)
# (field, max length, default when missing or null) of the optional string fields.
_OPTIONAL_STRINGS = (("checksum_sha256", 128), ("title", 200), ("description", 2000), ("folder", 4096))


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
    tier, method, tags = raw.get("tier", "standard"), raw.get("method", "PUT"), raw.get("tags")
    if type(tier) is not str or tier not in _TIER_NAMES or method not in ("PUT", "POST"):
        return None
    if tags is not None and type(tags) is not str and not (type(tags) is list and all(type(t) is str for t in tags)):
        return None
    spec.update(tier=tier, method=method, tags=tags)
    return spec


class BatchUploadSchema(BaseSchema):
    files = fields.List(fields.Raw(), required=True, metadata={"items": FileSpecSchema})


class UploadTicketSchema(BaseSchema):
    id = fields.String()
    file_name = fields.String()
    s3_key = fields.String()
    status = fields.String()
    method = fields.String()
    presigned_url = fields.String()
    headers = fields.Dict(keys=fields.String(), values=fields.String())
    fields_ = fields.Dict(data_key="fields", allow_none=True)
    expires_at = Timestamp()
    multipart = fields.Boolean()


class FailedUploadSchema(BaseSchema):
    index = fields.Integer()
    file_name = fields.String(allow_none=True)
    error = fields.Nested(ErrorBodySchema)


class BatchUploadResultSchema(BaseSchema):
    message = fields.String()
    successful = fields.List(fields.Nested(UploadTicketSchema))
    failed = fields.List(fields.Nested(FailedUploadSchema))
    total_requested = fields.Integer()
    total_successful = fields.Integer()
    total_failed = fields.Integer()


class ConfirmOneSchema(BaseSchema):
    s3_key = fields.String(validate=validate.Length(min=1, max=1024))
    id = fields.String(validate=validate.Length(min=1, max=64))


class ConfirmManySchema(BaseSchema):
    s3_keys = fields.List(fields.String(validate=validate.Length(min=1, max=1024)))
    ids = fields.List(fields.String(validate=validate.Length(min=1, max=64)))


class FileSchema(BaseSchema):
    id = fields.String()
    file_name = fields.String()
    s3_key = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    checksum_sha256 = fields.String(allow_none=True)
    tier = fields.String()
    title = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    tags = fields.List(fields.String())
    folder = fields.String()
    status = fields.String()
    created_at = Timestamp()
    confirmed_at = Timestamp(allow_none=True)
    etag = fields.String(allow_none=True)


class ConfirmOneResultSchema(BaseSchema):
    s3_key = fields.String()
    id = fields.String()
    status = fields.String()
    message = fields.String()
    file = fields.Nested(FileSchema)


class ConfirmItemSchema(BaseSchema):
    s3_key = fields.String(allow_none=True)
    id = fields.String(allow_none=True)
    status = fields.String(validate=validate.OneOf(["success", "missing", "mismatch", "not_found", "error"]))
    message = fields.String()


class ConfirmManyResultSchema(BaseSchema):
    message = fields.String()
    results = fields.List(fields.Nested(ConfirmItemSchema))
    total_requested = fields.Integer()
    total_successful = fields.Integer()
    total_failed = fields.Integer()


class UsageSchema(BaseSchema):
    used_bytes = fields.Integer()
    reserved_bytes = fields.Integer()
    quota_bytes = fields.Integer()
    file_count = fields.Integer()


class LimitsSchema(BaseSchema):
    max_file_size = fields.Integer()
    max_batch = fields.Integer()
    multipart_threshold = fields.Integer()
    default_part_size = fields.Integer()
    allowed_content_types = fields.List(fields.String())
    tiers = fields.List(fields.String())
    url_expires_in = fields.Integer()


class HealthSchema(BaseSchema):
    status = fields.String()
    checks = fields.Dict()
