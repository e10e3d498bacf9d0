"""Faults injected into real processes: the invariants of DESIGN.md hold whoever dies when.

Two stacks of real processes, both on MiniStack with AUTH=true:
- the dev stack (`python -m s3drive.dev`: the API on a SQLite file);
- gunicorn with 2 workers on the suite's database (PostgreSQL when CI runs the suite on it).
The tests freeze MiniStack (SIGSTOP), kill the API's processes with SIGKILL in the middle of a
request (mid-delete, mid-confirm, mid-multipart-complete, mid-presign), thaw MiniStack, run the
sweeper as its own process (`flask --app wsgi sweep`), and check the invariants from the database
and the bucket. Others cut the database (a TCP proxy that stops; a held lock) and Redis (a proxy
that stops) under gunicorn: 503 `database_unavailable` within seconds, never a 500, `/healthz`
answering throughout, and recovery without a restart.

Every request, fault and invariant violation is counted (TALLY); the module prints the counts at
its end and writes them to test-artifacts/fault-suite.txt.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import requests
from conftest import empty_tables, make_test_app
from helpers import wait_until
from live import REPO_ROOT, DevStack, ServedApp, head_or_none, s3_app, unavailable
from s3servers import _start_ready, install_ministack
from sqlalchemy import create_engine, func, make_url, select, text
from test_timeouts import write_lock_held

from s3drive.app import close_app
from s3drive.dev import ministack
from s3drive.models import RESERVING_STATUSES, File
from s3drive.services.quota import holds_reservation
from s3drive.timeutil import utcnow

pytestmark = pytest.mark.e2e

FILES = 20
SECRET = "fault-suite-" + "x" * 40
PASSWORD = "correct horse battery"
MIB = 1024 * 1024
# The 503s the contract promises for a dependency that is down (API.md, Errors).
UNAVAILABLE = ("database_unavailable", "storage_unavailable")


# -- the tally ---------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the fault suite did and saw, for the closing note."""

    faults: int = 0
    requests: int = 0
    expected_503: int = 0  # 503 database_unavailable / storage_unavailable with Retry-After
    unexpected_5xx: int = 0  # anything else >= 500: a bug
    violations: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, count in counts.items():
                setattr(self, name, getattr(self, name) + count)

    def line(self) -> str:
        return (
            f"FAULT SUITE: faults={self.faults} requests={self.requests}"
            f" 5xx={self.expected_503 + self.unexpected_5xx} (expected 503={self.expected_503},"
            f" unexpected={self.unexpected_5xx}) violations={self.violations}"
        )


TALLY = Tally()


@pytest.fixture(scope="module", autouse=True)
def fault_tally() -> Iterator[Tally]:
    """Print the module's counts at its end (pytest -s shows them) and keep them in test-artifacts/."""
    yield TALLY
    line = TALLY.line()
    print("\n" + line)
    artifacts = REPO_ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "fault-suite.txt").write_text(line + "\n")


@pytest.fixture(autouse=True)
def no_unexpected_5xx() -> Iterator[None]:
    """Whatever the fault, the service never answers a 5xx other than the contract's 503s."""
    before = TALLY.unexpected_5xx
    yield
    assert TALLY.unexpected_5xx == before, "the service answered a 5xx that is not a 503 with Retry-After"


def is_expected_503(status: int, headers, body: bytes) -> bool:
    """Tell whether an answer is the contract's 503: the envelope, a dependency's code, Retry-After."""
    if status != 503 or not headers.get("Retry-After"):
        return False
    try:
        return json.loads(body)["error"]["code"] in UNAVAILABLE
    except (ValueError, KeyError, TypeError):
        return False


def count_answer(status: int, headers, body: bytes) -> None:
    if status >= 500:
        TALLY.add(**{"expected_503" if is_expected_503(status, headers, body) else "unexpected_5xx": 1})


def send(method: str, url: str, **kwargs) -> requests.Response:
    """Send one request, counted in the tally with the 5xx it may answer."""
    kwargs.setdefault("timeout", 30)
    TALLY.add(requests=1)
    answer = requests.request(method, url, **kwargs)
    count_answer(answer.status_code, answer.headers, answer.content)
    return answer


def send_quietly(method: str, url: str, **kwargs) -> None:
    """Send a request whose server may be killed under it."""
    try:
        send(method, url, **kwargs)
    except requests.RequestException:
        pass  # the server was killed under it


# -- stacks ------------------------------------------------------------------------------------


