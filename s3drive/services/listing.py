"""Listing a user's files: filters, the folder tree, and keyset cursors that survive writes."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Text, bindparam, cast, event, exists, func, or_, select, text, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine, Result

from ..cursors import checked_text, checked_time, decode_cursor, encode_cursor, invalid_cursor
from ..errors import ValidationFailed
from ..extensions import db
from ..models import File, FileStatus
from ..policy import normalize_folder, normalize_tags
from .folders import made_subfolders
from .inspection import inspection_view

SORT_COLUMNS = {"created_at": File.created_at, "file_name": File.file_name, "size": File.size}
SORTS = tuple(f"{sign}{name}" for name in SORT_COLUMNS for sign in ("", "-"))
DEFAULT_SORT = "-created_at"
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_QUERY_LENGTH = 200

# The columns a listing returns: everything in the File shape, nothing else (no ORM objects:
# loading 1,000 of them costs more than the query). Tags come as JSON text, decoded for the
# whole page in one json.loads: 1,000 separate decodes cost ~2.5 ms, one costs ~0.2 ms.
LISTED_COLUMNS = (
    File.id,
    File.file_name,
    File.s3_key,
    File.content_type,
    File.size,
    File.checksum_sha256,
    File.tier,
    File.title,
    File.description,
    cast(File.tags, Text).label("tags"),
    File.folder,
    File.profile,
    File.status,
    File.created_at,
    File.confirmed_at,
    File.etag,
    File.inspection_state,
    cast(File.inspection, Text).label("inspection"),
    File.thumbnail_key,
)

_MAX_BIGINT = 2**63 - 1


@dataclass
class Page:
    # One dict per file: the columns of LISTED_COLUMNS, tags as a list.
    items: list[dict[str, Any]]
    next_cursor: str | None
    # Names of the folders directly under the listed folder; None when no folder was asked for.
    folders: list[str] | None


@event.listens_for(Engine, "connect")
def _sqlite_unicode_lower(dbapi_connection, connection_record):
    """Give SQLite a lower() that folds all of Unicode, as PostgreSQL's does (SQLite's folds ASCII only)."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        dbapi_connection.create_function("unicode_lower", 1, _lower_or_none, deterministic=True)


def _lower_or_none(value: str | None) -> str | None:
    return value.lower() if isinstance(value, str) else value


