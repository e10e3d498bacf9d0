"""The dev stack: MiniStack S3, a SQLite database, the API and the example frontend.

`make run`, `python -m s3drive.dev` or `s3drive dev` starts everything on
loopback with state kept under data/ (objects, database, generated secrets), so a
restart picks up where the last run stopped. Not for production: the JWT secret
and the demo and admin passwords are generated and stored in plain files. POSIX only.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, send_from_directory

from . import ministack

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FRONTEND_DIR = PROJECT_ROOT / "frontend_example"
HOST = "127.0.0.1"
DEFAULT_PORT = 5000
DEFAULT_S3_PORT = 4566
DEFAULT_BUCKET = "s3drive-dev"
# The example upload profiles file the README explains; the dev stack loads it unless told another.
EXAMPLE_PROFILES = Path(__file__).resolve().parent / "upload-profiles.toml"
DEMO_USERNAME = "demo"
# An administrator of the dev stack (GET /api/admin/stats, quarantine, sweep), beside the demo user.
ADMIN_USERNAME = "admin"
MINISTACK_READY_TIMEOUT = 60.0
MINISTACK_STOP_TIMEOUT = 5.0


class DevServerError(RuntimeError):
    """The dev stack cannot start; the message says what to do."""


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"s3drive dev: {name} must be a port number, got {value!r}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the dev server's command line; environment variables give the defaults."""
    parser = argparse.ArgumentParser(
        prog="s3drive dev",
        description="Run the s3drive dev stack: MiniStack S3 + API + example frontend, on loopback.",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=_env_int("S3DRIVE_DEV_PORT", DEFAULT_PORT),
        help="API and frontend port (env S3DRIVE_DEV_PORT, default %(default)s)",
    )
    parser.add_argument(
        "--s3-port",
        type=int,
        default=_env_int("S3DRIVE_DEV_S3_PORT", DEFAULT_S3_PORT),
        help="MiniStack S3 port (env S3DRIVE_DEV_S3_PORT, default %(default)s)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("S3DRIVE_DEV_DATA_DIR") or PROJECT_ROOT / "data"),
        help="where objects, the database and the generated secrets live (env S3DRIVE_DEV_DATA_DIR)",
    )
    parser.add_argument(
        "--ministack-venv",
        type=Path,
        default=Path(os.environ.get("S3DRIVE_MINISTACK_VENV") or PROJECT_ROOT / ".cache" / "ministack-venv"),
        help="virtualenv MiniStack is installed into (env S3DRIVE_MINISTACK_VENV)",
    )
    args = parser.parse_args(argv)
    for name in ("port", "s3_port"):
        if not 1 <= getattr(args, name) <= 65535:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and 65535")
    if args.port == args.s3_port:
        parser.error("--port and --s3-port must differ")
    args.data_dir = args.data_dir.resolve()
    args.ministack_venv = args.ministack_venv.resolve()
    return args


def dev_origins(port: int) -> list[str]:
    """Return the browser origins of the dev frontend."""
    return [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]


# -- files under the data directory ----------------------------------------------------


@contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on data_dir so two dev servers never share it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / ".lock", "w") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DevServerError(f"another dev server is already using {data_dir}") from None
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def read_or_create_secret(path: Path, make: Any) -> tuple[str, bool]:
    """Return the value stored in path (mode 0600), creating it with make() once."""
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        value = ""
    if value:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)  # Someone loosened it; secrets stay owner-only.
        return value, False
    value = make()
    path.unlink(missing_ok=True)  # An empty leftover; O_EXCL below needs it gone.
    # O_EXCL + 0600 at creation: the secret is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as secret_file:
        secret_file.write(value + "\n")
    return value, True


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


# -- MiniStack ---------------------------------------------------------------------------


def _pid_is_ministack(pid: int) -> bool:
    """Tell whether pid is a live MiniStack process (Linux /proc; False elsewhere)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"ministack" in cmdline


def stop_leftover_ministack(pid_file: Path) -> None:
    """Stop a MiniStack a killed dev server left running on this data directory."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    if _pid_is_ministack(pid):
        print(f"Stopping MiniStack left over from an earlier run (pid {pid}).", flush=True)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            deadline = time.monotonic() + MINISTACK_STOP_TIMEOUT
            while time.monotonic() < deadline and _pid_is_ministack(pid):
                time.sleep(0.1)
            if not _pid_is_ministack(pid):
                break
    pid_file.unlink(missing_ok=True)


