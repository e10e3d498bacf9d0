"""The s3drive-client command line: login, upload, ls, info, download, rm, share, shares, unshare, usage, profiles,
logout.

Exit codes: 0 success, 1 an error (API, network, local file; one line `error: <code>: <message>`),
2 a usage error, 130 interrupted (Ctrl-C; an interrupted multipart upload resumes on rerun).
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..chunks import chunked
from ..sizes import human_size
from . import config
from .api import Api, RetryPolicy, batch_size
from .download import Downloader
from .errors import ApiError, ClientError
from .inspection import inspection_state, inspection_text, not_ready_text
from .limits import UnknownProfile, profile_limits, profile_names
from .local_files import collect_files
from .progress import TransferProgress
from .upload import FileOutcome, Uploader, UploadOptions

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
TIERS = ("standard", "standard_ia", "intelligent_tiering", "glacier_ir", "glacier", "deep_archive")
SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Piped output is not cut to 80 columns: ids and names stay whole for scripts.
PIPE_WIDTH = 200


class UsageError(Exception):
    """The command line itself is wrong (exit 2)."""


class Parser(argparse.ArgumentParser):
    """argparse, but errors become UsageError so main() prints them its way."""

    def error(self, message: str):
        """Print the usage line and raise UsageError (argparse would exit on its own)."""
        self.print_usage(sys.stderr)
        raise UsageError(message)


# -- small helpers --------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """Parse "16M", "512k", "1.5G" or "1048576" (binary units) into bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtb]?)(?:i?b)?\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 16M, 512K, 1G)")
    number = float(match.group(1)) * SIZE_UNITS[match.group(2)]
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte: {text!r}")
    return int(number)


def parse_duration(text: str) -> int:
    """Parse "7d", "12h", "30m", "2w" or "3600" (seconds) into seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", text.lower())
    if not match or int(match.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 3600, 90m, 12h, 7d)")
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


def positive_int(text: str) -> int:
    """Parse an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def stdout_console() -> Console:
    """Return a console on stdout, wide when piped."""
    console = Console()
    return console if console.is_terminal else Console(width=PIPE_WIDTH)


def stderr_console() -> Console:
    """Return the console progress bars and per-file lines go to."""
    return Console(stderr=True)


def print_json(value) -> None:
    """Print a JSON document on stdout (for scripts: `--json`)."""
    print(json.dumps(value, indent=2, ensure_ascii=False))


def logged_in_api(args: argparse.Namespace) -> Api:
    """Return an API client with the stored credentials; refreshed tokens are stored again."""
    credentials = config.load_credentials()
    return Api(
        credentials.url,
        credentials,
        policy=retry_policy(args),
        timeout=args.timeout,
        on_refresh=config.save_credentials,
    )


def retry_policy(args: argparse.Namespace) -> RetryPolicy:
    """Return the retry policy the global options ask for."""
    return RetryPolicy(retries=args.retries)


# -- commands -------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    """Log in and store the tokens (mode 0600) in the config dir."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        try:
            password = getpass.getpass(f"Password for {args.username}: ")
        except EOFError:
            password = ""
    if not password:
        raise UsageError("no password given (type it at the prompt, or pipe it with --password-stdin)")
    api = Api(args.url, policy=retry_policy(args), timeout=args.timeout)
    path = config.save_credentials(api.login(args.username, password))
    print(f"Logged in to {api.base_url} as {args.username} (credentials in {path})")
    return EXIT_OK


def cmd_logout(args: argparse.Namespace) -> int:
    """Revoke the stored tokens and forget them."""
    api = logged_in_api(args)
    try:
        api.logout()
    finally:
        config.delete_credentials()
    print("Logged out.")
    return EXIT_OK


def cmd_upload(args: argparse.Namespace) -> int:
    """Upload files and directories."""
    files = collect_files(args.paths, args.folder, keep_structure=not args.flat)
    if not files:
        raise ClientError("nothing_to_upload", "No files found in the paths given.")
    api = logged_in_api(args)
    limits = api.limits()
    if args.profile is not None:
        try:
            profile_limits(limits, args.profile)
        except UnknownProfile as error:
            raise UsageError(str(error)) from None
    options = UploadOptions(
        tier=args.tier,
        tags=args.tag or [],
        concurrency=args.concurrency,
        part_size=args.part_size,
        limit_rate=args.limit_rate,
        policy=retry_policy(args),
        profile=args.profile,
    )
    total = sum(f.size for f in files)
    with TransferProgress(stderr_console(), total, len(files), label="upload") as progress:
        outcomes = Uploader(api, limits, options, progress).run(files)
    return report_uploads(outcomes, as_json=args.json, api=api)