@dataclass
class Stack:
    """An API in real processes, the database it writes, and the MiniStack it stores in."""

    url: str
    database_url: str
    s3_url: str
    bucket: str
    ministack_pgid: int
    kill_api: Callable[[], None]
    revive: Callable[[], dict] | None = None  # serve again after kill_api; return a user's auth header
    restart_s3: Callable[[], None] | None = None  # start a killed MiniStack again, on its port and data
    engine: object = field(init=False)

    def __post_init__(self) -> None:
        self.engine = create_engine(self.database_url)

    def query(self, sql, **params) -> list[tuple]:
        """Run SQL (a string or a SQLAlchemy statement) on the stack's database; return the rows."""
        with self.engine.connect() as connection:
            statement = text(sql) if isinstance(sql, str) else sql
            return [tuple(row) for row in connection.execute(statement, params)]

    def s3(self):
        return ministack.s3_client(self.s3_url)

    def sweep(self) -> str:
        """Run the sweeper as its own process against this stack's database and bucket."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("S3DRIVE_", "AWS_"))}
        env.update(stack_environment(self))
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "sweep"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def kill(self) -> None:
        """SIGKILL the API's processes (counted as a fault)."""
        TALLY.add(faults=1)
        self.kill_api()

    def statuses(self) -> list[str]:
        return [status for (status,) in self.query("SELECT status FROM files")]


def stack_environment(stack: Stack) -> dict[str, str]:
    """Return the S3DRIVE_* and AWS_* settings of a process serving this stack."""
    return {
        "S3DRIVE_DATABASE_URL": stack.database_url,
        "S3DRIVE_S3_BUCKET": stack.bucket,
        "S3DRIVE_S3_ENDPOINT_URL": stack.s3_url,
        "S3DRIVE_S3_ADDRESSING_STYLE": "path",
        "S3DRIVE_JWT_SECRET_KEY": SECRET,
        "S3DRIVE_PUBLIC_URL": stack.url,
        # No worker serves these processes: inspection's own faults are in test_inspection_worker.py.
        "S3DRIVE_INSPECT": "false",
        "S3DRIVE_BROKER_URL": "memory://",
        "AWS_ACCESS_KEY_ID": ministack.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": ministack.SECRET_KEY,
        "AWS_DEFAULT_REGION": ministack.REGION,
    }


@contextmanager
def dev_stack(tmp_path: Path) -> Iterator[tuple[Stack, dict]]:
    """The dev stack on a SQLite file; yield it and the demo user's auth header.

    Killed, the dev server stays dead (its MiniStack lives on); `revive` serves the same database
    and bucket again from this process.
    """
    dev = DevStack(tmp_path / "data")
    with dev, ExitStack() as cleanup:

        def kill() -> None:
            dev.proc.kill()
            dev.proc.wait()

        database_url = "sqlite:///" + str(dev.data_dir / "s3drive.sqlite3")
        stack = Stack(dev.url, database_url, dev.s3_url, dev.bucket, dev.ministack_pid(), kill)

        def revive() -> dict:
            served = cleanup.enter_context(ServedApp(s3_app(database_url, dev.s3_url, dev.bucket)))
            stack.url = served.url
            return login(stack.url, "demo", dev.demo_password())

        stack.revive = revive
        yield stack, login(stack.url, "demo", dev.demo_password())


@contextmanager
def gunicorn_stack(
    tmp_path: Path, database_url: str, *, env: dict | None = None, api_database_url: str | None = None
) -> Iterator[tuple[Stack, dict]]:
    """gunicorn (2 workers) on the suite's database and a MiniStack of its own; yield it and a user.

    `env` adds settings; `api_database_url` is where gunicorn reaches the database (a proxy),
    while the test and the sweeper use database_url. Killed workers are respawned by the master:
    `revive` waits for them. MiniStack keeps its objects on disk: `restart_s3` brings a killed one back.
    """
    s3_dir = tmp_path / "ministack"
    s3_proc, s3_url = _start_ready(install_ministack(), s3_dir, persist=True)
    app = make_test_app(database_url)
    empty_tables(app)
    close_app(app)
    port = ministack.free_port()
    stack = Stack(f"http://127.0.0.1:{port}", database_url, s3_url, "fault-suite", s3_proc.pid, lambda: None)
    ministack.ensure_bucket(s3_url, stack.bucket, cors_origins=[])
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("S3DRIVE_", "AWS_"))}
    environment.update(stack_environment(stack), **(env or {}))
    if api_database_url:
        environment["S3DRIVE_DATABASE_URL"] = api_database_url
    command = [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{port}", "--workers", "2"]
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT)
    stack.kill_api = lambda: kill_workers(server.pid)

    def restart_s3() -> None:
        nonlocal s3_proc
        port, log = urlsplit(s3_url).port, s3_dir / "ministack.log"
        s3_proc = ministack.start_ministack(
            port=port, data_dir=s3_dir, persist=True, log_path=log, executable=install_ministack()
        )
        ministack.wait_ready(s3_url, timeout=60, proc=s3_proc)
        stack.ministack_pgid = s3_proc.pid

    stack.restart_s3 = restart_s3
    try:
        assert wait_until(lambda: answers(stack.url + "/healthz"), timeout=60), log.read_text()
        auth = register_and_login(stack.url)

        def revive() -> dict:
            assert wait_until(lambda: answers(stack.url + "/healthz"), timeout=60), log.read_text()
            return auth

        stack.revive = revive
        yield stack, auth
    finally:
        try:
            server.terminate()
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with suppress(OSError):
                kill_workers(server.pid)
            server.kill()
            server.wait()
        finally:
            with suppress(ProcessLookupError):
                os.killpg(stack.ministack_pgid, signal.SIGCONT)  # never leave it frozen
            ministack.stop_process(s3_proc)
            stack.engine.dispose()


