"""s3drive.signing against botocore: byte-identical presigned URLs and POST policies.

botocore signs presigned URLs with awscrt when it is installed (as here and in production)
and with its pure-Python SigV4 signer otherwise; both backends are compared. The clock is
frozen by patching ``get_current_datetime`` where botocore's signers and presigners look it
up (``botocore.auth``, ``botocore.crt.auth``, ``botocore.signers``).

Run this module directly for a microbenchmark against botocore.
"""

from __future__ import annotations

import base64
import functools
import json
import random
import string
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.auth
import pytest
from botocore.compat import HAS_CRT
from botocore.config import Config
from botocore.credentials import RefreshableCredentials

from s3drive import signing
from s3drive.signing import Credentials, S3Presigner, SignRequest, credentials_from_boto3

FIXED = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEBYaDH+/token=="
BUCKET = "my-bucket"

# (region, endpoint_url): AWS's own endpoints, and custom ones with a port (MinIO, LocalStack).
ENDPOINTS = [
    ("us-east-1", None),
    ("eu-west-1", None),
    ("eu-west-1", "http://127.0.0.1:9000"),
    ("us-east-1", "http://localhost:4566"),
]
STYLES = ["auto", "path", "virtual"]
BACKENDS = ["crt", "python"] if HAS_CRT else ["python"]

# Characters that break naive encoders: reserved, percent, plus, unicode incl. non-BMP.
HOSTILE = [
    *string.ascii_letters,
    *string.digits,
    *" +%~/=&?#:@!$'()*,;[]\\^`{}|\"<>.-_",
    *["é", "ü", "ß", "中", "日本語", "😀", "🇪🇺", "𝄞", "\u00a0", "\u200b", "\t"],
    *["..", "//", "%20", "%2F", "+%2B"],
]


@pytest.fixture(autouse=True)
def _isolated_aws_config(monkeypatch):
    """Keep local AWS config and env overrides out of the botocore clients we compare with."""
    for name in ("AWS_S3_US_EAST_1_REGIONAL_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Select botocore's presigned-URL signer: awscrt (its default here) or pure Python."""
    if request.param == "crt":
        yield "crt"
        return
    with mock.patch.dict(botocore.auth.AUTH_TYPE_MAPS, {"s3v4-query": botocore.auth.S3SigV4QueryAuth}):
        yield "python"


@contextmanager
def botocore_clock(moment: datetime):
    """Freeze the clock botocore's signers and presigners read."""

    def now(remove_tzinfo=True):
        return moment.replace(tzinfo=None) if remove_tzinfo else moment

    targets = ["botocore.auth.get_current_datetime", "botocore.signers.get_current_datetime"]
    if HAS_CRT:
        targets.append("botocore.crt.auth.get_current_datetime")
    with ExitStack() as stack:
        for target in targets:
            stack.enter_context(mock.patch(target, now))
        yield


@functools.cache
def boto_client(region, endpoint_url, style, token=None, secret=SECRET_KEY, access_key=ACCESS_KEY):
    """Return a botocore S3 client configured like s3drive.storage builds its own."""
    return boto3.client(
        "s3",
        region_name=region,
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": style},
            request_checksum_calculation="when_required",
        ),
    )


def presigner(region, endpoint_url, style, token=None, bucket=BUCKET, secret=SECRET_KEY) -> S3Presigner:
    credentials = Credentials(ACCESS_KEY, secret, token)
    return S3Presigner(
        bucket=bucket,
        region=region,
        endpoint_url=endpoint_url,
        addressing_style=style,
        credentials_provider=lambda: credentials,
    )


def hostile_keys(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(HOSTILE) for _ in range(rng.randint(1, 40))) for _ in range(count)]


def signature(url: str) -> str:
    return parse_qs(urlsplit(url).query)["X-Amz-Signature"][0]


def assert_same_url(ours: str, botos: str, backend: str) -> None:
    """Same scheme, host, path, query parameters and signature; byte-identical against CRT."""
    a, b = urlsplit(ours), urlsplit(botos)
    assert (a.scheme, a.netloc, a.path) == (b.scheme, b.netloc, b.path)
    assert sorted(a.query.split("&")) == sorted(b.query.split("&"))
    assert signature(ours) == signature(botos)
    if backend == "crt":
        assert ours == botos


