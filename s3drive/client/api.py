"""A small requests-based client of the s3drive API.

The error envelope becomes an ApiError with the server's code and message; an expired
access token is refreshed once with the refresh token; network errors and 5xx answers
are retried with exponential backoff (the same helper retries the S3 transfers).
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import requests

from .config import Credentials
from .errors import ApiError, Cancelled, ClientError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
DEFAULT_TIMEOUT = 60.0
# Files (or ids) per batch call when the server's limits do not say.
DEFAULT_MAX_BATCH = 1000


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a request that failed for a transient reason."""

    retries: int = 4
    backoff: float = 0.5
    max_delay: float = 20.0

    def delay(self, attempt: int, response: requests.Response | None = None) -> float:
        """Return the pause before retry number attempt + 1 (Retry-After wins when given)."""
        retry_after = response.headers.get("Retry-After", "") if response is not None else ""
        if retry_after.isdigit():
            return min(float(retry_after), self.max_delay)
        # Full jitter on the upper half: clients retrying together do not stampede.
        return min(self.backoff * 2**attempt, self.max_delay) * random.uniform(0.5, 1.0)


def describe_network_error(error: BaseException) -> str:
    """Return a short reason for a network error ("connection refused", "timed out", ...)."""
    text = str(error)
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if match:
        return match.group(1).strip().rstrip(".").lower()
    if isinstance(error, requests.Timeout):
        return "timed out"
    return type(error).__name__


def send_with_retries(
    send: Callable[[], requests.Response],
    policy: RetryPolicy,
    *,
    what: str,
    retry_statuses: Iterable[int] = RETRY_STATUSES,
    sleep: Callable[[float], Any] = time.sleep,
    cancelled: Callable[[], bool] = lambda: False,
) -> requests.Response:
    """Call send() until it answers with a non-retryable status, retrying network errors and 5xx.

    The last retryable response is returned as is, so the caller reports its error;
    a network error that outlasts the retries raises network_error naming `what`.
    """
    retry_statuses = frozenset(retry_statuses)
    attempt = 0
    while True:
        try:
            response = send()
        except Cancelled:
            raise
        except NETWORK_ERRORS as error:
            if cancelled():
                raise Cancelled() from error
            if attempt >= policy.retries:
                raise ClientError("network_error", f"{what}: {describe_network_error(error)}") from None
            sleep(policy.delay(attempt))
        else:
            if response.status_code not in retry_statuses or attempt >= policy.retries:
                return response
            delay = policy.delay(attempt, response)
            response.close()
            sleep(delay)
        if cancelled():
            raise Cancelled()
        attempt += 1


class SessionPerThread:
    """One requests.Session for each thread: a Session is not thread-safe, and each keeps its connections."""

    def __init__(self):
        self._local = threading.local()

    def get(self) -> requests.Session:
        """Return this thread's session, made on first use."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session


def batch_size(limits: dict) -> int:
    """Return how many files (or ids) one batch call may carry, from the server's limits."""
    return max(1, int(limits.get("max_batch") or DEFAULT_MAX_BATCH))


def _segment(value: str) -> str:
    """Quote a user-given id for one path segment (no `/` or `..` tricks)."""
    quoted = quote(value, safe="")
    # urllib3 resolves dot segments, so "." and ".." must not reach it as such.
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def error_from_response(response: requests.Response) -> ApiError:
    """Turn an error answer into an ApiError, from the envelope when there is one."""
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error.get("message") or "")
        details = error.get("details") if isinstance(error.get("details"), dict) else {}
    except (ValueError, KeyError, TypeError):
        code, message, details = f"http_{response.status_code}", response.reason or "unexpected answer", {}
    return ApiError(code, message, status=response.status_code, details=details)


