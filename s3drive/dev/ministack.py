"""Run local S3 endpoints (MiniStack) for the dev stack and end-to-end tests.

MiniStack pins its own botocore, so it lives in a separate virtualenv that
this module creates and fills on demand. POSIX only (process groups, flock).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ..storage import cors_rules

MINISTACK_VERSION = "1.5.33"
# MiniStack with AUTH=true only accepts the credentials it was started with.
ACCESS_KEY = "test"
SECRET_KEY = "test"
REGION = "us-east-1"


class MinistackError(RuntimeError):
    """MiniStack could not be installed, started or reached."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _venv_python(venv_dir: Path) -> Path:
    """Return the interpreter inside venv_dir."""
    return venv_dir / "bin" / "python"


def _has_ministack(venv_dir: Path, version: str) -> bool:
    """Tell whether venv_dir already holds ministack==version."""
    # Globbing the dist-info is instant; asking pip would cost a second.
    pattern = f"lib/python3*/site-packages/ministack-{version}.dist-info"
    executable = venv_dir / "bin" / "ministack"
    return executable.exists() and any(venv_dir.glob(pattern))


@contextmanager
def _install_lock(venv_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock so parallel test workers install only once."""
    venv_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv_dir.with_name(venv_dir.name + ".lock")
    with open(lock_path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _run_checked(cmd: list[str], what: str) -> None:
    """Run cmd and raise MinistackError with its output when it fails."""
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-2000:]
        raise MinistackError(f"{what} failed (exit {result.returncode}):\n{output}")


def ensure_ministack(venv_dir: Path, version: str = MINISTACK_VERSION) -> Path:
    """Install ministack==version into its own venv and return its executable."""
    venv_dir = Path(venv_dir).resolve()
    executable = venv_dir / "bin" / "ministack"
    if _has_ministack(venv_dir, version):
        return executable
    with _install_lock(venv_dir):
        if _has_ministack(venv_dir, version):
            return executable  # Another worker installed it while we waited.
        if not _venv_python(venv_dir).exists():
            _run_checked([sys.executable, "-m", "venv", str(venv_dir)], "creating venv")
        pip = [str(_venv_python(venv_dir)), "-m", "pip", "install"]
        pip += ["--disable-pip-version-check", "--quiet", f"ministack=={version}"]
        _run_checked(pip, f"pip install ministack=={version}")
    if not _has_ministack(venv_dir, version):
        raise MinistackError(f"ministack=={version} missing from {venv_dir} after install")
    return executable


def ministack_env(
    *,
    port: int,
    data_dir: Path,
    persist: bool = True,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Return the environment for an S3-only, loopback-bound, AUTH=true MiniStack."""
    env = dict(os.environ if base is None else base)
    env.update(
        BIND_HOST="127.0.0.1",
        GATEWAY_PORT=str(port),
        SERVICES="s3",
        AUTH="true",
        # IoT mTLS binds the fixed port 8883, which parallel instances would
        # fight over; SFTP drags in heavy imports. Neither matters for S3.
        IOT_MTLS_ENABLED="0",
        SFTP_ENABLED="0",
        # S3_PERSIST keeps objects; bucket settings such as CORS survive a
        # restart only with PERSIST_STATE as well.
        S3_PERSIST="1" if persist else "0",
        S3_DATA_DIR=str(data_dir / "s3"),
        PERSIST_STATE="1" if persist else "0",
        STATE_DIR=str(data_dir / "state"),
        # MiniStack writes its pid file and scratch files under TMPDIR.
        TMPDIR=str(data_dir / "tmp"),
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        MINISTACK_REGION=REGION,
    )
    # A leftover LocalStack switch would turn on persistence we did not ask for.
    env.pop("LOCALSTACK_PERSISTENCE", None)
    return env


def start_ministack(
    *,
    port: int,
    data_dir: Path,
    persist: bool = True,
    log_path: Path | None = None,
    executable: Path | str = "ministack",
) -> subprocess.Popen:
    """Start MiniStack in its own process group; log to log_path or inherit stdio."""
    data_dir = Path(data_dir).resolve()
    (data_dir / "s3").mkdir(parents=True, exist_ok=True)
    (data_dir / "tmp").mkdir(parents=True, exist_ok=True)
    env = ministack_env(port=port, data_dir=data_dir, persist=persist)
    log = open(log_path, "ab") if log_path else None
    try:
        # A new session keeps the terminal's Ctrl-C away from MiniStack so
        # stop_process decides how it ends, and lets us signal its children.
        return subprocess.Popen(
            [str(executable)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT if log else None,
            start_new_session=True,
        )
    finally:
        if log:
            log.close()  # The child holds its own copy of the descriptor.


def endpoint_url(port: int) -> str:
    """Return the loopback endpoint URL for a MiniStack on port."""
    return f"http://127.0.0.1:{port}"


def wait_ready(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> float:
    """Poll url/_ministack/ready until it answers 200; return seconds waited."""
    started = time.monotonic()
    ready_url = url.rstrip("/") + "/_ministack/ready"
    while True:
        if proc is not None and proc.poll() is not None:
            raise MinistackError(f"MiniStack exited with {proc.returncode} before ready")
        try:
            with urllib.request.urlopen(ready_url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # Not listening yet, or 503 while boot scripts run.
        if time.monotonic() - started > timeout:
            raise MinistackError(f"{ready_url} not ready after {timeout:.0f}s")
        time.sleep(0.1)


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    """Send sig to proc's process group, ignoring a group that is gone."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """Stop proc and its process group: SIGTERM, then SIGKILL after timeout."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def s3_client(
    endpoint_url: str,
    *,
    region: str = REGION,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
):
    """Return a path-style SigV4 boto3 S3 client for a local endpoint."""
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        # Keep botocore from adding CRC32 trailers the emulators may not expect.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=config,
    )


def _create_bucket(client, bucket: str, region: str) -> None:
    """Create bucket unless it exists; us-east-1 takes no LocationConstraint."""
    kwargs: dict = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**kwargs)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in (
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        ):
            raise


def ensure_bucket(
    endpoint_url: str,
    bucket: str,
    *,
    cors_origins: list[str],
    region: str = REGION,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
) -> None:
    """Create bucket if missing and set its CORS rules (skipped when no origins)."""
    client = s3_client(endpoint_url, region=region, access_key=access_key, secret_key=secret_key)
    _create_bucket(client, bucket, region)
    if cors_origins:
        client.put_bucket_cors(Bucket=bucket, CORSConfiguration=cors_rules(cors_origins))


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line of the dev-stack runner."""
    parser = argparse.ArgumentParser(description="Run MiniStack S3 for local development.")
    parser.add_argument("--venv", type=Path, default=Path(".cache/ministack-venv"))
    parser.add_argument("--data-dir", type=Path, default=Path(".cache/ministack-data"))
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument("--bucket", default="s3drive-dev")
    parser.add_argument("--cors-origin", action="append", default=[], dest="cors_origins")
    parser.add_argument("--no-persist", action="store_false", dest="persist")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    """Turn a stop signal into KeyboardInterrupt so cleanup runs."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Install, start and seed MiniStack, then run until interrupted."""
    args = _parse_args(argv)
    # Process managers send SIGTERM, and a shell's background jobs start with
    # SIGINT ignored; both must still stop MiniStack, which has its own group.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    executable = ensure_ministack(args.venv)
    proc = start_ministack(
        port=args.port,
        data_dir=args.data_dir,
        persist=args.persist,
        executable=executable,
    )
    try:
        url = endpoint_url(args.port)
        took = wait_ready(url, proc=proc)
        ensure_bucket(url, args.bucket, cors_origins=args.cors_origins)
        print(
            f"MiniStack S3 ready at {url} in {took:.1f}s (bucket {args.bucket})",
            flush=True,
        )
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_process(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