STACKS = ["dev stack on SQLite", "gunicorn, 2 workers, the suite's database"]


def open_stack(kind: str, tmp_path: Path, database_url: str):
    """Return the context manager of a stack of STACKS."""
    if kind == STACKS[0]:
        return dev_stack(tmp_path)
    return gunicorn_stack(tmp_path, database_url)


def kill_workers(master: int) -> None:
    """SIGKILL every worker of a gunicorn master (the one serving the request among them)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    for pid in map(int, children):
        os.kill(pid, signal.SIGKILL)


def answers(url: str) -> bool:
    try:
        return send("GET", url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def login(base: str, username: str, password: str) -> dict:
    answer = send("POST", base + "/api/auth/login", json={"username": username, "password": password}, timeout=10)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def register_and_login(base: str, username: str = "alice") -> dict:
    body = {"username": username, "password": PASSWORD}
    assert send("POST", base + "/api/auth/register", json=body, timeout=10).status_code == 201
    return login(base, body["username"], body["password"])


@contextmanager
def frozen(stack: Stack) -> Iterator[None]:
    """SIGSTOP MiniStack for the block (a fault); SIGCONT it whatever happens."""
    TALLY.add(faults=1)
    os.killpg(stack.ministack_pgid, signal.SIGSTOP)
    try:
        yield
    finally:
        with suppress(ProcessLookupError):  # killed meanwhile
            os.killpg(stack.ministack_pgid, signal.SIGCONT)


# -- what the kernel shows of the connections ------------------------------------------------

ESTABLISHED = 1


def tcp_sockets() -> list[tuple[int, int, int, int, int]]:
    """Return (local port, remote port, state, send queue, receive queue) of every TCP socket."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            columns = line.split()
            sent, received = (int(queue, 16) for queue in columns[4].split(":"))
            ports = [int(address.rsplit(":", 1)[1], 16) for address in columns[1:3]]
            found.append((ports[0], ports[1], int(columns[3], 16), sent, received))
    return found


def s3_request_waiting(stack: Stack) -> bool:
    """Tell whether a request sits unread in a connection to (frozen) MiniStack: an API call hangs on S3."""
    port = urlsplit(stack.s3_url).port
    return any(local == port and state == ESTABLISHED and received for local, _, state, _, received in tcp_sockets())


def request_read_by_server(server_port: int, client_port: int) -> bool:
    """Tell whether the server has read every byte the client sent on this connection."""
    queues = {(local, remote): (sent, received) for local, remote, _, sent, received in tcp_sockets()}
    client, server = queues.get((client_port, server_port)), queues.get((server_port, client_port))
    return client is not None and server is not None and client[0] == 0 and server[1] == 0


@contextmanager
def raw_post(url: str, path: str, body: dict, headers: dict) -> Iterator[int]:
    """POST with the body fully handed to the kernel before the block; yield the client's port.

    After the block, read the answer if one came (the server was usually killed meanwhile).
    """
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    TALLY.add(requests=1)
    connection.request("POST", path, json.dumps(body), {**headers, "Content-Type": "application/json"})
    try:
        yield connection.sock.getsockname()[1]
    finally:
        try:
            answer = connection.getresponse()
            count_answer(answer.status, answer.headers, answer.read())
        except (OSError, http.client.HTTPException):
            pass  # killed under it
        connection.close()


# -- uploads and invariants ------------------------------------------------------------------