# Printed after an upload to a server that checks the content of files.
CHECK_NOTE = (
    "The server checks the content of each upload: downloads wait until the check has passed; "
    "`s3drive-client ls` shows where each file stands, `ls --status rejected` the files it refused."
)


def report_uploads(outcomes: list[FileOutcome], *, as_json: bool, api: Api | None = None) -> int:
    """Print what the upload did; return the exit code (1 if any file failed).

    With api, the human report also says that uploads wait for the server's content check, when
    the server checks them (read from one uploaded file's record: one request).
    """
    failed = [o for o in outcomes if o.status != "complete"]
    sent = sum(o.bytes_sent for o in outcomes)
    resumed = sum(o.resumed_bytes for o in outcomes)
    if as_json:
        print_json({"files": [o.to_json() for o in outcomes], "bytes_sent": sent, "resumed_bytes": resumed})
    else:
        done = len(outcomes) - len(failed)
        size = sum(o.file.size for o in outcomes if o.status == "complete")
        line = f"{done} of {len(outcomes)} files uploaded ({human_size(size)}), {human_size(sent)} sent"
        print(line + (f", {human_size(resumed)} resumed" if resumed else ""))
        sample = next((o.id for o in outcomes if o.status == "complete" and o.id), None)
        if api is not None and sample and content_checked(api, sample):
            print(CHECK_NOTE)
    if not failed:
        return EXIT_OK
    if len(outcomes) == 1:  # the failure was not printed yet: this line is its report
        error, shown = failed[0].error, failed[0].file.shown
        raise ClientError(error.code, error.message if shown in error.message else f"{shown}: {error.message}")
    # Each failure was printed as it happened; one failure keeps its code for scripts.
    code = failed[0].error.code if len(failed) == 1 else "upload_failed"
    raise ClientError(code, f"{len(failed)} of {len(outcomes)} files failed (listed above).")


def content_checked(api: Api, file_id: str) -> bool:
    """Return whether the server checks the content of uploads, judging by one file's record."""
    try:
        return inspection_state(api.get_file(file_id)) is not None
    except ClientError:  # the upload is done; this note is not worth an error
        return False


def cmd_ls(args: argparse.Namespace) -> int:
    """List files as a table (or JSON), following next_cursor with --all."""
    api = logged_in_api(args)
    params = {
        "status": args.status,
        "folder": args.folder,
        "q": args.query,
        "tag": args.tag,
        "profile": args.profile,
        "sort": args.sort,
        "limit": args.limit,
        "cursor": args.cursor,
    }
    return print_listing(args, api.list_files, params, files_table, "files")


def files_table(items: list[dict]) -> Table:
    """Return the table `ls` prints: one row per File."""
    table = new_table(
        ("ID", {"no_wrap": True}),
        ("NAME", {"overflow": "fold"}),
        ("FOLDER", {"overflow": "fold"}),
        ("SIZE", {"justify": "right", "no_wrap": True}),
        ("TIER", {"no_wrap": True}),
        ("STATUS", {"no_wrap": True}),
        ("CREATED", {"no_wrap": True}),
        ("CHECK", {"overflow": "fold"}),
    )
    for item in items:
        table.add_row(
            str(item.get("id")),
            str(item.get("file_name")),
            str(item.get("folder") or ""),
            human_size(int(item.get("size") or 0)),
            str(item.get("tier") or ""),
            str(item.get("status") or ""),
            str(item.get("created_at") or ""),
            inspection_text(item),
        )
    return table


def print_listing(args: argparse.Namespace, fetch, params: dict, table_of, noun: str) -> int:
    """Print a listing (every page with --all) as JSON (--json) or as table_of(items) with a summary."""
    items, cursor = collect_pages(fetch, params, args.all)
    if args.json:
        print_json({"items": items, "next_cursor": cursor})
        return EXIT_OK
    table = table_of(items)
    stdout_console().print(table, highlight=False, markup=False)
    summary = f"{len(items)} {noun}"
    if cursor:
        summary += f"; more with --all or --cursor {cursor}"
    Console(stderr=True).print(summary, highlight=False, markup=False)
    return EXIT_OK


