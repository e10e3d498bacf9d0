"""The only door to S3: signing, the S3 calls services need, SSE settings, S3 errors as domain errors.

One boto3 client, one fast signer and one bounded thread pool per process, created lazily
(clients are thread-safe, sessions are not). Nothing outside this module (and the dev
stack) imports boto3.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from flask import Flask, current_app

from .chunks import chunked
from .errors import AppError, InvalidState, MultipartRefused, ObjectMissing, StorageUnavailable
from .parts import MAX_SINGLE_PUT, MIB, copy_part_ranges
from .signing import S3Presigner, credentials_from_boto3

# S3 error codes that mean "this object is not there".
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
# S3 error codes that say the object cannot be read until it is restored from an archive tier.
_ARCHIVED_CODES = {"InvalidObjectState", "ObjectNotInActiveTierError"}
DELETE_CHUNK = 1000
# CopyObject takes sources up to 5 GiB; larger objects are copied part by part (UploadPartCopy).
MULTIPART_COPY_THRESHOLD = MAX_SINGLE_PUT
MULTIPART_COPY_PART_SIZE = 256 * MIB
# Browsers hide response headers unless exposed; uploads need ETag (multipart completion)
# and the checksum/version headers.
CORS_EXPOSE_HEADERS = [
    "ETag",
    "Location",
    "x-amz-checksum-sha256",
    "x-amz-checksum-crc32",
    "x-amz-version-id",
    "x-amz-request-id",
    "x-amz-id-2",
]
CORS_METHODS = ["GET", "PUT", "POST", "HEAD", "DELETE"]
CORS_MAX_AGE_SECONDS = 3000
# The lifecycle rule `flask init-bucket` sets: S3 aborts multipart uploads nobody finished.
LIFECYCLE_RULE_ID = "s3drive-abort-incomplete-multipart-uploads"


@dataclass(frozen=True)
class ObjectInfo:
    """What S3 says about a stored object."""

    key: str
    size: int
    etag: str | None
    content_type: str | None = None
    checksum_sha256: str | None = None
    metadata: Mapping[str, str] | None = None
    # True for HeadObject answers; a listing shows only size and ETag.
    detailed: bool = False


@dataclass(frozen=True)
class PartInfo:
    """One stored part of a multipart upload, as ListParts reports it (ETag unquoted)."""

    part_number: int
    size: int
    etag: str


# S3 error codes of multipart calls that say something about the upload itself, not an outage.
_MULTIPART_REFUSALS = {"NoSuchUpload", "InvalidPart", "InvalidPartOrder", "EntityTooSmall", "InvalidRequest"}


class Storage:
    """One boto3 client and one bounded thread pool per process, created lazily."""

    def __init__(self, config: Mapping[str, Any]):
        self.bucket = config["S3_BUCKET"]
        self.region = config["S3_REGION"]
        self.endpoint_url = config["S3_ENDPOINT_URL"]
        self.addressing_style = config["S3_ADDRESSING_STYLE"]
        self.max_workers = config["S3_MAX_WORKERS"]
        self.timeout = config.get("S3_TIMEOUT", 3)
        # Server-side encryption of every object written (signed into upload URLs too).
        self.sse = config["SSE"]
        self.sse_kms_key_id = config["SSE_KMS_KEY_ID"]
        self._lock = threading.Lock()
        self._session: boto3.session.Session | None = None
        self._client = None
        self._signer: S3Presigner | None = None
        self._executor: ThreadPoolExecutor | None = None

    # -- lazily created, shared per process -------------------------------------------

    def _boto_session(self) -> boto3.session.Session:
        # Sessions are not thread-safe; callers hold self._lock.
        if self._session is None:
            self._session = boto3.session.Session(region_name=self.region)
        return self._session

    def _once(self, attribute: str, make: Callable[[], Any]) -> Any:
        """Return self.<attribute>, made by make() on first use (double-checked under the lock)."""
        value = getattr(self, attribute)
        if value is None:
            with self._lock:
                value = getattr(self, attribute)
                if value is None:
                    value = make()
                    setattr(self, attribute, value)
        return value

    @property
    def client(self):
        """Return the process-wide boto3 S3 client (thread-safe once built)."""
        return self._once("_client", self._make_client)

    def _make_client(self):
        # Called under self._lock, which the session needs (sessions are not thread-safe).
        return self._boto_session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": self.addressing_style},
                # Bounded: attempts x (connect + read) stays under the server's own timeout, so a slow
                # or dead S3 is a 503 with Retry-After, never a killed worker.
                retries={"mode": "standard", "max_attempts": 2},
                connect_timeout=2,
                read_timeout=self.timeout,
                max_pool_connections=self.max_workers,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    @property
    def signer(self) -> S3Presigner:
        """Return the fast SigV4 presigner bound to this bucket."""
        return self._once("_signer", self._make_signer)

    def _make_signer(self) -> S3Presigner:
        return S3Presigner(
            bucket=self.bucket,
            region=self.region,
            endpoint_url=self.endpoint_url,
            addressing_style=self.addressing_style,
            credentials_provider=credentials_from_boto3(self._boto_session()),
        )

    @property
    def executor(self) -> ThreadPoolExecutor:
        """Return the bounded per-process pool for concurrent S3 calls."""
        return self._once("_executor", lambda: ThreadPoolExecutor(self.max_workers, thread_name_prefix="s3"))

    def has_credentials(self) -> bool:
        """Tell whether the AWS credential chain yields credentials."""
        with self._lock:
            return self._boto_session().get_credentials() is not None

    def forget_parent(self) -> None:
        """Drop what a parent process made before forking this one (its connections, its threads):
        this process makes its own on first use (a task-queue worker's prefork children)."""
        self._lock = threading.Lock()
        self._session = self._client = self._signer = self._executor = None

    def close(self) -> None:
        """Shut the thread pool down (tests and process exit)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # -- signing (no network) ---------------------------------------------------------

    def presign_put_many(self, requests: list[tuple[str, Mapping[str, str]]], expires_in: int) -> list[str]:
        """Return PUT URLs for (key, headers) pairs, signed with one timestamp."""
        return self.signer.presign_many(
            "PUT", [(key, headers, None) for key, headers in requests], expires_in=expires_in
        )

    def presign_get(self, key: str, expires_in: int, query: Mapping[str, str] | None = None) -> str:
        """Return a GET URL, with response-* overrides such as Content-Disposition."""
        return self.signer.presign("GET", key, expires_in=expires_in, query=query)

    def presign_post(
        self, key: str, fields: Mapping[str, str], conditions: list, expires_in: int
    ) -> tuple[str, dict[str, str]]:
        """Return a form action and fields for an HTML form POST under a signed policy."""
        return self.signer.presign_post(key, fields=fields, conditions=conditions, expires_in=expires_in)

    def presign_upload_parts(
        self, key: str, upload_id: str, parts: list[tuple[int, int | None]], expires_in: int
    ) -> list[str]:
        """Return UploadPart URLs for (part number, size) pairs; each signs its exact Content-Length,
        or none where the size is None (Uppy picks its own part sizes and never tells them)."""
        return self.signer.presign_many(
            "PUT",
            [
                (
                    key,
                    None if size is None else {"Content-Length": str(size)},
                    {"partNumber": str(number), "uploadId": upload_id},
                )
                for number, size in parts
            ],
            expires_in=expires_in,
        )

    def upload_headers(
        self, content_type: str, file_id: str, checksum_sha256: str | None = None, storage_class: str = "STANDARD"
    ) -> dict[str, str]:
        """Return the headers an upload must carry, all of them signed: type, record id, checksum,
        storage class and server-side encryption."""
        headers = {"Content-Type": content_type, "x-amz-meta-file-id": file_id}
        if checksum_sha256:
            headers["x-amz-checksum-sha256"] = checksum_sha256
            # Names the algorithm as the AWS SDKs do; stores such as moto keep the checksum only then.
            headers["x-amz-sdk-checksum-algorithm"] = "SHA256"
        if storage_class != "STANDARD":
            headers["x-amz-storage-class"] = storage_class
        if self.sse:
            headers["x-amz-server-side-encryption"] = self.sse
            if self.sse_kms_key_id:
                headers["x-amz-server-side-encryption-aws-kms-key-id"] = self.sse_kms_key_id
        return headers

    def object_url(self, key: str) -> str:
        """Return the object's unsigned URL (as Companion reports a completed upload's location)."""
        return self.signer.bucket_url.rstrip("/") + "/" + quote(key, safe="/~")

    # -- network calls ----------------------------------------------------------------

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Return up to `length` bytes of the object from `start` (one ranged GetObject)."""
        if length <= 0:
            return b""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}")
            return response["Body"].read()
        except ClientError as error:
            if _error_code(error) == "InvalidRange":
                return b""  # at or past the end (an empty object has no byte 0)
            raise _object_state_error(error) from error
        except BotoCoreError as error:
            raise translate_error(error) from error

    def reader(self, key: str, size: int) -> ObjectReader:
        """Return a Reader over the object (s3drive.inspect's protocol): ranged GETs, counted."""
        return ObjectReader(self, key, size)

    def put_object(self, key: str, body: bytes, content_type: str) -> None:
        """Write a small object the service makes itself (a preview), with the uploads' encryption."""
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, **self._encryption()
            )
        except (ClientError, BotoCoreError) as error:
            raise translate_error(error) from error

    def head_object(self, key: str) -> ObjectInfo | None:
        """Return the object's size, type, checksum and metadata, or None if absent."""
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as error:
            if _error_code(error) in _MISSING_CODES:
                return None
            raise translate_error(error) from error
        except BotoCoreError as error:
            raise translate_error(error) from error
        return ObjectInfo(
            key=key,
            size=response["ContentLength"],
            etag=_strip_etag(response.get("ETag")),
            content_type=response.get("ContentType"),
            checksum_sha256=response.get("ChecksumSHA256"),
            metadata=response.get("Metadata") or {},
            detailed=True,
        )

    def map_concurrently(self, func: Callable[[str], Any], keys: list[str]) -> dict[str, Any]:
        """Run func(key) for every key on the pool, returning key -> result or StorageUnavailable."""

        def call(key: str):
            try:
                return func(key)
            except StorageUnavailable as error:
                return error

        if len(keys) <= 1:
            return {key: call(key) for key in keys}
        return dict(zip(keys, self.executor.map(call, keys), strict=True))

    def list_prefix(self, prefix: str) -> dict[str, ObjectInfo]:
        """Return every object under a prefix (ListObjectsV2, 1,000 keys a page)."""
        found: dict[str, ObjectInfo] = {}
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": 1000}
            ):
                for item in page.get("Contents", ()):
                    found[item["Key"]] = ObjectInfo(
                        key=item["Key"], size=item["Size"], etag=_strip_etag(item.get("ETag"))
                    )
        except (ClientError, BotoCoreError) as error:
            raise translate_error(error) from error
        return found

    def list_after(
        self, prefix: str, start_after: str, max_keys: int = 1000
    ) -> tuple[dict[str, ObjectInfo], str | None]:
        """Return one page of the objects under prefix whose keys sort after start_after, and the
        page's last key if more follow (None when the page ends the listing)."""
        try:
            page = self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=prefix, StartAfter=start_after, MaxKeys=max_keys
            )
        except (ClientError, BotoCoreError) as error:
            raise translate_error(error) from error
        found = {
            item["Key"]: ObjectInfo(key=item["Key"], size=item["Size"], etag=_strip_etag(item.get("ETag")))
            for item in page.get("Contents", ())
        }
        return found, (max(found) if page.get("IsTruncated") and found else None)

    def _encryption(self) -> dict[str, str]:
        """Return the SSE parameters of a call that writes an object."""
        params = {"ServerSideEncryption": self.sse} if self.sse else {}
        if self.sse and self.sse_kms_key_id:
            params["SSEKMSKeyId"] = self.sse_kms_key_id
        return params

    def create_multipart_upload(
        self, key: str, *, content_type: str, metadata: Mapping[str, str], storage_class: str = "STANDARD"
    ) -> str:
        """Start a multipart upload (CreateMultipartUpload) and return its upload id."""
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentType": content_type,
            "Metadata": dict(metadata),
            **self._encryption(),
        }
        if storage_class != "STANDARD":
            params["StorageClass"] = storage_class
        try:
            return self.client.create_multipart_upload(**params)["UploadId"]
        except (ClientError, BotoCoreError) as error:
            raise translate_error(error) from error

    def start_multipart_uploads(self, uploads: list[tuple[str, str, Mapping[str, str], str]]) -> list[Future]:
        """Start CreateMultipartUpload for (key, content type, metadata, storage class) tuples concurrently;
        return a future per upload that gives its upload id (or raises StorageUnavailable)."""
        return [
            self.executor.submit(
                self.create_multipart_upload, key, content_type=content_type, metadata=metadata, storage_class=tier
            )
            for key, content_type, metadata, tier in uploads
        ]

    def list_parts(self, key: str, upload_id: str, page_size: int = 1000) -> list[PartInfo]:
        """Return every stored part of an upload (ListParts, page by page); MultipartRefused if it is gone."""
        parts: list[PartInfo] = []
        try:
            for page in self.client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PaginationConfig={"PageSize": page_size}
            ):
                parts.extend(
                    PartInfo(part_number=item["PartNumber"], size=item["Size"], etag=_strip_etag(item["ETag"]))
                    for item in page.get("Parts", ())
                )
        except (ClientError, BotoCoreError) as error:
            raise _multipart_error(error) from error
        return parts

    def complete_multipart_upload(
        self, key: str, upload_id: str, parts: list[tuple[int, str]], expected_size: int | None = None
    ) -> str | None:
        """Complete an upload from (part number, ETag) pairs and return the object's ETag.

        With expected_size, S3 itself refuses a completion whose parts add up to another
        size (MpuObjectSize); stores that ignore the header are checked by the caller.
        """
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "UploadId": upload_id,
            "MultipartUpload": {"Parts": [{"PartNumber": number, "ETag": f'"{etag}"'} for number, etag in parts]},
        }
        if expected_size is not None:
            params["MpuObjectSize"] = expected_size
        try:
            response = self.client.complete_multipart_upload(**params)
        except (ClientError, BotoCoreError) as error:
            raise _multipart_error(error) from error
        return _strip_etag(response.get("ETag"))

    def delete_objects(self, keys: Iterable[str]) -> tuple[set[str], dict[str, str]]:
        """Delete keys with one DeleteObjects call per 1,000 (the calls run concurrently);
        return (deleted, key -> error). Failures are returned, never raised."""
        deleted: set[str] = set()
        errors: dict[str, str] = {}
        groups = [tuple(chunk) for chunk in chunked(list(keys), DELETE_CHUNK)]
        for chunk, result in self.map_concurrently(self._delete_chunk, groups).items():  # type: ignore[arg-type]
            if isinstance(result, StorageUnavailable):
                errors.update(dict.fromkeys(chunk, result.message))
                continue
            deleted |= result[0]
            errors.update(result[1])
        return deleted, errors

    def _delete_chunk(self, keys: tuple[str, ...]) -> tuple[set[str], dict[str, str]]:
        try:
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": False}
            )
        except (ClientError, BotoCoreError) as error:
            raise translate_error(error) from error
        errors = {
            item["Key"]: item.get("Message") or item.get("Code") or "delete failed"
            for item in response.get("Errors", ())
        }
        return {item["Key"] for item in response.get("Deleted", ())}, errors

    def discard(self, keys: Iterable[str], what: str = "object") -> None:
        """Delete objects nobody should keep, logging (not raising) what S3 failed to delete:
        their records are dead already, and the sweeper's purge removes what is left."""
        _, errors = self.delete_objects(keys)
        for key, error in errors.items():
            current_app.logger.warning("could not delete %s %s: %s", what, key, error)

    def copy_object(
        self,
        source_key: str,
        dest_key: str,
        size: int,
        *,
        storage_class: str,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        multipart_threshold: int | None = None,
        part_size: int | None = None,
    ) -> str | None:
        """Copy an object server-side (in place too) and return the copy's ETag.

        metadata=None keeps the source's content type and metadata; otherwise both are
        replaced. Objects above the threshold are copied in ranges (UploadPartCopy) run
        concurrently on the pool. An archived source is invalid_state, a missing one
        object_missing.
        """
        threshold = MULTIPART_COPY_THRESHOLD if multipart_threshold is None else multipart_threshold
        target = {"Bucket": self.bucket, "Key": dest_key, "StorageClass": storage_class, **self._encryption()}
        try:
            if size > threshold:
                part_size = MULTIPART_COPY_PART_SIZE if part_size is None else part_size
                return self._copy_in_parts(source_key, size, part_size, target, content_type, metadata)
            if metadata is None:
                target["MetadataDirective"] = "COPY"
            else:
                target.update(MetadataDirective="REPLACE", Metadata=dict(metadata))
                if content_type:
                    target["ContentType"] = content_type
            response = self.client.copy_object(CopySource={"Bucket": self.bucket, "Key": source_key}, **target)
        except (ClientError, BotoCoreError) as error:
            raise _object_state_error(error) from error
        return _strip_etag(response.get("CopyObjectResult", {}).get("ETag"))

    def _copy_in_parts(
        self,
        source_key: str,
        size: int,
        part_size: int,
        target: dict[str, Any],
        content_type: str | None,
        metadata: Mapping[str, str] | None,
    ) -> str | None:
        if metadata is None:
            # CreateMultipartUpload has no COPY directive: carry the source's over by hand.
            head = self.client.head_object(Bucket=self.bucket, Key=source_key)
            content_type, metadata = head.get("ContentType"), head.get("Metadata") or {}
        create = {**target, "Metadata": dict(metadata)}
        if content_type:
            create["ContentType"] = content_type
        upload_id = self.client.create_multipart_upload(**create)["UploadId"]
        source = {"Bucket": self.bucket, "Key": source_key}

        def copy_part(part: tuple[int, int, int]) -> dict[str, Any]:
            number, first, last = part
            response = self.client.upload_part_copy(
                Bucket=self.bucket,
                Key=target["Key"],
                UploadId=upload_id,
                PartNumber=number,
                CopySource=source,
                CopySourceRange=f"bytes={first}-{last}",
            )
            return {"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]}

        futures = [self.executor.submit(copy_part, part) for part in copy_part_ranges(size, part_size)]
        try:
            parts = [future.result() for future in futures]
            response = self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=target["Key"], UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            for future in futures:
                future.cancel()  # queued parts are never sent
            for future in futures:
                if not future.cancelled():
                    future.exception()  # parts in flight finish before the abort, or they would linger
            self._abort_quietly(target["Key"], upload_id)
            raise
        return _strip_etag(response.get("ETag"))

    def _abort_quietly(self, key: str, upload_id: str) -> None:
        try:
            self.abort_multipart(key, upload_id)
        except StorageUnavailable:
            pass  # the bucket's lifecycle rule for incomplete uploads cleans up what is left

    def abort_multipart(self, key: str, upload_id: str) -> bool:
        """Abort a multipart upload; return False if S3 no longer knows it (already gone)."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as error:
            if _error_code(error) in ("NoSuchUpload", "404"):
                return False
            raise translate_error(error) from error
        except BotoCoreError as error:
            raise translate_error(error) from error
        return True

    def configure_bucket(self, cors_origins: list[str], abort_incomplete_days: int, prefix: str = "") -> None:
        """Set the bucket's CORS rules for these browser origins (none: left as they are), and a
        lifecycle rule that aborts multipart uploads left incomplete for abort_incomplete_days
        (other lifecycle rules are kept)."""
        try:
            if cors_origins:
                self.client.put_bucket_cors(Bucket=self.bucket, CORSConfiguration=cors_rules(cors_origins))
            rules = [rule for rule in self._lifecycle_rules() if rule.get("ID") != LIFECYCLE_RULE_ID]
            rules.append(
                {
                    "ID": LIFECYCLE_RULE_ID,
                    "Status": "Enabled",
                    "Filter": {"Prefix": prefix},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": abort_incomplete_days},
                }
            )
            self.client.put_bucket_lifecycle_configuration(Bucket=self.bucket, LifecycleConfiguration={"Rules": rules})
        except (ClientError, BotoCoreError) as error:
            raise translate_error(error) from error

    def _lifecycle_rules(self) -> list[dict[str, Any]]:
        try:
            return self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket).get("Rules", [])
        except ClientError as error:
            if _error_code(error) == "NoSuchLifecycleConfiguration":
                return []
            raise

    def check_bucket(self) -> None:
        """Raise StorageUnavailable unless the bucket answers HeadBucket."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as error:
            raise translate_error(error) from error


@dataclass
class ObjectReader:
    """Random access to one object through ranged GETs; counts the requests and bytes it cost."""

    storage: Storage
    key: str
    size: int
    reads: int = 0
    bytes_read: int = 0

    def read(self, start: int, length: int) -> bytes:
        """Return up to `length` bytes from `start` (fewer at the end of the object)."""
        length = min(length, max(self.size - start, 0))
        chunk = self.storage.read_range(self.key, start, length)
        self.reads += 1
        self.bytes_read += len(chunk)
        return chunk


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _strip_etag(etag: str | None) -> str | None:
    return etag.strip('"') if etag else etag


def _multipart_error(error: Exception) -> AppError:
    """Return MultipartRefused for S3's verdicts on the upload itself, StorageUnavailable otherwise."""
    if isinstance(error, ClientError) and _error_code(error) in _MULTIPART_REFUSALS:
        return MultipartRefused(_error_code(error), str(error.response.get("Error", {}).get("Message") or ""))
    return translate_error(error)


def _object_state_error(error: Exception) -> AppError:
    """Return a 409 for S3 answers about the object's state (archived, missing), storage_unavailable otherwise."""
    code = _error_code(error) if isinstance(error, ClientError) else ""
    if code in _ARCHIVED_CODES:
        return InvalidState("The object is archived; restore it first.", details={"s3_error": code})
    if code in ("NoSuchKey", "404"):
        return ObjectMissing("The stored object is missing.", details={"s3_error": code})
    return translate_error(error)


def translate_error(error: Exception) -> StorageUnavailable:
    """Map a boto3/botocore failure to the API's storage_unavailable error."""
    if isinstance(error, ClientError):
        code = _error_code(error)
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket", "404") and "Bucket" in str(error):
            return StorageUnavailable("The storage bucket does not exist.", details={"s3_error": code})
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            return StorageUnavailable("Object storage refused the server's credentials.", details={"s3_error": code})
        return StorageUnavailable(
            "Object storage failed to answer the request.", details={"s3_error": code, "status": status}
        )
    return StorageUnavailable(details={"reason": type(error).__name__})


def cors_rules(cors_origins: list[str]) -> dict:
    """Return the bucket CORS configuration that lets these origins upload directly from browsers."""
    rule = {
        "AllowedOrigins": list(cors_origins),
        "AllowedMethods": CORS_METHODS,
        "AllowedHeaders": ["*"],
        "ExposeHeaders": CORS_EXPOSE_HEADERS,
        "MaxAgeSeconds": CORS_MAX_AGE_SECONDS,
    }
    return {"CORSRules": [rule]}


def init_app(app: Flask) -> None:
    """Give the app its Storage (created lazily per process: no S3 call at start-up)."""
    app.extensions["s3drive.storage"] = Storage(app.config)


def get_storage() -> Storage:
    """Return the current app's Storage."""
    return current_app.extensions["s3drive.storage"]
