"""Uppy drop-in: Companion-compatible S3 routes under /uppy and /uppy/<token>.

Every Companion route is served twice: under /uppy, authenticated by an `Authorization:
Bearer` header (Uppy 5 `endpoint` + `headers`), and under /uppy/<token>, authenticated by
the token of `POST /api/uppy/session` (Uppy 6 `companionEndpoint`, which sends no headers).
Errors on these routes have Companion's shape, `{"error": "..."}`, with our statuses (the app's
error handlers render them through _companion_error);
`POST /api/uppy/session` keeps the API's envelope. See services/uppy.py for how uploads
without a declared size and Uppy's own part sizes are handled.
"""

from __future__ import annotations

from flask import current_app, jsonify, request
from flask_jwt_extended import current_user, get_jwt, verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTExtendedException, NoAuthorizationError, RevokedTokenError
from jwt.exceptions import ExpiredSignatureError, PyJWTError

from .. import logs
from ..errors import Unauthorized
from ..schemas import (
    BaseSchema,
    BatchQuerySchema,
    CompanionSignedBatchSchema,
    CompanionSignedPartSchema,
    CompanionStoredPartSchema,
    CompletedUploadSchema,
    CompleteUploadSchema,
    CreatedUploadSchema,
    CreateUploadSchema,
    KeyQuerySchema,
    ParamsQuerySchema,
    ParamsSchema,
    SessionSchema,
    load_companion_file,
)
from ..services import uppy
from .base import Blueprint, errors, public_url
from .errors import error_response, render_errors_with


class CompanionBlueprint(Blueprint):
    """A blueprint whose OpenAPI document shows Companion's error shape ({"error": "..."})."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._prepare_doc_cbks.append(self._document_companion_errors)

    @staticmethod
    def _document_companion_errors(doc: dict, doc_info: dict, **kwargs) -> dict:
        responses = doc.get("responses", {})
        for status, response in responses.items():
            if response in ENVELOPE_ERROR_RESPONSES:
                responses[status] = COMPANION_ERROR_RESPONSE
        return doc


# The error responses flask-smorest documents (in the envelope), and the one these routes answer with.
ENVELOPE_ERROR_RESPONSES = ("DEFAULT_ERROR", "UNPROCESSABLE_ENTITY")
COMPANION_ERROR_RESPONSE = "COMPANION_ERROR"

blp = CompanionBlueprint("uppy", __name__, url_prefix="/uppy", description="Uppy Companion-compatible S3 routes")
session_blp = Blueprint("uppy_session", __name__, url_prefix="/api/uppy", description="Uppy sessions")

# Each Companion route under both prefixes; the second passes the session token to the view.
PREFIXES = (("", ""), ("_session", "/<string:token>"))


def companion_route(rule: str, endpoint: str, methods: list[str]):
    """Register a view under /uppy<rule> and /uppy/<token><rule>."""

    def decorator(view):
        for suffix, prefix in PREFIXES:
            blp.route(prefix + rule, endpoint=endpoint + suffix, methods=methods)(view)
        return view

    return decorator


# -- auth ----------------------------------------------------------------------------------


def caller_id(token: str | None) -> str:
    """Return the id of the user behind the request: the session token's, or the Bearer header's."""
    if token is not None:
        user_id = uppy.session_user(token).id
        logs.note_user(user_id)  # no JWT here: the request's log lines learn the user from the session
        return user_id
    try:
        verify_jwt_in_request()
    except NoAuthorizationError:
        raise Unauthorized(
            "Send Authorization: Bearer <access token>, or use the companion_endpoint of POST /api/uppy/session."
        ) from None
    except ExpiredSignatureError:
        raise Unauthorized("The token has expired; refresh it or log in again.", code="token_expired") from None
    except RevokedTokenError:
        raise Unauthorized("The token has been revoked; log in again.", code="token_revoked") from None
    except (JWTExtendedException, PyJWTError) as error:
        raise Unauthorized(f"The token is invalid: {error}.", code="invalid_token") from None
    return current_user.id


# -- routes --------------------------------------------------------------------------------


@session_blp.route("/session", methods=["POST"])
@errors(401, 503)
@session_blp.doc(security=[{"bearerAuth": []}])
@session_blp.response(200, SessionSchema)
def session():
    """Start an Uppy session: a short-lived Companion endpoint scoped to the caller, for Uppy 6."""
    # caller_id, not auth_required: this blueprint's error handlers see every JWT failure.
    token, expires_at = uppy.issue_session(caller_id(None), get_jwt().get("jti"))
    return {"companion_endpoint": public_url(f"/uppy/{token}"), "expires_at": expires_at}


@companion_route("/s3/params", "params", ["GET"])
@errors(401, 413, 415, 422, 503, 507, response=COMPANION_ERROR_RESPONSE)
@blp.arguments(ParamsQuerySchema, location="query")
@blp.response(200, ParamsSchema)
def params(args, token=None):
    """Presign a POST form for one file; policy and quota as native; confirmed once S3 holds it.

    Without `metadata[size]` (stock Uppy), the form accepts up to the multipart threshold, or the
    quota left if less, and that much is reserved until the upload is confirmed at its real size.
    """
    user_id = caller_id(token)
    metadata = {key[9:-1]: value for key, value in request.args.items() if key.startswith("metadata[")}
    # Built by hand, not dumped through marshmallow: the hot path.
    upload = load_companion_file(args["filename"], args["type"], metadata)
    return jsonify(uppy.upload_params(user_id, upload))


@companion_route("/s3/multipart", "create_multipart", ["POST"])
@errors(400, 401, 413, 415, 422, 503, 507, response=COMPANION_ERROR_RESPONSE)
@blp.arguments(CreateUploadSchema)
@blp.response(200, CreatedUploadSchema)
def create_multipart(args, token=None):
    """Start a multipart upload; a size declared in metadata is reserved, else checked at complete."""
    user_id = caller_id(token)
    record = uppy.create_upload(user_id, load_companion_file(args["filename"], args["type"], args["metadata"]))
    return {"key": record.s3_key, "uploadId": record.upload_id, "bucket": uppy.bucket_name()}


@companion_route("/s3/multipart/<string:upload_id>", "list_parts", ["GET"])
@errors(401, 404, 409, 422, 503, response=COMPANION_ERROR_RESPONSE)
@blp.arguments(KeyQuerySchema, location="query")
@blp.response(200, CompanionStoredPartSchema(many=True))
def list_parts(args, upload_id, token=None):
    """List the parts S3 holds (resume after a reload)."""
    parts = uppy.list_upload_parts(caller_id(token), upload_id, args["key"])
    return [{"PartNumber": p.part_number, "ETag": p.etag, "Size": p.size} for p in parts]


@companion_route("/s3/multipart/<string:upload_id>/batch", "sign_batch", ["GET"])
@errors(401, 404, 409, 413, 422, 503, 507, response=COMPANION_ERROR_RESPONSE)
@blp.arguments(BatchQuerySchema, location="query")
@blp.response(200, CompanionSignedBatchSchema)
def sign_batch(args, upload_id, token=None):
    """Sign UploadPart URLs for up to 1,000 part numbers."""
    urls = uppy.sign_part_urls(caller_id(token), upload_id, args["key"], args["partNumbers"])
    return jsonify({"presignedUrls": {str(number): url for number, url in urls.items()}})


@companion_route("/s3/multipart/<string:upload_id>/<int:part_number>", "sign_part", ["GET"])
@errors(401, 404, 409, 413, 422, 503, 507, response=COMPANION_ERROR_RESPONSE)
@blp.arguments(KeyQuerySchema, location="query")
@blp.response(200, CompanionSignedPartSchema)
def sign_part(args, upload_id, part_number, token=None):
    """Sign the UploadPart URL of one part."""
    urls = uppy.sign_part_urls(caller_id(token), upload_id, args["key"], [part_number])
    return jsonify({"url": urls[part_number], "expires": current_app.config["URL_EXPIRES_IN"]})


@companion_route("/s3/multipart/<string:upload_id>/complete", "complete_multipart", ["POST"])
@errors(400, 401, 404, 409, 413, 422, 503, 507, response=COMPANION_ERROR_RESPONSE)
@blp.arguments(KeyQuerySchema, location="query")
@blp.arguments(CompleteUploadSchema)
@blp.response(200, CompletedUploadSchema)
def complete_multipart(args, body, upload_id, token=None):
    """Complete the upload from Uppy's ETags (quoted or not); the size is verified."""
    parts = [{"part_number": part["PartNumber"], "etag": part["ETag"]} for part in body["parts"]]
    record = uppy.complete_upload(caller_id(token), upload_id, args["key"], parts)
    return {"location": uppy.object_location(record.s3_key), "key": record.s3_key, "bucket": uppy.bucket_name()}