def collect_pages(fetch, params: dict, follow: bool) -> tuple[list[dict], str | None]:
    """Return the items of one page of a listing (every page with follow) and the cursor after them."""
    items: list[dict] = []
    while True:
        page = fetch(params)
        items.extend(page.get("items", []))
        cursor = page.get("next_cursor")
        if not (follow and cursor):
            return items, cursor
        params["cursor"] = cursor


def new_table(*columns: tuple[str, dict]) -> Table:
    """Return an empty table with these (heading, rich column options) columns."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name, options in columns:
        table.add_column(name, **options)
    return table


def cmd_info(args: argparse.Namespace) -> int:
    """Show files by id: their record, and what the server's content check found."""
    api = logged_in_api(args)
    records = [api.get_file(file_id) for file_id in dict.fromkeys(args.ids)]
    if args.json:
        print_json({"items": records})
        return EXIT_OK
    print("\n\n".join(describe_file(record) for record in records))
    return EXIT_OK


def describe_file(record: dict) -> str:
    """Return a file's record as `field: value` lines for people."""
    inspection = record.get("inspection") if isinstance(record.get("inspection"), dict) else {}
    size = int(record.get("size") or 0)
    lines = [
        ("id", record.get("id")),
        ("name", record.get("file_name")),
        ("folder", record.get("folder")),
        ("size", f"{human_size(size)} ({size} bytes)"),
        ("type", record.get("content_type")),
        ("tier", record.get("tier")),
        ("profile", record.get("profile")),
        ("status", record.get("status")),
        ("created", record.get("created_at")),
        ("tags", ", ".join(record.get("tags") or [])),
        ("title", record.get("title")),
        ("check", inspection_text(record) or ("not checked" if record.get("status") == "complete" else "")),
        ("detected", found_text(inspection)),
        ("preview", inspection.get("thumbnail_url")),
    ]
    return "\n".join(f"{name + ':':<9} {value}" for name, value in lines if value not in (None, ""))


def found_text(inspection: dict) -> str:
    """Return what the content check found out, e.g. "image/png, 1920×1080" or "video/mp4, 12.5 s"."""
    parts = [str(inspection["detected_type"])] if inspection.get("detected_type") else []
    if inspection.get("width") and inspection.get("height"):
        parts.append(f"{inspection['width']}×{inspection['height']}")
    if inspection.get("duration_seconds") is not None:
        parts.append(f"{float(inspection['duration_seconds']):g} s")
    if inspection.get("pages") is not None:
        parts.append(f"{inspection['pages']} pages")
    if inspection.get("entry_count") is not None:
        parts.append(f"{inspection['entry_count']} entries")
    return ", ".join(parts)


def cmd_download(args: argparse.Namespace) -> int:
    """Download files by id into a directory.

    A file that cannot be downloaded yet (still being checked) or at all (refused, not complete)
    does not stop the others: each is reported on its own line, and the exit code is 1.
    """
    api = logged_in_api(args)
    directory = Path(args.output).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    records = [(file_id, api.get_file(file_id)) for file_id in dict.fromkeys(args.ids)]
    total = sum(int(record.get("size") or 0) for _, record in records)
    skipped: list[ClientError] = []
    try:
        with TransferProgress(stderr_console(), total, len(records), label="download") as progress:
            downloader = Downloader(api, directory, progress, retry_policy(args))
            try:
                for file_id, record in records:
                    try:
                        done = downloader.download(file_id, record)
                    except ClientError as error:
                        if error.code not in PER_FILE_ERRORS:
                            raise
                        skipped.append(per_file_error(error, file_id, record))
                        continue
                    progress.log(f"downloaded {file_id} -> {done.path} ({human_size(done.size)})")
            except BaseException:
                downloader.cancel.set()
                raise
    except BaseException:
        report_skipped(skipped)
        raise
    if skipped:
        report_skipped(skipped[:-1])
        raise skipped[-1]
    return EXIT_OK


# Download errors that concern one file only: the others are still downloaded.
PER_FILE_ERRORS = ("not_ready", "invalid_state")


def per_file_error(error: ClientError, file_id: str, record: dict) -> ClientError:
    """Return a skipped download's error, a file still being checked as one sentence naming it."""
    if error.code == "not_ready":
        return ClientError(error.code, not_ready_text(file_id, record), status=error.status)
    return error


def report_skipped(errors: list[ClientError]) -> None:
    """Print one `error:` line per file that was not downloaded."""
    for error in errors:
        print(f"error: {error.code}: {error.message}", file=sys.stderr)