def upload_files(stack: Stack, auth: dict, *, confirm: bool = True) -> list[dict]:
    """Upload FILES small files through presigned PUTs and (unless told) confirm them; return their tickets."""
    datas = [hashlib.sha256(str(i).encode()).hexdigest().encode() * (i + 1) for i in range(FILES)]
    specs = [{"file_name": f"f{i}.txt", "content_type": "text/plain", "file_size": len(d)} for i, d in enumerate(datas)]
    tickets = send("POST", stack.url + "/api/files/upload/", json={"files": specs}, headers=auth).json()
    tickets = tickets["successful"]
    for ticket, data in zip(tickets, datas, strict=True):
        sent = send("PUT", ticket["presigned_url"], data=data, headers=ticket["headers"])
        assert sent.status_code == 200, sent.text
    if confirm:
        assert confirm_all(stack, auth, [t["id"] for t in tickets]) == FILES
    return tickets


def confirm_all(stack: Stack, auth: dict, ids: list[str]) -> int:
    """Confirm a batch; return how many succeeded."""
    answer = send("POST", stack.url + "/api/files/confirm_uploads/", json={"ids": ids}, headers=auth)
    assert answer.status_code == 200, answer.text
    return answer.json()["total_successful"]


def invariant_violations(stack: Stack) -> list[str]:
    """Check DESIGN.md's invariants from the database and the bucket; return what is broken.

    used == Σ counted files (complete, and confirmed ones being deleted); used + reserved ≤ quota;
    no complete file without its object; no object that nothing accounts for: a complete or
    deleting file, or an upload that still holds its reservation (its URL is valid: the sweeper
    settles it when it expires).
    """
    now = utcnow()
    reserving = holds_reservation(now) & File.status.in_(RESERVING_STATUSES)
    reserved = dict(stack.query(select(File.user_id, func.sum(File.size)).where(reserving).group_by(File.user_id)))
    broken = []
    for user_id, used, quota, counted in stack.query(
        "SELECT u.id, u.used_bytes, u.quota_bytes, (SELECT COALESCE(SUM(f.size), 0) FROM files f"
        " WHERE f.user_id = u.id AND (f.status = 'complete' OR (f.status = 'deleting'"
        " AND f.confirmed_at IS NOT NULL))) FROM users u"
    ):
        if used != counted:
            broken.append(f"user {user_id}: used_bytes {used} != {counted} counted")
        if used + int(reserved.get(user_id) or 0) > quota:
            broken.append(f"user {user_id}: used {used} + reserved {reserved.get(user_id)} > quota {quota}")
    objects = {item["Key"] for item in stack.s3().list_objects_v2(Bucket=stack.bucket).get("Contents", ())}
    complete = {key for (key,) in stack.query("SELECT s3_key FROM files WHERE status = 'complete'")}
    if complete - objects:
        broken.append(f"complete without an object: {sorted(complete - objects)[:3]}")
    live = {key for (key,) in stack.query("SELECT s3_key FROM files WHERE status IN ('complete', 'deleting')")}
    live |= {key for (key,) in stack.query(select(File.s3_key).where(reserving))}
    if objects - live:
        broken.append(f"objects nothing accounts for: {sorted(objects - live)[:3]}")
    return broken


def assert_invariants(stack: Stack) -> None:
    broken = invariant_violations(stack)
    TALLY.add(violations=len(broken))
    assert broken == []


# -- kill -9 of the API mid-request ------------------------------------------------------------


@pytest.mark.parametrize("kind", STACKS)
def test_api_killed_mid_delete_while_s3_hangs(tmp_path, database_url, kind):
    with open_stack(kind, tmp_path, database_url) as (stack, auth):
        tickets = upload_files(stack, auth)
        keep = tickets.pop()  # one file nobody deletes
        ids = [t["id"] for t in tickets]
        assert_invariants(stack)

        with frozen(stack):
            delete = stack.url + "/api/files/delete"
            threading.Thread(
                target=send_quietly, args=("POST", delete), kwargs={"json": {"ids": ids}, "headers": auth}, daemon=True
            ).start()
            # The intent is written before S3 is asked; S3 hangs, so the request is stuck after it.
            marked = "SELECT COUNT(*) FROM files WHERE status = 'deleting'"
            assert wait_until(lambda: stack.query(marked)[0][0] == len(ids), timeout=30)
            stack.kill()  # SIGKILL mid-delete: no cleanup runs

        # Whatever S3 does with the request it received, no file is complete without its object.
        statuses = {status for (status,) in stack.query("SELECT status FROM files WHERE id != :id", id=keep["id"])}
        assert statuses == {"deleting"}
        assert_invariants(stack)

        report = stack.sweep()
        assert f"deletes_finished={len(ids)}" in report, report
        assert_invariants(stack)
        statuses = {status for (status,) in stack.query("SELECT status FROM files WHERE id != :id", id=keep["id"])}
        assert statuses == {"deleted"}
        [(used, kept_size)] = stack.query(
            "SELECT u.used_bytes, f.size FROM users u JOIN files f ON f.user_id = u.id WHERE f.id = :id", id=keep["id"]
        )
        assert used == kept_size
        assert "deletes_finished=0" in stack.sweep()  # nothing left: idempotent