@companion_route("/s3/multipart/<string:upload_id>", "abort_multipart", ["DELETE"])
@errors(401, 404, 409, 422, 503, response=COMPANION_ERROR_RESPONSE)
@blp.arguments(KeyQuerySchema, location="query")
@blp.response(200, BaseSchema)
def abort_multipart(args, upload_id, token=None):
    """Abort the upload in S3 and release its quota reservation."""
    uppy.abort_upload(caller_id(token), upload_id, args["key"])
    return {}


# -- errors: Companion's shape on the Companion routes -------------------------------------


def _companion_error(status: int, code: str, message: str, details: dict | None, headers: dict | None):
    """Render an error as Companion does ({"error": message}) on /uppy routes, else in the envelope.

    Every error answer of this blueprint comes here (render_errors_with), from the app's handlers.
    """
    # Companion has no details field: name the invalid fields in the sentence.
    invalid = "; ".join(f"{name}: {' '.join(map(str, texts))}" for name, texts in _flat(details or {}))
    if invalid:
        message = f"{message} ({invalid})"
    # Uppy 5's client shows `message` to the user for 4xx answers; Companion's own field is `error`.
    response = jsonify({"error": message, "message": message})
    response.status_code = status
    response.headers.update(headers or {})
    return response


render_errors_with(blp, _companion_error)


@blp.errorhandler(JWTExtendedException)
@blp.errorhandler(PyJWTError)
def handle_jwt_error(error: Exception):
    """Render a token failure that escaped caller_id as 401."""
    return error_response(401, "invalid_token", f"The token is invalid: {error}.")


def _flat(details: dict):
    """Yield (field, messages) pairs from validation details (nested by webargs); skip other details."""
    for name, messages in details.items():
        if isinstance(messages, dict):
            for inner, inner_messages in _flat(messages):
                yield f"{name}.{inner}", inner_messages
        elif isinstance(messages, list) and all(isinstance(text, str) for text in messages):
            yield name, messages