def put_params(rng: random.Random) -> tuple[dict, dict]:
    """Return matching botocore PutObject params and the headers s3drive signs for them."""
    content_type = rng.choice(["application/octet-stream", "image/jpeg", "text/plain; charset=utf-8"])
    length = rng.randint(0, 5 * 1024**3)
    checksum = base64.b64encode(rng.randbytes(32)).decode()
    file_id = "".join(rng.choices(string.hexdigits.lower(), k=32))
    storage_class = rng.choice(["STANDARD", "STANDARD_IA", "INTELLIGENT_TIERING", "GLACIER_IR"])
    encryption = rng.choice(["AES256", "aws:kms"])
    params = {
        "ContentType": content_type,
        "ContentLength": length,
        "ChecksumSHA256": checksum,
        "Metadata": {"file-id": file_id},
        "StorageClass": storage_class,
        "ServerSideEncryption": encryption,
    }
    headers = {
        "Content-Type": content_type,
        "Content-Length": str(length),
        "x-amz-checksum-sha256": checksum,
        "x-amz-meta-file-id": file_id,
        "x-amz-storage-class": storage_class,
        "x-amz-server-side-encryption": encryption,
    }
    return params, headers


# -- byte-identical URLs ----------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, TOKEN], ids=["static", "session-token"])
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(("region", "endpoint_url"), ENDPOINTS)
def test_put_urls_match_botocore(backend, region, endpoint_url, style, token):
    client = boto_client(region, endpoint_url, style, token)
    ours = presigner(region, endpoint_url, style, token)
    rng = random.Random(f"{region}{endpoint_url}{style}{token}")
    keys = hostile_keys(seed=1234, count=300 if backend == "crt" else 100)
    with botocore_clock(FIXED):
        for key in keys:
            params, headers = put_params(rng)
            expected = client.generate_presigned_url(
                "put_object", Params={"Bucket": BUCKET, "Key": key, **params}, ExpiresIn=900
            )
            actual = ours.presign("PUT", key, expires_in=900, headers=headers, now=FIXED)
            assert_same_url(actual, expected, backend)


def test_python_backend_really_is_botocores_python_signer(backend):
    url = boto_client("eu-west-1", None, "virtual").generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "k"}, ExpiresIn=60
    )
    # The two backends differ only in where X-Amz-Expires goes.
    expires_first = url.index("X-Amz-Expires") < url.index("X-Amz-SignedHeaders")
    assert expires_first == (backend == "python")


@pytest.mark.parametrize("token", [None, TOKEN], ids=["static", "session-token"])
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(("region", "endpoint_url"), ENDPOINTS)
def test_get_with_response_overrides_matches_botocore(backend, region, endpoint_url, style, token):
    client = boto_client(region, endpoint_url, style, token)
    ours = presigner(region, endpoint_url, style, token)
    names = ['report "final" ü.pdf', "a+b=c&d?.txt", "😀 100%.bin"]
    with botocore_clock(FIXED):
        for key, name in zip(hostile_keys(seed=99, count=len(names)), names, strict=True):
            disposition = f"attachment; filename=\"{name}\"; filename*=UTF-8''{name}"
            expected = client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": BUCKET,
                    "Key": key,
                    "ResponseContentDisposition": disposition,
                    "ResponseContentType": "application/pdf",
                },
                ExpiresIn=300,
            )
            # botocore serialises query params in model order; pass them in the same order.
            query = {"response-content-disposition": disposition, "response-content-type": "application/pdf"}
            actual = ours.presign("GET", key, expires_in=300, query=query, now=FIXED)
            assert_same_url(actual, expected, backend)