def cmd_rm(args: argparse.Namespace) -> int:
    """Delete files by id (one batch call per max_batch ids)."""
    api = logged_in_api(args)
    ids = list(dict.fromkeys(args.ids))
    failures: list[tuple[str, str, str]] = []
    for group in chunked(ids, batch_size(api.limits())):
        answer = api.delete_files(group)
        for file_id in answer.get("deleted", []):
            print(f"deleted {file_id}")
        for failure in answer.get("failed", []):
            error = failure.get("error")
            code, message = (
                (error.get("code", "error"), error.get("message", "")) if isinstance(error, dict) else ("error", error)
            )
            failures.append((str(failure.get("id")), str(code), str(message)))
    for file_id, code, message in failures[:-1]:
        print(f"error: {code}: {message} ({file_id})", file=sys.stderr)
    if failures:
        file_id, code, message = failures[-1]
        raise ClientError(code, f"{message} ({file_id})")
    return EXIT_OK


def cmd_share(args: argparse.Namespace) -> int:
    """Make a public link to a file and print it (the only time the server shows it)."""
    body: dict = {"expires_in": args.expires, "max_downloads": args.max_downloads}
    if args.password or args.password_stdin:
        body["password"] = read_link_password(args.password_stdin)
    link = logged_in_api(args).create_share(args.id, {k: v for k, v in body.items() if v is not None})
    if args.json:
        print_json(link)
        return EXIT_OK
    print(link.get("url"))
    print(f"share {link.get('id')}: {share_terms(link)}", file=sys.stderr)
    return EXIT_OK


def read_link_password(from_stdin: bool) -> str:
    """Return the password a new link asks for: one line of stdin, or typed twice at a prompt (never argv)."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        try:
            password = getpass.getpass("Password for the link: ")
            if password and getpass.getpass("Again: ") != password:
                raise UsageError("the two passwords differ")
        except EOFError:
            password = ""
    if not password:
        raise UsageError("no password given (type it at the prompt, or pipe it with --password-stdin)")
    return password


def share_terms(link: dict) -> str:
    """Return what a link allows, in words: "expires 2026-12-08T10:00:00Z, 2 of 5 downloads, password"."""
    downloads = link.get("downloads") or 0
    limit = link.get("max_downloads")
    parts = [
        f"expires {link.get('expires_at')}",
        f"{downloads} of {limit} downloads" if limit else f"{downloads} downloads",
    ]
    if link.get("has_password"):
        parts.append("password")
    return ", ".join(parts)


def share_state(link: dict) -> str:
    """Return whether a link still works: active, revoked, expired or used up."""
    if link.get("revoked"):
        return "revoked"
    if str(link.get("expires_at") or "") <= datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"):
        return "expired"
    limit = link.get("max_downloads")
    return "used up" if limit and (link.get("downloads") or 0) >= limit else "active"


def cmd_shares(args: argparse.Namespace) -> int:
    """List one's links as a table (or JSON), following next_cursor with --all."""
    api = logged_in_api(args)
    params = {"file_id": args.file, "limit": args.limit, "cursor": args.cursor}
    return print_listing(args, api.list_shares, params, shares_table, "links")


def shares_table(items: list[dict]) -> Table:
    """Return the table `shares` prints: one row per Share."""
    table = new_table(
        ("ID", {"no_wrap": True}),
        ("FILE", {"no_wrap": True}),
        ("DOWNLOADS", {"justify": "right", "no_wrap": True}),
        ("EXPIRES", {"no_wrap": True}),
        ("PASSWORD", {"no_wrap": True}),
        ("STATE", {"no_wrap": True}),
    )
    for link in items:
        limit = link.get("max_downloads")
        downloads = f"{link.get('downloads') or 0}" + (f"/{limit}" if limit else "")
        password = "yes" if link.get("has_password") else ""
        table.add_row(
            str(link.get("id")),
            str(link.get("file_id")),
            downloads,
            str(link.get("expires_at")),
            password,
            share_state(link),
        )
    return table


def cmd_unshare(args: argparse.Namespace) -> int:
    """Revoke links by id: they stop at once."""
    api = logged_in_api(args)
    failures: list[ClientError] = []
    for share_id in dict.fromkeys(args.ids):
        try:
            api.revoke_share(share_id)
        except ApiError as error:
            if error.code != "not_found":
                raise
            failures.append(ClientError(error.code, f"{error.message} ({share_id})", status=error.status))
            continue
        print(f"revoked {share_id}")
    report_skipped(failures[:-1])
    if failures:
        raise failures[-1]
    return EXIT_OK