@pytest.mark.parametrize("kind", STACKS)
def test_api_killed_mid_confirm_while_s3_hangs(tmp_path, database_url, kind):
    with open_stack(kind, tmp_path, database_url) as (stack, auth):
        ids = [t["id"] for t in upload_files(stack, auth, confirm=False)]
        confirm = stack.url + "/api/files/confirm_uploads/"
        with frozen(stack):
            threading.Thread(
                target=send_quietly, args=("POST", confirm), kwargs={"json": {"ids": ids}, "headers": auth}, daemon=True
            ).start()
            # Confirming asks S3 before it writes anything: the request is in flight once S3 holds it.
            assert wait_until(lambda: s3_request_waiting(stack), timeout=30)
            stack.kill()

        # Nothing was settled: the uploads still hold their reservations, their objects are theirs.
        assert set(stack.statuses()) == {"pending"}
        assert_invariants(stack)
        stack.sweep()
        assert_invariants(stack)

        auth = stack.revive()
        assert confirm_all(stack, auth, ids) == FILES
        assert set(stack.statuses()) == {"complete"}
        assert_invariants(stack)
        assert confirm_all(stack, auth, ids) == FILES  # idempotent
        [(used,)] = stack.query("SELECT SUM(used_bytes) FROM users")
        assert used == sum(size for (size,) in stack.query("SELECT size FROM files"))


def upload_parts(stack: Stack, auth: dict, data: bytes, part_size: int) -> tuple[str, list[dict]]:
    """Start a multipart upload of data and PUT its parts through signed part URLs; return (id, parts)."""
    spec = {"file_name": "big.bin", "content_type": "application/octet-stream", "file_size": len(data)}
    started = send("POST", stack.url + "/api/files/multipart/", json={**spec, "part_size": part_size}, headers=auth)
    assert started.status_code == 201, started.text
    file_id, count = started.json()["id"], started.json()["part_count"]
    numbers = list(range(1, count + 1))
    signed = send(
        "POST", f"{stack.url}/api/files/multipart/{file_id}/sign", json={"part_numbers": numbers}, headers=auth
    )
    assert signed.status_code == 200, signed.text
    parts = []
    for part in signed.json()["parts"]:
        chunk = data[(part["part_number"] - 1) * part_size : part["part_number"] * part_size]
        put = send("PUT", part["url"], data=chunk, headers=part["headers"])
        assert put.status_code == 200, put.text
        parts.append({"part_number": part["part_number"], "etag": put.headers["ETag"].strip('"')})
    return file_id, parts