class Api:
    """A logged-in (or anonymous) client of one s3drive server; safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None = None,
        *,
        policy: RetryPolicy | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        on_refresh: Callable[[Credentials], Any] | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self.on_refresh = on_refresh
        self._sessions = SessionPerThread()
        self._refresh_lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        """Return this thread's HTTP session."""
        return self._sessions.get()

    def request(
        self, method: str, path: str, *, json: Any = None, params: dict | None = None, auth: bool = True
    ) -> Any:
        """Send one API request and return its JSON body; raise ApiError on an error answer."""
        token = self._access_token() if auth else None
        response = self._send(method, path, json=json, params=params, token=token)
        if auth and response.status_code == 401 and error_from_response(response).code == "token_expired":
            self.refresh(stale_token=token)
            response = self._send(method, path, json=json, params=params, token=self.credentials.access_token)
        return self._parse(response)

    def refresh(self, stale_token: str | None = None) -> None:
        """Get a new access token with the refresh token (once, however many threads ask)."""
        with self._refresh_lock:
            if stale_token is not None and self.credentials.access_token != stale_token:
                return  # another thread refreshed meanwhile
            response = self._send("POST", "/api/auth/refresh", token=self.credentials.refresh_token)
            if response.status_code == 401:
                error = error_from_response(response)
                raise ApiError(
                    error.code,
                    f"{error.message} Your session has ended: run `s3drive-client login` again.",
                    status=401,
                )
            body = self._parse(response)
            self.credentials = replace(self.credentials, access_token=body["access_token"])
            if self.on_refresh:
                self.on_refresh(self.credentials)

    def _access_token(self) -> str:
        if self.credentials is None:
            raise ClientError("not_logged_in", "Not logged in: run `s3drive-client login URL USERNAME` first.")
        return self.credentials.access_token

    def _send(
        self, method: str, path: str, *, json: Any = None, params: dict | None = None, token: str | None = None
    ) -> requests.Response:
        url = self.base_url + path
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return send_with_retries(
            lambda: self.session.request(method, url, json=json, params=params, headers=headers, timeout=self.timeout),
            self.policy,
            what=f"cannot reach {self.base_url}",
        )

    @staticmethod
    def _parse(response: requests.Response) -> Any:
        if not response.ok:
            raise error_from_response(response)
        try:
            return response.json()
        except ValueError:
            raise ClientError("bad_response", f"{response.url} answered {response.status_code} without JSON") from None

    # -- routes of the contract (shared/API.md) ---------------------------------------------

    def login(self, username: str, password: str) -> Credentials:
        """Log in and return the credentials to keep."""
        body = self.request("POST", "/api/auth/login", json={"username": username, "password": password}, auth=False)
        return Credentials(self.base_url, username, body["access_token"], body["refresh_token"])

    def logout(self) -> None:
        """Revoke both tokens (refresh first: it is the long-lived one)."""
        self._parse(self._send("POST", "/api/auth/logout", token=self.credentials.refresh_token))
        self._parse(self._send("POST", "/api/auth/logout", token=self.credentials.access_token))

    def limits(self) -> dict:
        """Return the server's upload limits."""
        return self.request("GET", "/api/files/limits", auth=False)

    def presign(self, specs: list[dict]) -> dict:
        """Presign a batch of FileSpecs."""
        return self.request("POST", "/api/files/upload/", json={"files": specs})

    def presign_file(self, spec: dict) -> dict:
        """Presign one FileSpec (a new record: a PUT URL cannot be signed again)."""
        return self.request("POST", "/api/files/upload/", json=spec)

    def confirm(self, ids: list[str]) -> dict:
        """Confirm a batch of uploads by id."""
        return self.request("POST", "/api/files/confirm_uploads/", json={"ids": ids})

    def create_multipart(self, spec: dict) -> dict:
        """Start a multipart upload."""
        return self.request("POST", "/api/files/multipart/", json=spec)

    def sign_parts(self, file_id: str, part_numbers: list[int]) -> dict[int, dict]:
        """Return {part_number: {url, headers}} for these parts."""
        body = self.request(
            "POST", f"/api/files/multipart/{_segment(file_id)}/sign", json={"part_numbers": part_numbers}
        )
        return {int(part["part_number"]): part for part in body["parts"]}

    def multipart_status(self, file_id: str) -> dict:
        """Return a multipart upload with the parts S3 already holds."""
        return self.request("GET", f"/api/files/multipart/{_segment(file_id)}")

    def complete_multipart(self, file_id: str, parts: list[dict]) -> dict:
        """Complete a multipart upload and return the File."""
        return self.request("POST", f"/api/files/multipart/{_segment(file_id)}/complete", json={"parts": parts})

    def abort_multipart(self, file_id: str) -> dict:
        """Abort a multipart upload."""
        return self.request("DELETE", f"/api/files/multipart/{_segment(file_id)}")

    def list_files(self, params: dict) -> dict:
        """Return one page of the caller's files."""
        return self.request("GET", "/api/files/", params={k: v for k, v in params.items() if v is not None})

    def get_file(self, file_id: str) -> dict:
        """Return one file record."""
        return self.request("GET", f"/api/files/{_segment(file_id)}")

    def download_url(self, file_id: str) -> dict:
        """Return {url, expires_at}: a presigned GET of the file."""
        return self.request("GET", f"/api/files/{_segment(file_id)}/download", params={"redirect": "0"})

    def delete_files(self, ids: list[str]) -> dict:
        """Delete files in one batch; return {deleted, failed}."""
        return self.request("POST", "/api/files/delete", json={"ids": ids})

    def usage(self) -> dict:
        """Return the caller's usage and quota."""
        return self.request("GET", "/api/files/usage")

    def create_share(self, file_id: str, body: dict) -> dict:
        """Make a public link to a file; return the Share (its `url` is shown only now)."""
        return self.request("POST", f"/api/files/{_segment(file_id)}/shares", json=body)

    def list_shares(self, params: dict) -> dict:
        """Return one page of the caller's links."""
        return self.request("GET", "/api/shares", params={k: v for k, v in params.items() if v is not None})

    def revoke_share(self, share_id: str) -> dict:
        """Revoke a link; return the Share."""
        return self.request("DELETE", f"/api/shares/{_segment(share_id)}")