@pytest.mark.parametrize("token", [None, TOKEN], ids=["static", "session-token"])
@pytest.mark.parametrize(("region", "endpoint_url"), ENDPOINTS)
def test_upload_part_matches_botocore(backend, region, endpoint_url, token):
    client = boto_client(region, endpoint_url, "auto", token)
    ours = presigner(region, endpoint_url, "auto", token)
    rng = random.Random(7)
    with botocore_clock(FIXED):
        for key in hostile_keys(seed=5, count=30):
            part = rng.randint(1, 10000)
            upload_id = "".join(rng.choices(string.ascii_letters + string.digits + "._-+/=", k=60))
            expected = client.generate_presigned_url(
                "upload_part",
                Params={"Bucket": BUCKET, "Key": key, "PartNumber": part, "UploadId": upload_id},
                ExpiresIn=3600,
            )
            actual = ours.presign(
                "PUT", key, expires_in=3600, query={"partNumber": part, "uploadId": upload_id}, now=FIXED
            )
            assert_same_url(actual, expected, backend)


BUCKET_NAMES = ["my-bucket", "my.bucket", "My-Bucket", "ab", "a_b", "xn--abc", "a--b", "192.168.1.1"]
BUCKET_ENDPOINTS = [
    ("us-east-1", None),
    ("us-west-2", None),
    ("eu-west-1", None),
    ("ap-east-1", None),
    ("cn-north-1", None),
    ("us-gov-west-1", None),
    ("eu-west-1", "http://127.0.0.1:9000"),
    ("eu-west-1", "http://[::1]:9000"),
    ("us-east-1", "http://localhost:9000/pre/fix"),
    ("us-east-1", "https://minio.local"),
    ("eu-west-1", "https://S3.Example.COM:8443/"),
    ("eu-west-1", "https://s3.example.com:443"),
    ("eu-west-1", "http://s3.example.com:80"),
]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(("region", "endpoint_url"), BUCKET_ENDPOINTS)
def test_bucket_host_and_path_rules_match_botocore(region, endpoint_url, style):
    client = boto_client(region, endpoint_url, style)
    with botocore_clock(FIXED):
        for bucket in BUCKET_NAMES:
            expected = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60)
            ours = presigner(region, endpoint_url, style, bucket=bucket)
            assert ours.presign("GET", "k", expires_in=60, now=FIXED) == expected, bucket


def test_addressing_rules_in_brief():
    """Spot-check the rules botocore applies (the comparisons above prove them in bulk)."""
    assert presigner("eu-west-1", None, "auto").bucket_url == "https://my-bucket.s3.amazonaws.com"
    assert presigner("eu-west-1", None, "virtual").bucket_url == "https://my-bucket.s3.eu-west-1.amazonaws.com"
    assert presigner("eu-west-1", None, "path").bucket_url == "https://s3.eu-west-1.amazonaws.com/my-bucket"
    assert presigner("us-east-1", None, "path").bucket_url == "https://s3.amazonaws.com/my-bucket"
    assert presigner("eu-west-1", None, "auto", bucket="my.bucket").bucket_url == (
        "https://s3.eu-west-1.amazonaws.com/my.bucket"
    )
    assert presigner("us-east-1", "http://127.0.0.1:9000", "auto").bucket_url == "http://127.0.0.1:9000/my-bucket"
    assert presigner("us-east-1", "http://localhost:9000", "virtual").bucket_url == "http://my-bucket.localhost:9000"


def test_header_values_are_canonicalised_like_botocore(backend):
    client = boto_client("eu-west-1", None, "virtual")
    ours = presigner("eu-west-1", None, "virtual")
    with botocore_clock(FIXED):
        expected = client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": BUCKET,
                "Key": "k",
                "ContentType": "text/plain;   charset=utf-8 ",
                "Metadata": {"a": "x  y"},
            },
            ExpiresIn=60,
        )
    headers = {"content-type": "text/plain;   charset=utf-8 ", "X-Amz-Meta-A": "x  y"}
    assert_same_url(ours.presign("put", "k", expires_in=60, headers=headers, now=FIXED), expected, backend)


