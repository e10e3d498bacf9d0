"""The only module that talks to S3: signing, head/list/delete calls, error mapping."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .errors import StorageUnavailable
from .signing import S3Presigner, credentials_from_boto3

# S3 error codes that mean "this object is not there".
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
DELETE_CHUNK = 1000
# CopyObject takes sources up to 5 GiB; larger objects are copied part by part (UploadPartCopy).
MULTIPART_COPY_THRESHOLD = 5 * 1024**3
MULTIPART_COPY_PART_SIZE = 256 * 1024**2
MAX_PARTS = 10_000


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


class MultipartRefused(Exception):
    """S3 refused a multipart call because of the upload's state or parts; `code` is S3's error code."""

    def __init__(self, code: str, message: str = ""):
        super().__init__(message or code)
        self.code = code
        self.message = message or code

    @property
    def size_differs(self) -> bool:
        """Tell whether S3 refused because the parts' total differs from MpuObjectSize."""
        return self.code == "InvalidRequest" and "mp-object-size" in self.message.lower()


class Storage:
    """One boto3 client and one bounded thread pool per process, created lazily."""

    def __init__(self, config: Mapping[str, Any]):
        self.bucket = config["S3_BUCKET"]
        self.region = config["S3_REGION"]
        self.endpoint_url = config["S3_ENDPOINT_URL"]
        self.addressing_style = config["S3_ADDRESSING_STYLE"]
        self.max_workers = config["S3_MAX_WORKERS"]
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

    @property
    def client(self):
        """Return the process-wide boto3 S3 client (thread-safe once built)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._boto_session().client(
                        "s3",
                        endpoint_url=self.endpoint_url,
                        config=Config(
                            signature_version="s3v4",
                            s3={"addressing_style": self.addressing_style},
                            retries={"mode": "standard", "max_attempts": 3},
                            connect_timeout=5,
                            read_timeout=30,
                            max_pool_connections=self.max_workers,
                            request_checksum_calculation="when_required",
                            response_checksum_validation="when_required",
                        ),
                    )
        return self._client

    @property
    def signer(self) -> S3Presigner:
        """Return the fast SigV4 presigner bound to this bucket."""
        if self._signer is None:
            with self._lock:
                if self._signer is None:
                    self._signer = S3Presigner(
                        bucket=self.bucket,
                        region=self.region,
                        endpoint_url=self.endpoint_url,
                        addressing_style=self.addressing_style,
                        credentials_provider=credentials_from_boto3(self._boto_session()),
                    )
        return self._signer

    @property
    def executor(self) -> ThreadPoolExecutor:
        """Return the bounded per-process pool for concurrent S3 calls."""
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix="s3")
        return self._executor

    def has_credentials(self) -> bool:
        """Tell whether the AWS credential chain yields credentials."""
        with self._lock:
            return self._boto_session().get_credentials() is not None

    def close(self) -> None:
        """Shut the thread pool down (tests and process exit)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # -- signing (no network) ---------------------------------------------------------

    def presign_put(self, key: str, headers: Mapping[str, str], expires_in: int) -> str:
        """Return a PUT URL that only accepts a request carrying exactly these headers."""
        return self.signer.presign("PUT", key, expires_in=expires_in, headers=headers)

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
        self, key: str, upload_id: str, parts: list[tuple[int, int]], expires_in: int
    ) -> list[str]:
        """Return UploadPart URLs for (part number, exact size) pairs; each signs its Content-Length."""
        return self.signer.presign_many(
            "PUT",
            [
                (key, {"Content-Length": str(size)}, {"partNumber": str(number), "uploadId": upload_id})
                for number, size in parts
            ],
            expires_in=expires_in,
        )

    # -- network calls ----------------------------------------------------------------

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

    def head_many(self, keys: Iterable[str]) -> dict[str, ObjectInfo | None | StorageUnavailable]:
        """HeadObject many keys concurrently on the pool; failures are returned, not raised."""
        return self.map_concurrently(self.head_object, list(keys))

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

    def create_multipart_upload(
        self,
        key: str,
        *,
        content_type: str,
        metadata: Mapping[str, str],
        storage_class: str | None = None,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
    ) -> str:
        """Start a multipart upload (CreateMultipartUpload) and return its upload id."""
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentType": content_type,
            "Metadata": dict(metadata),
        }
        if storage_class and storage_class != "STANDARD":
            params["StorageClass"] = storage_class
        if sse:
            params["ServerSideEncryption"] = sse
            if sse_kms_key_id:
                params["SSEKMSKeyId"] = sse_kms_key_id
        try:
            return self.client.create_multipart_upload(**params)["UploadId"]
        except (ClientError, BotoCoreError) as error:
            raise translate_error(error) from error

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
        """Delete keys with DeleteObjects in chunks of 1,000; return (deleted, key -> error)."""
        keys = list(keys)
        deleted: set[str] = set()
        errors: dict[str, str] = {}
        for start in range(0, len(keys), DELETE_CHUNK):
            chunk = keys[start : start + DELETE_CHUNK]
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": False},
                )
            except (ClientError, BotoCoreError) as error:
                message = translate_error(error).message
                errors.update(dict.fromkeys(chunk, message))
                continue
            deleted.update(item["Key"] for item in response.get("Deleted", ()))
            for item in response.get("Errors", ()):
                errors[item["Key"]] = item.get("Message") or item.get("Code") or "delete failed"
        return deleted, errors

    def copy_object(
        self,
        source_key: str,
        dest_key: str,
        size: int,
        *,
        storage_class: str,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        multipart_threshold: int | None = None,
        part_size: int | None = None,
    ) -> str | None:
        """Copy an object server-side (in place too) and return the copy's ETag.

        metadata=None keeps the source's content type and metadata; otherwise both are
        replaced. Objects above the threshold are copied in ranges (UploadPartCopy) run
        concurrently on the pool.
        """
        threshold = MULTIPART_COPY_THRESHOLD if multipart_threshold is None else multipart_threshold
        target = {"Bucket": self.bucket, "Key": dest_key, "StorageClass": storage_class}
        if sse:
            target["ServerSideEncryption"] = sse
            if sse_kms_key_id:
                target["SSEKMSKeyId"] = sse_kms_key_id
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
            raise translate_error(error) from error
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

    def check_bucket(self) -> None:
        """Raise StorageUnavailable unless the bucket answers HeadBucket."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as error:
            raise translate_error(error) from error


def copy_part_ranges(size: int, part_size: int) -> list[tuple[int, int, int]]:
    """Return (part number, first byte, last byte) for a copy in parts of at least part_size."""
    part_size = max(part_size, -(-size // MAX_PARTS))  # S3 allows at most 10,000 parts
    return [
        (number, first, min(first + part_size, size) - 1)
        for number, first in enumerate(range(0, size, part_size), start=1)
    ]


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _strip_etag(etag: str | None) -> str | None:
    return etag.strip('"') if etag else etag


def _multipart_error(error: Exception) -> Exception:
    """Return MultipartRefused for S3's verdicts on the upload itself, StorageUnavailable otherwise."""
    if isinstance(error, ClientError) and _error_code(error) in _MULTIPART_REFUSALS:
        return MultipartRefused(_error_code(error), str(error.response.get("Error", {}).get("Message") or ""))
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