@pytest.mark.parametrize("kind", STACKS)
def test_api_killed_mid_multipart_complete_while_s3_hangs(tmp_path, database_url, kind):
    with open_stack(kind, tmp_path, database_url) as (stack, auth):
        data = hashlib.sha256(b"big").digest() * (5 * MIB // 32 + 2048)  # two parts: 5 MiB and 64 KiB
        file_id, parts = upload_parts(stack, auth, data, 5 * MIB)
        assert len(parts) == 2
        complete = f"/api/files/multipart/{file_id}/complete"
        with frozen(stack):
            threading.Thread(
                target=send_quietly,
                args=("POST", stack.url + complete),
                kwargs={"json": {"parts": parts}, "headers": auth},
                daemon=True,
            ).start()
            assert wait_until(lambda: s3_request_waiting(stack), timeout=30)
            stack.kill()

        # Thawed, MiniStack completes the upload it received from the dead worker: the object exists
        # while its record, never told, is still uploading and holds the bytes as a reservation.
        [(key,)] = stack.query("SELECT s3_key FROM files")
        assert wait_until(lambda: head_or_none(stack.s3(), stack.bucket, key) is not None, timeout=30)
        assert stack.statuses() == ["uploading"]
        assert_invariants(stack)
        stack.sweep()
        assert_invariants(stack)

        auth = stack.revive()
        # Completing again finds the upload gone and the object its own (file-id): settled; idempotent.
        for _ in range(2):
            done = send("POST", stack.url + complete, json={"parts": parts}, headers=auth)
            assert done.status_code == 200, done.text
            assert done.json()["status"] == "complete" and done.json()["size"] == len(data)
        [(used,)] = stack.query("SELECT u.used_bytes FROM users u JOIN files f ON f.user_id = u.id")
        assert head_or_none(stack.s3(), stack.bucket, key)["ContentLength"] == len(data) == used
        assert_invariants(stack)


@contextmanager
def lock_held(database_url: str, postgres_lock: str) -> Iterator[None]:
    """Hold a lock from another connection (a fault, counted): test_timeouts.write_lock_held."""
    TALLY.add(faults=1)
    with write_lock_held(database_url, postgres_lock):
        yield


def waits_on_a_lock(stack: Stack) -> bool:
    """Tell whether a statement of the API waits on a lock (PostgreSQL shows it; SQLite cannot: True)."""
    if not stack.database_url.startswith("postgresql"):
        return True
    waiting = "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    return stack.query(waiting)[0][0] > 0


def batch_sizes(stack: Stack) -> list[int]:
    return [count for (count,) in stack.query("SELECT COUNT(*) FROM files GROUP BY batch_id")]


def test_api_killed_mid_presign_of_a_1000_file_batch(tmp_path, database_url):
    specs = [{"file_name": f"s{i}.txt", "content_type": "text/plain", "file_size": 100} for i in range(1000)]
    presign = ("/api/files/upload/", {"files": specs})
    with gunicorn_stack(tmp_path, database_url) as (stack, auth):
        port = urlsplit(stack.url).port
        # Killed while its transaction waits on a lock: the insert (PostgreSQL), the write lock (SQLite).
        with lock_held(stack.database_url, "LOCK TABLE files IN SHARE MODE"):
            with raw_post(stack.url, *presign, auth) as client:
                assert wait_until(lambda: request_read_by_server(port, client) and waits_on_a_lock(stack), 30)
                stack.kill()
        assert batch_sizes(stack) == []

        # Killed once the batch is committed, while it signs the URLs.
        stack.revive()
        with raw_post(stack.url, *presign, auth):
            assert wait_until(lambda: batch_sizes(stack) == [1000], timeout=30)
            stack.kill()

        # Killed as soon as it has read the request: whichever step it was at, all or nothing.
        stack.revive()
        with raw_post(stack.url, *presign, auth) as client:
            assert wait_until(lambda: request_read_by_server(port, client), timeout=30)
            stack.kill()
        assert batch_sizes(stack) in ([1000], [1000, 1000])

        stack.sweep()
        assert_invariants(stack)
        # What was recorded holds its reservation, no more, and the service works on.
        auth = stack.revive()
        recorded = 100 * sum(batch_sizes(stack))
        usage = send("GET", stack.url + "/api/files/usage", headers=auth).json()
        assert (usage["used_bytes"], usage["reserved_bytes"]) == (0, recorded)
        answer = send("POST", stack.url + presign[0], json=presign[1], headers=auth)
        assert answer.status_code == 200 and answer.json()["total_successful"] == 1000, answer.text
        assert_invariants(stack)


# -- a dependency that refuses connections ----------------------------------------------------


class TcpProxy:
    """A TCP forwarder on a loopback port of its own, to a dependency (PostgreSQL, Redis).

    stop() is the fault: it closes the listening socket and cuts every live connection, so the
    dependency looks down (connections refused); start() serves again on the same port.
    """

    def __init__(self, host: str, port: int):
        self.upstream = (host, port)
        self.port = ministack.free_port()
        self.listener: socket.socket | None = None
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self, *, fault: bool = True) -> None:
        with self.lock:
            listener, self.listener = self.listener, None
            doomed, self.connections = self.connections, set()
        if listener is not None:
            TALLY.add(faults=int(fault))
            _shut(listener)
            listener.close()
        for connection in doomed:
            _shut(connection)  # its pump closes it

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                if self.listener is not listener:
                    return
                continue
            upstream.settimeout(None)
            with self.lock:
                if self.listener is not listener:  # stopped meanwhile
                    for connection in (client, upstream):
                        _shut(connection)
                        connection.close()
                    return
                self.connections |= {client, upstream}
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        _shut(target)
        with self.lock:
            self.connections.discard(source)
        source.close()