def start_s3(args: argparse.Namespace) -> subprocess.Popen:
    """Install (first run only) and start MiniStack on args.s3_port; do not wait."""
    ministack_dir = args.data_dir / "ministack"
    pid_file = ministack_dir / "ministack.pid"
    ministack_dir.mkdir(parents=True, exist_ok=True)
    stop_leftover_ministack(pid_file)
    if not _port_is_free(args.s3_port):
        raise DevServerError(
            f"port {args.s3_port} (S3) is in use;"
            " stop what holds it or pick another with --s3-port / S3DRIVE_DEV_S3_PORT"
        )
    if not (args.ministack_venv / "bin" / "ministack").exists():
        print(
            f"Installing MiniStack {ministack.MINISTACK_VERSION} into {args.ministack_venv} (first run only) ...",
            flush=True,
        )
    try:
        executable = ministack.ensure_ministack(args.ministack_venv)
    except (ministack.MinistackError, OSError) as error:
        raise DevServerError(f"cannot install MiniStack (needs PyPI once): {error}") from None
    proc = ministack.start_ministack(
        port=args.s3_port,
        data_dir=ministack_dir,
        persist=True,
        log_path=ministack_dir / "ministack.log",
        executable=executable,
    )
    pid_file.write_text(f"{proc.pid}\n")
    return proc


def wait_s3_ready(args: argparse.Namespace, proc: subprocess.Popen) -> float:
    """Wait until MiniStack answers, or raise with the end of its log."""
    try:
        return ministack.wait_ready(ministack.endpoint_url(args.s3_port), timeout=MINISTACK_READY_TIMEOUT, proc=proc)
    except ministack.MinistackError as error:
        log_path = args.data_dir / "ministack" / "ministack.log"
        try:
            tail = log_path.read_text(errors="replace")[-2000:]
        except OSError:
            tail = "(no log)"
        raise DevServerError(f"{error}\n--- {log_path} ---\n{tail}") from None


def stop_s3(args: argparse.Namespace, proc: subprocess.Popen) -> None:
    """Stop MiniStack's whole process group and forget its pid."""
    ministack.stop_process(proc, timeout=MINISTACK_STOP_TIMEOUT)
    (args.data_dir / "ministack" / "ministack.pid").unlink(missing_ok=True)


# -- the Flask app -----------------------------------------------------------------------


def use_dev_credentials() -> None:
    """Point the AWS credential chain at MiniStack's fixed key (AUTH=true accepts no other)."""
    os.environ["AWS_ACCESS_KEY_ID"] = ministack.ACCESS_KEY
    os.environ["AWS_SECRET_ACCESS_KEY"] = ministack.SECRET_KEY
    # A session token or profile of a real account must not ride along to the emulator.
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)