def cmd_usage(args: argparse.Namespace) -> int:
    """Show used, reserved and quota bytes."""
    usage = logged_in_api(args).usage()
    if args.json:
        print_json(usage)
        return EXIT_OK
    used, reserved, quota = (int(usage.get(k) or 0) for k in ("used_bytes", "reserved_bytes", "quota_bytes"))
    share = f" ({100 * used / quota:.1f}%)" if quota else ""
    print(
        f"used {human_size(used)} of {human_size(quota)}{share}, reserved {human_size(reserved)}, "
        f"{usage.get('file_count', 0)} files"
    )
    return EXIT_OK


def cmd_profiles(args: argparse.Namespace) -> int:
    """Show the server's upload profiles and the effective limits of each."""
    if args.url:
        api = Api(args.url, policy=retry_policy(args), timeout=args.timeout)
    else:
        try:
            api = logged_in_api(args)
        except ClientError as error:
            if error.code != "not_logged_in":
                raise
            raise UsageError("name the server with --url, or log in first") from None
    limits = api.limits()
    profiles = {name: profile_limits(limits, name) for name in profile_names(limits)}
    if args.json:
        print_json(profiles)
        return EXIT_OK
    stdout_console().print(profiles_table(profiles), highlight=False, markup=False)
    return EXIT_OK


def profiles_table(profiles: dict[str, dict]) -> Table:
    """Return the table `profiles` prints: one row per profile, its effective limits in words."""
    table = new_table(
        ("NAME", {"no_wrap": True}),
        ("DESCRIPTION", {"overflow": "fold"}),
        ("MAX SIZE", {"justify": "right", "no_wrap": True}),
        ("TYPES", {"overflow": "fold"}),
        ("SIDES", {"no_wrap": True}),
        ("SECONDS", {"no_wrap": True}),
    )
    for name, limits in profiles.items():
        size = limits.get("max_file_size")
        table.add_row(
            name,
            str(limits.get("description") or ""),
            human_size(int(size)) if size is not None else "",
            ", ".join(limits.get("allowed_content_types") or []),
            span_text(limits.get("min_image_side"), limits.get("max_image_side"), " px"),
            span_text(limits.get("min_media_seconds"), limits.get("max_media_seconds"), " s"),
        )
    return table


def span_text(low, high, unit: str) -> str:
    """Return a range in words: "100–4096 px", "≤ 180 s", "≥ 1 s", or "" when neither end is set."""

    def number(value) -> str:
        return f"{float(value):g}"

    if low is not None and high is not None:
        return f"{number(low)}–{number(high)}{unit}"
    if high is not None:
        return f"≤ {number(high)}{unit}"
    if low is not None:
        return f"≥ {number(low)}{unit}"
    return ""


# -- parser and entry point -----------------------------------------------------------------