def test_matches_aws_documentation_example():
    """The GET example from the S3 SigV4 query-string auth docs, independent of botocore."""
    credentials = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    ours = S3Presigner(
        bucket="examplebucket",
        region="us-east-1",
        addressing_style="virtual",
        credentials_provider=lambda: credentials,
    )
    url = ours.presign("GET", "test.txt", expires_in=86400, now=datetime(2013, 5, 24, tzinfo=UTC))
    assert url.startswith("https://examplebucket.s3.amazonaws.com/test.txt?")
    assert signature(url) == "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"


# -- POST policies ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["uploads/${filename}", "a b/ü😀 +%.txt"])
@pytest.mark.parametrize("token", [None, TOKEN], ids=["static", "session-token"])
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(("region", "endpoint_url"), ENDPOINTS)
def test_presign_post_matches_botocore(region, endpoint_url, style, token, key):
    client = boto_client(region, endpoint_url, style, token)
    ours = presigner(region, endpoint_url, style, token)
    fields = {"Content-Type": "image/png", "x-amz-meta-file-id": "f-1", "acl": "private"}
    conditions = [
        {"Content-Type": "image/png"},
        {"x-amz-meta-file-id": "f-1"},
        ["content-length-range", 1, 1048576],
        ["starts-with", "$acl", ""],
    ]
    with botocore_clock(FIXED):
        expected = client.generate_presigned_post(
            BUCKET, key, Fields=dict(fields), Conditions=list(conditions), ExpiresIn=600
        )
    url, actual = ours.presign_post(key, fields=fields, conditions=conditions, expires_in=600, now=FIXED)
    assert url == expected["url"]
    assert actual == expected["fields"]
    assert list(actual) == list(expected["fields"])  # same field order, too
    policy = json.loads(base64.b64decode(actual["policy"]))
    assert policy["expiration"] == "2024-05-06T07:18:09Z"
    assert {"bucket": BUCKET} in policy["conditions"]
    # The caller's mappings are not modified.
    assert len(conditions) == 4 and "key" not in fields


# -- caching and credentials ------------------------------------------------------------------


def test_signing_key_is_derived_once_per_day():
    ours = presigner("eu-west-1", None, "virtual", secret="per-day-cache-secret")
    client = boto_client("eu-west-1", None, "virtual", secret="per-day-cache-secret")
    before = signing._signing_key.cache_info().misses
    late = datetime(2024, 5, 6, 23, 59, 59, tzinfo=UTC)
    after_midnight = late + timedelta(seconds=1)

    ours.presign("GET", "k", expires_in=60, now=late - timedelta(hours=20))
    late_url = ours.presign("GET", "k", expires_in=60, now=late)
    assert signing._signing_key.cache_info().misses == before + 1
    next_day_url = ours.presign("GET", "k", expires_in=60, now=after_midnight)
    assert signing._signing_key.cache_info().misses == before + 2

    assert "%2F20240506%2Feu-west-1%2F" in late_url
    assert "%2F20240507%2Feu-west-1%2F" in next_day_url
    for moment, url in ((late, late_url), (after_midnight, next_day_url)):
        with botocore_clock(moment):
            assert url == client.generate_presigned_url(
                "get_object", Params={"Bucket": BUCKET, "Key": "k"}, ExpiresIn=60
            )


def test_rotated_credentials_change_signatures():
    current = {"credentials": Credentials(ACCESS_KEY, "old-secret")}
    ours = S3Presigner(
        bucket=BUCKET,
        region="eu-west-1",
        addressing_style="virtual",
        credentials_provider=lambda: current["credentials"],
    )
    before = ours.presign("GET", "k", expires_in=60, now=FIXED)
    current["credentials"] = Credentials(ACCESS_KEY, "new-secret")
    rotated = ours.presign("GET", "k", expires_in=60, now=FIXED)
    current["credentials"] = Credentials("ASIANEWKEY", "newer-secret", TOKEN)
    temporary = ours.presign("GET", "k", expires_in=60, now=FIXED)

    assert len({signature(before), signature(rotated), signature(temporary)}) == 3
    params = {"Bucket": BUCKET, "Key": "k"}
    with botocore_clock(FIXED):
        for url, client in (
            (rotated, boto_client("eu-west-1", None, "virtual", secret="new-secret")),
            (temporary, boto_client("eu-west-1", None, "virtual", TOKEN, "newer-secret", "ASIANEWKEY")),
        ):
            assert url == client.generate_presigned_url("get_object", Params=params, ExpiresIn=60)