def app_config(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """Return the dev-stack settings for create_app(), and notes on where they came from.

    S3DRIVE_* variables the user set win over the dev defaults (they are read by
    create_app); only what makes this the embedded stack is fixed.
    """
    notes: list[str] = []
    config: dict[str, Any] = {
        "DEV_STACK": True,
        "S3_ENDPOINT_URL": ministack.endpoint_url(args.s3_port),
        "S3_ADDRESSING_STYLE": "path",
    }
    for name in config:
        if f"S3DRIVE_{name}" in os.environ:
            notes.append(f"S3DRIVE_{name} is ignored by the dev stack (it runs its own S3)")
    defaults: dict[str, Any] = {
        "S3_BUCKET": DEFAULT_BUCKET,
        "DATABASE_URL": "sqlite:///" + str(args.data_dir / "s3drive.sqlite3"),
        # The embedded broker: the API and the dev stack's worker share this file.
        "BROKER_URL": "sqla+sqlite:///" + str(args.data_dir / "broker.sqlite3"),
        # MiniStack with AUTH=true enforces signed headers, so a listing confirms a batch.
        "S3_CONFIRM": "list",
        # The example profiles (avatar, document, video): the page offers them.
        "UPLOAD_PROFILES_FILE": str(EXAMPLE_PROFILES),
        # Read by people in a terminal and data/worker.log; deployments default to json.
        "LOG_FORMAT": "text",
    }
    for name, value in defaults.items():
        if f"S3DRIVE_{name}" not in os.environ:
            config[name] = value
    # The dev origins always, plus any the user added.
    extra = [o.strip() for o in os.environ.get("S3DRIVE_CORS_ORIGINS", "").split(",") if o.strip()]
    config["CORS_ORIGINS"] = list(dict.fromkeys(dev_origins(args.port) + extra))
    if "S3DRIVE_JWT_SECRET_KEY" in os.environ:
        notes.append("JWT secret: from S3DRIVE_JWT_SECRET_KEY")
    else:
        secret_path = args.data_dir / "jwt-secret"
        config["JWT_SECRET_KEY"], created = read_or_create_secret(secret_path, lambda: secrets.token_urlsafe(48))
        notes.append(
            f"JWT secret: {'generated into' if created else 'read from'} {secret_path}"
            " (dev stack only; production needs S3DRIVE_JWT_SECRET_KEY)"
        )
    return config, notes


def _reenable_loggers() -> None:
    # Alembic's env.py runs logging.fileConfig(), which disables every logger that
    # existed before (the app's and werkzeug's included): switch them back on.
    for logger in logging.Logger.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            logger.disabled = False


def prepare_database(app: Flask, data_dir: Path) -> dict[str, str]:
    """Run the migrations and make sure the demo user and the admin exist; return their passwords."""
    from flask_migrate import upgrade  # only the dev stack migrates at start

    passwords = {
        name: read_or_create_secret(data_dir / f"{name}-password", lambda: secrets.token_urlsafe(12))[0]
        for name in (DEMO_USERNAME, ADMIN_USERNAME)
    }
    with app.app_context():
        upgrade()
        _reenable_loggers()
        for name, password in passwords.items():
            _ensure_user(name, password, is_admin=name == ADMIN_USERNAME)
    return passwords


def _ensure_user(username: str, password: str, *, is_admin: bool) -> None:
    """Create the user, or make its stored password (and role) match the password file."""
    from werkzeug.security import check_password_hash, generate_password_hash

    from ..extensions import db
    from ..services.users import create_user, find_user

    user = find_user(username)
    if user is None:
        create_user(username, password, is_admin=is_admin)
    elif not check_password_hash(user.password_hash, password) or user.is_admin != is_admin:
        # The password file was removed or edited: make the printed credentials true.
        user.password_hash = generate_password_hash(password)
        user.is_active = True
        user.is_admin = is_admin
        db.session.commit()
    db.session.remove()


def register_frontend(app: Flask, directory: Path = FRONTEND_DIR) -> None:
    """Serve the example frontend at / (index.html and its assets)."""
    frontend = Blueprint("frontend_example", __name__)

    @frontend.get("/")
    def index():
        """Serve the example page."""
        return send_from_directory(directory, "index.html")

    # API routes are more specific than this catch-all, so werkzeug tries them first;
    # an unknown path ends in NotFound and the app's JSON error envelope.
    @frontend.get("/<path:filename>")
    def asset(filename: str):
        """Serve one of the page's files (send_from_directory refuses paths leaving directory)."""
        return send_from_directory(directory, filename)

    app.register_blueprint(frontend)


def build_app(args: argparse.Namespace) -> tuple[Flask, dict[str, str], list[str]]:
    """Create the configured app with the frontend attached and the database ready."""
    from .. import create_app  # keep `--help` fast
    from ..config import ConfigError

    config, notes = app_config(args)
    try:
        app = create_app(config)
    except ConfigError as error:
        if config.get("UPLOAD_PROFILES_FILE") != str(EXAMPLE_PROFILES) or str(EXAMPLE_PROFILES) not in str(error):
            raise
        # The example profiles do not fit the settings given (inspection off, a lower size limit): the
        # stack runs without them rather than not at all. A profiles file of the user's own must fit.
        app = create_app({**config, "UPLOAD_PROFILES_FILE": None})
        notes.append(f"upload profiles: the example's are left out: {str(error).split(': ', 1)[1]}")
    if FRONTEND_DIR.is_dir():
        register_frontend(app)
    else:
        notes.append(f"no frontend at {FRONTEND_DIR}: / is not served")
    passwords = prepare_database(app, args.data_dir)
    return app, passwords, notes


def ensure_dev_bucket(app: Flask) -> None:
    """Create the bucket if missing and let the dev origins upload to it (CORS)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        ministack.ensure_bucket(
            app.config["S3_ENDPOINT_URL"],
            app.config["S3_BUCKET"],
            cors_origins=app.config["CORS_ORIGINS"],
            region=app.config["S3_REGION"],
        )
    except (BotoCoreError, ClientError) as error:
        raise DevServerError(f"cannot set up bucket {app.config['S3_BUCKET']!r} on MiniStack: {error}") from None


# -- running ---------------------------------------------------------------------------


PR_SET_PDEATHSIG = 1
# Settings the worker process needs to be the same app as the API (it reads S3DRIVE_* variables).
WORKER_SETTINGS = (
    "DEV_STACK",
    "S3_ENDPOINT_URL",
    "S3_ADDRESSING_STYLE",
    "S3_BUCKET",
    "DATABASE_URL",
    "S3_CONFIRM",
    "JWT_SECRET_KEY",
    "BROKER_URL",
    "UPLOAD_PROFILES_FILE",
    "LOG_FORMAT",
)


def worker_environment(app: Flask) -> dict[str, str]:
    """Return the environment of a task-queue worker serving the same database, bucket and broker."""
    env = dict(os.environ)
    for name in WORKER_SETTINGS:
        value = app.config.get(name)
        if value is not None:
            env[f"S3DRIVE_{name}"] = "true" if value is True else str(value)
    return env


def start_worker(args: argparse.Namespace, app: Flask) -> subprocess.Popen:
    """Start the task queue's worker (with its scheduler) as the Procfile's worker: and scheduler: would."""
    command = [sys.executable, "-m", "celery", "-A", "wsgi:celery", "worker", "--beat", "--pool=solo"]
    command += ["--loglevel=info", "--schedule", str(args.data_dir / "celerybeat-schedule")]
    with open(args.data_dir / "worker.log", "ab") as log:
        return subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=worker_environment(app),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches us; we stop it
            preexec_fn=_die_with_parent,
        )


def _die_with_parent() -> None:
    """Have Linux send SIGTERM to this child when the dev server dies, even by SIGKILL (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: stop_worker still stops it on every orderly exit


def stop_worker(worker: subprocess.Popen) -> None:
    """Stop the worker (a warm shutdown finishes its task), or kill it after a few seconds."""
    worker.terminate()
    try:
        worker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def _interrupt(signum: int, frame: object) -> None:
    """Turn a stop signal into KeyboardInterrupt so the cleanup below runs."""
    raise KeyboardInterrupt


def _banner(args: argparse.Namespace, app: Flask, passwords: dict[str, str], notes: list[str], took: float) -> str:
    base = f"http://{HOST}:{args.port}"
    lines = [
        "",
        "s3drive dev stack (embedded S3, generated secrets: NOT for production)",
        f"  App:       {base}/",
        f"  API docs:  {base}/docs   (OpenAPI: {base}/openapi.json)",
        f"  S3:        {app.config['S3_ENDPOINT_URL']}  MiniStack, bucket {app.config['S3_BUCKET']},"
        f" key {ministack.ACCESS_KEY}/{ministack.SECRET_KEY}",
        f"  Worker:    task queue on {app.config['BROKER_URL']}  (log: {args.data_dir / 'worker.log'})",
        f"  Data:      {args.data_dir}  (started in {took:.1f}s)",
        f"  Sign in:   {DEMO_USERNAME} / {passwords[DEMO_USERNAME]}   (kept in {args.data_dir / 'demo-password'})",
        f"  Admin:     {ADMIN_USERNAME} / {passwords[ADMIN_USERNAME]}   (kept in {args.data_dir / 'admin-password'})",
        "  Others:    register on the page, or POST /api/auth/register (see the README)",
        *(f"  Note:      {note}" for note in notes),
        "Press Ctrl-C to stop.",
        "",
    ]
    return "\n".join(lines)


def serve(args: argparse.Namespace) -> None:
    """Start MiniStack and the API, serve until interrupted, then stop both."""
    from werkzeug.serving import make_server

    from ..app import close_app

    if not _port_is_free(args.port):
        raise DevServerError(f"port {args.port} (API) is in use; pick another with --port / S3DRIVE_DEV_PORT")
    use_dev_credentials()
    started = time.monotonic()
    proc = start_s3(args)
    server = app = worker = None
    try:
        # The database work overlaps MiniStack's boot.
        app, passwords, notes = build_app(args)
        worker = start_worker(args, app)
        try:
            server = make_server(HOST, args.port, app, threaded=True)
        except OSError as error:
            raise DevServerError(f"cannot listen on {HOST}:{args.port}: {error}") from None
        wait_s3_ready(args, proc)
        ensure_dev_bucket(app)
        print(_banner(args, app, passwords, notes, time.monotonic() - started), flush=True)
        server.serve_forever()
    finally:
        # A second Ctrl-C must not cut the cleanup short and orphan MiniStack.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if server is not None:
            server.server_close()
        if worker is not None:
            stop_worker(worker)
        if app is not None:
            close_app(app)
        stop_s3(args, proc)


def main(argv: list[str] | None = None) -> int:
    """Run the dev stack until Ctrl-C or SIGTERM; return the exit status."""
    args = parse_args(argv)
    # A shell's background jobs start with SIGINT ignored, and process managers
    # send SIGTERM: both must still stop us, and we stop MiniStack (own group).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    from ..config import ConfigError

    try:
        with data_dir_lock(args.data_dir):
            serve(args)  # Returns when werkzeug swallows the KeyboardInterrupt itself.
    except KeyboardInterrupt:
        pass
    except (DevServerError, ConfigError) as error:
        print(f"s3drive dev: {error}", file=sys.stderr, flush=True)
        return 1
    print("\nStopped the dev stack.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