def _shut(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


@contextmanager
def health_probe(stack: Stack) -> Iterator[list[tuple[int, float]]]:
    """Ask /healthz every 0.1 s while the block runs; yield the (status, seconds) it collects."""
    seen: list[tuple[int, float]] = []
    done = threading.Event()

    def probe() -> None:
        while not done.wait(0.1):
            started = time.monotonic()
            try:
                status = send("GET", stack.url + "/healthz", timeout=5).status_code
            except requests.RequestException:
                status = 0
            seen.append((status, time.monotonic() - started))

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()


def database_routes(auth: dict, newcomer: str) -> dict[str, tuple[str, str, dict]]:
    """Requests that need the database: name -> (method, path, requests arguments)."""
    spec = {"file_name": "a.txt", "content_type": "text/plain", "file_size": 10}
    return {
        "login": ("POST", "/api/auth/login", {"json": {"username": "alice", "password": PASSWORD}}),
        "register": ("POST", "/api/auth/register", {"json": {"username": newcomer, "password": PASSWORD}}),
        "me": ("GET", "/api/auth/me", {"headers": auth}),
        "usage": ("GET", "/api/files/usage", {"headers": auth}),
        "list": ("GET", "/api/files/", {"headers": auth}),
        "presign": ("POST", "/api/files/upload/", {"headers": auth, "json": spec}),
        "readyz": ("GET", "/readyz", {}),
    }


WRITES = {"register", "presign"}
SUCCESS = {"register": 201}


def answer_all(stack: Stack, routes: dict[str, tuple[str, str, dict]]) -> dict[str, list[tuple]]:
    """Send every route at once, twice over (both workers get some); return name -> [(status, code,
    Retry-After, seconds)]. At once, but fewer than a worker's threads: /healthz must find one."""
    answers: dict[str, list[tuple]] = {name: [] for name in routes}

    def one(name: str) -> None:
        method, path, arguments = routes[name]
        started = time.monotonic()
        answer = send(method, stack.url + path, timeout=30, **arguments)
        took = time.monotonic() - started
        code = error_code(answer) if answer.status_code >= 400 else None
        answers[name].append((answer.status_code, code, answer.headers.get("Retry-After"), took))

    for _ in range(2):
        threads = [threading.Thread(target=one, args=(name,)) for name in routes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return answers


def error_code(answer: requests.Response) -> str | None:
    """Return the envelope's error code, or None when the body is not the envelope (an HTML page)."""
    try:
        return answer.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def assert_outage_answers(answers: dict[str, list[tuple]], refused: set[str]) -> None:
    """The routes in `refused` answer 503 database_unavailable with Retry-After, the others succeed,
    all within 10 s."""
    for name, seen in answers.items():
        assert len(seen) == 2 and all(took <= 10 for *_, took in seen), (name, seen)
        statuses = sorted(status for status, *_ in seen)
        if name in refused:
            assert all(
                (status, code) == (503, "database_unavailable") and int(retry_after) > 0
                for status, code, retry_after, _ in seen
            ), (name, seen)
        elif name == "register":
            assert statuses == [201, 409], (name, seen)  # the second time, the name is taken
        else:
            assert statuses == [200, 200], (name, seen)


def assert_healthy_throughout(seen: list[tuple[int, float]]) -> None:
    assert seen, "the health probe never answered"
    assert {status for status, _ in seen} == {200}, seen
    assert max(took for _, took in seen) <= 1, max(seen, key=lambda answer: answer[1])


def logs_in(stack: Stack) -> bool:
    body = {"username": "alice", "password": PASSWORD}
    return send("POST", stack.url + "/api/auth/login", json=body).status_code == 200


def count_files(stack: Stack) -> int:
    return stack.query("SELECT COUNT(*) FROM files")[0][0]


def recovers(stack: Stack, auth: dict, files: int) -> None:
    """Once the database is back, every route works again without a restart, and nothing of the
    refused requests was kept (no file, no user: the refused name registers now)."""
    assert wait_until(lambda: logs_in(stack), timeout=30, interval=0.2)
    assert count_files(stack) == files
    assert_outage_answers(answer_all(stack, database_routes(auth, "newcomer")), refused=set())
    assert_invariants(stack)


FAST_DATABASE = {"S3DRIVE_DATABASE_TIMEOUT": "2"}


def test_database_refusing_connections_is_a_503_within_seconds_then_heals(tmp_path, database_url):
    server = make_url(database_url)
    if server.get_backend_name() != "postgresql":
        pytest.skip("SQLite has no server to refuse connections: its outage is the held lock (next test)")
    proxy = TcpProxy(server.host or "127.0.0.1", server.port or 5432).start()
    through_proxy = server.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        with gunicorn_stack(tmp_path, database_url, env=FAST_DATABASE, api_database_url=through_proxy) as (
            stack,
            auth,
        ):
            routes = database_routes(auth, "newcomer")
            files = count_files(stack)
            with health_probe(stack) as seen:
                proxy.stop()
                assert_outage_answers(answer_all(stack, routes), refused=set(routes))
                proxy.start()
                recovers(stack, auth, files)
            assert_healthy_throughout(seen)
    finally:
        proxy.stop(fault=False)


def test_a_held_database_lock_is_a_503_within_seconds_then_heals(tmp_path, database_url):
    with gunicorn_stack(tmp_path, database_url, env=FAST_DATABASE) as (stack, auth):
        routes = database_routes(auth, "newcomer")
        # PostgreSQL: nobody may even read users (every token is checked there); SQLite: readers go on.
        postgres = stack.database_url.startswith("postgresql")
        refused = set(routes) - {"readyz"} if postgres else WRITES
        files = count_files(stack)
        with health_probe(stack) as seen:
            with lock_held(stack.database_url, "LOCK TABLE users IN ACCESS EXCLUSIVE MODE"):
                assert_outage_answers(answer_all(stack, routes), refused)
            recovers(stack, auth, files)
        assert_healthy_throughout(seen)


# -- Redis unreachable ------------------------------------------------------------------------

REDIS = ("127.0.0.1", 6379)


def rate_limit_store(stack: Stack) -> str:
    """Return what /readyz says of the rate-limit store (it answers 200 either way)."""
    answer = send("GET", stack.url + "/readyz")
    assert answer.status_code == 200, answer.text
    return answer.json()["checks"]["rate_limits"]


def test_redis_unreachable_rate_limits_fall_back_to_memory_then_redis_again(tmp_path, database_url):
    store = redis.Redis(*REDIS, socket_timeout=2)
    try:
        store.ping()
    except redis.RedisError as error:
        unavailable(f"no Redis at {REDIS}: {error}", "fault suite")
    prefix = f"fault-suite-{uuid.uuid4().hex[:12]}"
    proxy = TcpProxy(*REDIS).start()
    env = {
        "S3DRIVE_RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:{proxy.port}/0",
        "S3DRIVE_RATELIMIT_KEY_PREFIX": prefix,
        "S3DRIVE_LOGIN_RATE_LIMIT": "1000 per minute",
    }

    def counted() -> int:
        """Hits of the login and register limits that Redis holds."""
        return sum(int(store.get(key) or 0) for key in store.scan_iter(match=f"*{prefix}*"))

    try:
        with gunicorn_stack(tmp_path, database_url, env=env) as (stack, _):
            assert rate_limit_store(stack) == "ok" and counted() == 2  # alice's register and login
            proxy.stop()
            for name in ("bob", "carol", "dave"):  # both workers meet the dead store, most likely
                register_and_login(stack.url, name)  # 201, 200: never a 500
            assert rate_limit_store(stack).startswith("degraded")
            assert counted() == 2

            proxy.start()
            assert wait_until(lambda: rate_limit_store(stack) == "ok", timeout=10)
            # A worker goes back to Redis at its next check of the store (flask-limiter backs off:
            # 1, 2, 4 ... s since the last one): logins are counted there again.
            assert wait_until(lambda: logs_in(stack) and counted() > 2, timeout=40, interval=0.5)
    finally:
        proxy.stop(fault=False)
        for key in store.scan_iter(match=f"*{prefix}*"):
            store.delete(key)
        store.close()


# -- S3 killed ----------------------------------------------------------------------------------


def test_s3_killed_mid_confirm_then_restarted(tmp_path, database_url):
    with gunicorn_stack(tmp_path, database_url) as (stack, auth):
        ids = [t["id"] for t in upload_files(stack, auth, confirm=False)]
        answers: list[requests.Response] = []
        confirm = threading.Thread(
            target=lambda: answers.append(
                send("POST", stack.url + "/api/files/confirm_uploads/", json={"ids": ids}, headers=auth)
            )
        )
        with frozen(stack):
            confirm.start()
            assert wait_until(lambda: s3_request_waiting(stack), timeout=30)
            TALLY.add(faults=1)
            os.killpg(stack.ministack_pgid, signal.SIGKILL)  # S3 dies with the request in it
        started = time.monotonic()
        confirm.join(timeout=30)
        # Within seconds the confirm says S3 failed (never a 500: the tally checks), settling nothing.
        [answer] = answers
        assert time.monotonic() - started <= 10
        if answer.status_code == 200:
            assert {item["status"] for item in answer.json()["results"]} == {"error"}, answer.text
        else:
            assert (answer.status_code, error_code(answer)) == (503, "storage_unavailable"), answer.text
        assert set(stack.statuses()) == {"pending"}

        stack.restart_s3()  # the objects are on its disk
        assert_invariants(stack)
        assert confirm_all(stack, auth, ids) == FILES
        stack.sweep()
        assert_invariants(stack)
        assert set(stack.statuses()) == {"complete"}