def build_parser() -> Parser:
    """Return the argument parser of every command."""
    parser = Parser(prog="s3drive-client", description="Command-line client of an s3drive server.")
    parser.add_argument("--retries", type=int, default=4, help="retries on network errors and 5xx (default 4)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for an API answer (default 60)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    login = commands.add_parser("login", help="log in and store the tokens")
    login.add_argument("url", help="the server, e.g. http://127.0.0.1:5000")
    login.add_argument("username")
    login.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    login.set_defaults(handler=cmd_login)

    logout = commands.add_parser("logout", help="revoke and forget the stored tokens")
    logout.set_defaults(handler=cmd_logout)

    add_upload_command(commands)

    ls = commands.add_parser("ls", help="list files")
    ls.add_argument("--status", help="complete (default), pending, uploading, rejected, expired, aborted, deleted")
    ls.add_argument("--folder", help="only this folder")
    ls.add_argument("-q", "--query", help="match the name or title")
    ls.add_argument("--tag", help="only files with this tag")
    ls.add_argument("--profile", metavar="NAME", help="only files uploaded with this profile")
    ls.add_argument(
        "--sort", help="created_at, file_name or size; - first for descending: --sort=-size (default -created_at)"
    )
    add_paging_options(ls, "files")
    ls.set_defaults(handler=cmd_ls)

    info = commands.add_parser("info", help="show files by id, with what the server's content check found")
    info.add_argument("ids", nargs="+", metavar="ID")
    info.add_argument("--json", action="store_true", help="print JSON ({items: [File]})")
    info.set_defaults(handler=cmd_info)

    download = commands.add_parser("download", help="download files by id")
    download.add_argument("ids", nargs="+", metavar="ID")
    download.add_argument("-o", "--output", default=".", metavar="DIR", help="directory to write into (default .)")
    download.set_defaults(handler=cmd_download)

    rm = commands.add_parser("rm", help="delete files by id")
    rm.add_argument("ids", nargs="+", metavar="ID")
    rm.set_defaults(handler=cmd_rm)

    add_share_commands(commands)

    usage = commands.add_parser("usage", help="show used bytes and quota")
    usage.add_argument("--json", action="store_true", help="print JSON")
    usage.set_defaults(handler=cmd_usage)

    profiles = commands.add_parser("profiles", help="show the server's upload profiles and their limits")
    profiles.add_argument("--url", help="the server (default: the one logged in to)")
    profiles.add_argument("--json", action="store_true", help="print JSON ({name: effective limits})")
    profiles.set_defaults(handler=cmd_profiles)
    return parser


def add_upload_command(commands) -> None:
    """Add the upload command and its options."""
    upload = commands.add_parser("upload", help="upload files and directories (recursively)")
    upload.add_argument("paths", nargs="+", metavar="PATH")
    upload.add_argument("--folder", help="virtual folder to upload into (directories keep their structure below it)")
    upload.add_argument("--flat", action="store_true", help="put every file straight into --folder")
    upload.add_argument("--tier", choices=TIERS, help="storage tier (default: the server's, standard)")
    upload.add_argument("--tag", action="append", help="tag the files (repeatable)")
    upload.add_argument("--concurrency", type=positive_int, default=4, help="files at once; parts at once (default 4)")
    upload.add_argument("--part-size", type=parse_size, help="multipart part size, e.g. 16M (min 5M)")
    upload.add_argument("--limit-rate", type=parse_size, help="cap upload bandwidth, bytes per second, e.g. 10M")
    upload.add_argument("--profile", metavar="NAME", help="upload profile of the files (see `profiles`)")
    upload.add_argument("--json", action="store_true", help="print the result as JSON")
    upload.set_defaults(handler=cmd_upload)


def add_paging_options(command: argparse.ArgumentParser, noun: str) -> None:
    """Add the options of a listing command: --limit, --cursor, --all, --json."""
    command.add_argument("--limit", type=positive_int, help=f"{noun} per page (default 50, max 1000)")
    command.add_argument("--cursor", help="continue from a next_cursor")
    command.add_argument("--all", action="store_true", help="follow next_cursor to the end")
    command.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_share_commands(commands) -> None:
    """Add the commands of share links: share, shares, unshare."""
    share = commands.add_parser("share", help="make a public link to a file and print it")
    share.add_argument("id", metavar="ID", help="the file's id")
    share.add_argument("--expires", type=parse_duration, help="how long the link works: 3600, 12h, 7d (default 7d)")
    share.add_argument("--max-downloads", type=positive_int, metavar="N", help="downloads the link allows")
    share.add_argument("--password", action="store_true", help="ask visitors for a password (typed at a prompt)")
    share.add_argument("--password-stdin", action="store_true", help="read the link's password from standard input")
    share.add_argument("--json", action="store_true", help="print the Share as JSON")
    share.set_defaults(handler=cmd_share)

    shares = commands.add_parser("shares", help="list your links")
    shares.add_argument("--file", metavar="ID", help="only this file's links")
    add_paging_options(shares, "links")
    shares.set_defaults(handler=cmd_shares)

    unshare = commands.add_parser("unshare", help="revoke links by id")
    unshare.add_argument("ids", nargs="+", metavar="SHARE_ID")
    unshare.set_defaults(handler=cmd_unshare)


def main(argv: list[str] | None = None) -> int:
    """Run the client; return the exit code."""
    try:
        args = build_parser().parse_args(argv)
        if args.retries < 0:
            raise UsageError("--retries must be 0 or more")
        return args.handler(args)
    except UsageError as error:
        print(f"error: usage: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ClientError as error:
        print(f"error: {error.code}: {error.message}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:  # a local file or directory could not be read or written
        print(f"error: local_error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted: stopped by Ctrl-C (run the same upload again to resume)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