def list_files(
    user_id: str,
    *,
    status: str = FileStatus.COMPLETE,
    folder: str | None = None,
    q: str | None = None,
    tag: str | None = None,
    profile: str | None = None,
    sort: str = DEFAULT_SORT,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page:
    """Return one page of the user's files, newest first by default, and the cursor of the next.

    The arguments are valid already (FileListQuerySchema); folder, search text and tag are normalized here.
    """
    folder = None if folder is None else normalize_folder(folder)
    dialect = db.session.get_bind().dialect.name
    descending, key_name = sort.startswith("-"), sort.lstrip("-")
    key_column = SORT_COLUMNS[key_name]

    statement = select(*LISTED_COLUMNS).where(*file_filters(user_id, status, folder, q, tag, dialect))
    if profile is not None:
        # Inlined, as the status is: ix_files_listing_profile (WHERE profile <> 'default') serves
        # only a plan that can prove the profile is not 'default', which a generic plan cannot.
        statement = statement.where(File.profile == bindparam("profile", profile, literal_execute=True))
    if cursor:
        after = tuple_(key_column, File.id)
        position = decode_listing_cursor(cursor, sort, user_id)
        statement = statement.where(after < position if descending else after > position)
    order = (key_column.desc(), File.id.desc()) if descending else (key_column.asc(), File.id.asc())
    items = rows_as_dicts(db.session.execute(statement.order_by(*order).limit(limit + 1)))

    next_cursor = None
    if len(items) > limit:
        del items[limit:]
        last = items[-1]
        next_cursor = encode_listing_cursor(sort, last[key_name], last["id"], user_id)
    folders = None
    if folder is not None:
        folders = subfolders(user_id, status, folder, dialect)
        if status == FileStatus.COMPLETE:  # the drive's view also shows the folders the user made
            folders = sorted(made_subfolders(user_id, folder).union(folders))
    return Page(items=items, next_cursor=next_cursor, folders=folders)


def rows_as_dicts(result: Result) -> list[dict[str, Any]]:
    """Return the rows of a LISTED_COLUMNS query as dicts, with tags decoded to lists."""
    keys = list(result.keys())
    # zip() and dict() run in C; RowMapping access costs ~5 µs a row more.
    items = [dict(zip(keys, row, strict=True)) for row in result]
    tag_lists = json.loads("[" + ",".join(item["tags"] for item in items) + "]")
    found = json.loads("[" + ",".join(item["inspection"] or "null" for item in items) + "]")
    for item, tags, inspection in zip(items, tag_lists, found, strict=True):
        item["tags"] = tags
        item["inspection"] = inspection_view(
            item["inspection_state"], inspection, item.pop("thumbnail_key"), item["status"]
        )
        del item["inspection_state"]
    return items


def file_filters(user_id: str, status: str, folder: str | None, q: str | None, tag: str | None, dialect: str) -> list:
    """Return the WHERE conditions for the owner, status, folder, search text and tag."""
    # The status is inlined (one of seven values): the planner may then use the partial
    # indexes on status = 'complete', also in a prepared statement's generic plan.
    conditions = [File.user_id == user_id, File.status == bindparam("status", status, literal_execute=True)]
    if folder is not None:
        conditions.append(File.folder == folder)
    search = _normalized_query(q)
    if search:
        # Inlined, not a bound parameter: a generic plan of the prepared statement would not
        # know whether the word is rare (read the trigram index) or common (walk the sort
        # index), and guessing wrong costs 100x. A distinct word gets a plan of its own.
        pattern = bindparam("q_pattern", "%" + _escape_like(search) + "%", literal_execute=True)
        lower = func.unicode_lower if dialect == "sqlite" else func.lower
        conditions.append(
            or_(lower(File.file_name).like(pattern, escape="\\"), lower(File.title).like(pattern, escape="\\"))
        )
    wanted = _normalized_tag(tag)
    if wanted:
        conditions.append(has_tag(wanted, dialect))
    return conditions


def has_tag(tag: str, dialect: str):
    """Return a condition true when the file's tag list holds exactly `tag`."""
    if dialect == "postgresql":
        # jsonb containment compares whole array elements: "a" never matches "ab". The tag is
        # inlined, as `q` is: a generic plan would not know a rare tag (read ix_files_tags_gin)
        # from a common one (walk the sort index and filter).
        wanted = cast(bindparam("tag_json", json.dumps([tag]), literal_execute=True), JSONB)
        return cast(File.tags, JSONB).op("@>", is_comparison=True)(wanted)
    if dialect == "sqlite":
        element = func.json_each(File.tags).table_valued("value", joins_implicitly=True)
        return exists().where(element.c.value == tag)
    # Other databases: match the element as it is serialized, quotes included.
    quoted = json.dumps(tag)
    return File.tags.cast(db.String).like("%" + _escape_like(quoted) + "%", escape="\\")


def subfolders(user_id: str, status: str, folder: str, dialect: str) -> list[str]:
    """Return the sorted names of the folders directly under `folder` that hold files of this status."""
    prefix = folder + "/" if folder else ""
    sql = _SUBFOLDER_WALK_SQL.get(dialect) if status == FileStatus.COMPLETE else None
    if sql is not None:
        params = {"user_id": user_id, "prefix": prefix, "skip": len(prefix) + 1}
        params.update(prefix_end=prefix[:-1] + "0", max_steps=_MAX_WALK_STEPS)
        paths = db.session.scalars(text(sql[bool(prefix)]), params).all()
        if len(paths) < _MAX_WALK_STEPS:
            return _child_names(prefix, paths)
    # Other statuses (no folder index; few rows), thousands of subfolders, or an unknown
    # database: one pass over the user's rows of that status.
    statement = select(File.folder).distinct().where(File.user_id == user_id, File.status == status)
    if prefix:
        statement = statement.where(func.substr(File.folder, 1, len(prefix)) == prefix)
    else:
        statement = statement.where(File.folder != "")
    return _child_names(prefix, db.session.scalars(statement))


def _child_names(prefix: str, paths) -> list[str]:
    return sorted({path[len(prefix) :].split("/", 1)[0] for path in paths})


# The subfolders of P, read from the folder index (complete files) by a "loose index scan":
# each step finds the next folder path under P in byte order, then jumps past the whole
# subtree of the child it lies in (P/S/... spans [P/S/, P/S0) since '0' follows '/'), so a
# folder with 10 children costs ~20 index probes whatever the number of files. Byte order is
# what PostgreSQL's pattern operators (~<~, served by varchar_pattern_ops) and SQLite's BINARY use.
_MAX_WALK_STEPS = 2000
_WALK = """
WITH RECURSIVE walk(folder, step) AS (
    SELECT ({probe} AND f.folder {gt} :prefix {order} LIMIT 1), 1
    UNION ALL
    SELECT ({probe} AND f.folder {ge} (
                CASE WHEN {find}(substr(walk.folder, :skip), '/') > 0
                THEN :prefix || substr(walk.folder, :skip, {find}(substr(walk.folder, :skip), '/') - 1) || '0'
                ELSE walk.folder || {chr}(1) END) {order} LIMIT 1),
           walk.step + 1
    FROM walk WHERE walk.folder IS NOT NULL AND walk.step < :max_steps
)
SELECT folder FROM walk WHERE folder IS NOT NULL
"""


def _walk_sql(dialect: str, under_prefix: bool) -> str:
    if dialect == "postgresql":
        words = {"lt": "~<~", "gt": "~>~", "ge": "~>=~", "order": "ORDER BY f.folder USING ~<~", "find": "strpos"}
        words["chr"] = "chr"
    else:
        words = {"lt": "<", "gt": ">", "ge": ">=", "order": "ORDER BY f.folder", "find": "instr", "chr": "char"}
    # A range, not LIKE: it stays an index bound in a generic plan of the prepared statement.
    in_prefix = " AND f.folder {lt} :prefix_end" if under_prefix else ""
    probe = "SELECT f.folder FROM files f WHERE f.user_id = :user_id AND f.status = 'complete'" + in_prefix
    return _WALK.replace("{probe}", probe).format(**words)


_SUBFOLDER_WALK_SQL = {
    dialect: (_walk_sql(dialect, False), _walk_sql(dialect, True)) for dialect in ("postgresql", "sqlite")
}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _normalized_query(q: str | None) -> str:
    if not q:
        return ""
    # Names are stored NFC (policy.sanitize_file_name); fold the query the same way.
    return unicodedata.normalize("NFC", q).strip().lower()


def _normalized_tag(tag: str | None) -> str:
    if not tag:
        return ""
    try:
        tags = normalize_tags([tag])
    except ValidationFailed as error:
        raise ValidationFailed(error.message, field="tag") from None
    return tags[0] if tags else ""


# -- cursors ----------------------------------------------------------------------------
# A listing cursor holds [sort, key, id] of the page's last row, scoped to the user.


def cursor_scope(user_id: str) -> str:
    """Return the scope of a user's listing cursors (another user's cursor fails the MAC)."""
    return f"listing\0{user_id}"


def encode_listing_cursor(sort: str, key: Any, file_id: str, user_id: str) -> str:
    """Return the opaque cursor that resumes the user's listing after the row (key, id)."""
    if isinstance(key, datetime):
        key = key.astimezone(UTC).isoformat()
    return encode_cursor([sort, key, file_id], cursor_scope(user_id))


def decode_listing_cursor(cursor: str, sort: str, user_id: str) -> tuple[Any, str]:
    """Return the (key, id) a cursor resumes after; raise validation_error unless we made it for this user and sort."""
    cursor_sort, key, file_id = decode_cursor(cursor, cursor_scope(user_id), 3)
    if cursor_sort != sort:
        raise ValidationFailed(
            "The cursor belongs to another sort order.", details={"cursor": [f"Made for sort={cursor_sort}."]}
        )
    return _checked_key(sort.lstrip("-"), key), checked_text(file_id, 64)


def _checked_key(name: str, key: Any) -> Any:
    # Only reachable with a validly signed cursor, i.e. one we made; checked all the same.
    if name == "created_at":
        return checked_time(key)
    if name == "size":
        if type(key) is not int or not 0 <= key <= _MAX_BIGINT:
            raise invalid_cursor("Bad size.")
        return key
    return checked_text(key, 1024)