def test_credentials_from_boto3_static_session():
    session = boto3.Session(aws_access_key_id="AK", aws_secret_access_key="SK", aws_session_token="TK")
    provider = credentials_from_boto3(session)
    assert provider() == Credentials("AK", "SK", "TK")
    assert provider() is provider()  # cached: presign() calls it for every URL


class _FakeSession:
    def __init__(self, credentials):
        self.credentials = credentials
        self.calls = 0

    def get_credentials(self):
        self.calls += 1
        return self.credentials


def test_credentials_from_boto3_follows_refreshes(monkeypatch):
    issued = []

    def refresh():
        issued.append(len(issued) + 1)
        n = issued[-1]
        # Expiring within botocore's mandatory refresh window, so every read refreshes.
        expiry = datetime.now(UTC) + timedelta(seconds=60)
        return {
            "access_key": f"ASIA{n}",
            "secret_key": f"secret{n}",
            "token": f"token{n}",
            "expiry_time": expiry.isoformat(),
        }

    session = _FakeSession(RefreshableCredentials.create_from_metadata(refresh(), refresh, "test"))
    provider = credentials_from_boto3(session)
    first = provider()
    assert provider() is first  # re-read at most once a second
    monkeypatch.setattr(signing, "_PROVIDER_TTL", 0.0)
    second = provider()
    assert first.access_key != second.access_key and second.token == f"token{issued[-1]}"
    assert session.calls == 1  # the chain is walked once; the credentials object refreshes itself


def test_credentials_from_boto3_without_credentials():
    provider = credentials_from_boto3(_FakeSession(None))
    with pytest.raises(RuntimeError, match="no AWS credentials"):
        provider()


def test_presign_many_matches_presign():
    ours = presigner("eu-west-1", None, "virtual", TOKEN)
    rng = random.Random(3)
    requests = [SignRequest(key, put_params(rng)[1]) for key in hostile_keys(seed=3, count=50)]
    requests.append(SignRequest("part", None, {"partNumber": "1", "uploadId": "u"}))
    batch = ours.presign_many("PUT", requests, expires_in=900, now=FIXED)
    singles = [
        ours.presign("PUT", r.key, headers=r.headers, query=r.query, expires_in=900, now=FIXED) for r in requests
    ]
    assert batch == singles


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"expires_in": 0},
        {"expires_in": 7 * 24 * 3600 + 1},
        {"expires_in": 60, "headers": {"Host": "evil.example"}},
        {"expires_in": 60, "headers": {"X-Amz-Date": "20240101T000000Z"}},
        {"expires_in": 60, "headers": {"Content-Type": "a/b", "content-type": "c/d"}},
        {"expires_in": 60, "query": {"X-Amz-Signature": "0"}},
        {"expires_in": 60, "query": {"x-amz-credential": "x"}},
    ],
)
def test_presign_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        presigner("eu-west-1", None, "auto").presign("PUT", "k", **kwargs)


def test_presign_rejects_empty_key():
    with pytest.raises(ValueError):
        presigner("eu-west-1", None, "auto").presign("PUT", "", expires_in=60)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bucket": "bad bucket"},
        {"bucket": ""},
        {"region": "eu west"},
        {"addressing_style": "dns"},
        {"endpoint_url": "ftp://example.com"},
        {"endpoint_url": "http://example.com/?x=1"},
        {"endpoint_url": "http://user:pw@example.com"},
        {"region": "us-iso-east-1"},
    ],
)
def test_presigner_rejects_bad_configuration(kwargs):
    settings = {"bucket": BUCKET, "region": "eu-west-1", "endpoint_url": None, "addressing_style": "auto", **kwargs}
    with pytest.raises(ValueError):
        S3Presigner(**settings, credentials_provider=lambda: Credentials("a", "b"))
