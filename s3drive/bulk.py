"""Bulk INSERT for the presign hot paths: 1,000 rows in one round trip, without per-row ORM work;
on PostgreSQL, in the same statement as the check that lets them in (insert_guarded)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson
from psycopg.errors import ForeignKeyViolation
from psycopg.pq import ConnStatus, TransactionStatus
from sqlalchemy import JSON, Executable, String, Table
from sqlalchemy.exc import DBAPIError

from .extensions import db

# COPY costs two round trips (start, then data and end) where one INSERT costs one: a single Uppy
# form, the other hot path, is one row.
COPY_MIN_ROWS = 20
_MARKERS = {"qmark": "?", "numeric": "?", "format": "%s", "pyformat": "%s"}


def bulk_insert(table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT rows that all have the same keys, inside the session's transaction.

    SQLAlchemy's executemany spends ~10 µs a row building parameters, which is most
    of a 1,000-file batch. PostgreSQL gets COPY for COPY_MIN_ROWS rows and more (half
    the time of executemany); the rest get one executemany of plain tuples, each value passed through
    its column type's own bind processor, processed once when rows share it (the
    batch's timestamps).
    """
    if not rows:
        return
    connection = db.session.connection()
    names = list(rows[0])
    postgres = connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg"
    if postgres and len(rows) >= COPY_MIN_ROWS:
        _copy_rows(connection, table, names, rows)
    else:
        _executemany_rows(connection, table, names, rows)


def _copy_rows(connection, table: Table, names: list[str], rows: list[dict[str, Any]]) -> None:
    quote = connection.dialect.identifier_preparer.quote
    json_columns = {name for name in names if isinstance(table.c[name].type, JSON)}
    statement = f"COPY {quote(table.name)} ({', '.join(quote(n) for n in names)}) FROM STDIN"
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([json.dumps(row[n]) if n in json_columns else row[n] for n in names])


def _executemany_rows(connection, table: Table, names: list[str], rows: list[dict[str, Any]]) -> None:
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    marker = _MARKERS[dialect.paramstyle]
    statement = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
        f"VALUES ({', '.join([marker] * len(names))})"
    )
    params = _driver_values(dialect, table, names, rows)
    connection.exec_driver_sql(statement, params if len(params) > 1 else params[0])


def can_insert_guarded(rows: list[dict[str, Any]]) -> bool:
    """Tell whether insert_guarded takes these rows (PostgreSQL with psycopg; any number of them)."""
    return bool(rows) and _guards_inserts(db.engine)


def insert_guarded(
    table: Table,
    rows: list[dict[str, Any]],
    guard: Executable,
    guard_params: dict[str, Any],
    meanwhile: Callable[[], Any] | None = None,
) -> bool:
    """INSERT rows that all have the same keys if `guard` returns a row, in one statement; True if it did.

    PostgreSQL only (can_insert_guarded): `guard` runs first, as a CTE (an UPDATE ... RETURNING that
    reserves quota, say), and the rows go in only if it returned one. In the session's transaction
    if it has one; else the statement commits on its own (autocommit): one round trip in all, where
    BEGIN, the check, the insert and COMMIT would take four.

    A value every row shares is one parameter; each column whose values differ is one JSON array,
    which the server turns back into rows (ROWS FROM json_array_elements_text ...): encoded and
    parsed in C, where COPY had the client format each row (the most CPU of a 1,000-file batch), and
    the statement's text is the same for any number of rows.

    `meanwhile`, if given, is called once the statement is on its way and before its result is
    awaited (pipeline mode), so that the caller's CPU work and the server's overlap; the statement
    commits when it returns, so the guard's lock is held while it runs. It is called only on the
    autocommit path; the caller tells by its having run.
    """
    statement, guard_names, values = _insert(db.engine.dialect, table, rows, guard)
    # Positional parameters: the driver maps names to positions on every call otherwise.
    params = [guard_params[name] for name in guard_names]
    params.extend(values)
    if session_in_transaction():
        inserted = db.session.connection().exec_driver_sql(statement, tuple(params)).rowcount
    else:
        inserted = autocommit_statement(statement, tuple(params), meanwhile)
    return inserted == len(rows)


def autocommit_statement(statement: str, params: tuple, meanwhile: Callable[[], Any] | None = None) -> int:
    """Run one statement on a pooled connection, committed on its own; return its row count.

    With `meanwhile`, the statement is sent in pipeline mode, in a transaction, and `meanwhile()` runs
    before its result is awaited: the server works while the caller does. It commits after
    `meanwhile()` returns; if that raises, nothing of the statement is kept.
    """
    with driver_connection(statement) as driver, _transaction_sent_as_statements(driver) as control:
        with driver.cursor() as cursor:
            if meanwhile is None:
                cursor.execute(statement, params)
                return cursor.rowcount
            with driver.pipeline():
                # BEGIN/COMMIT queued with the statement: one wait, and nothing kept if meanwhile fails.
                control.execute("BEGIN")
                cursor.execute(statement, params)  # sent: the server starts on it
                try:
                    meanwhile()
                except BaseException:
                    control.execute("ROLLBACK")
                    raise
                control.execute("COMMIT")
            return cursor.rowcount


def can_insert_streamed() -> bool:
    """Tell whether insert_then_guard can run: PostgreSQL with psycopg, outside a session transaction."""
    return _guards_inserts(db.engine) and not session_in_transaction()


def insert_then_guard(
    table: Table,
    chunks: Iterable[list[dict[str, Any]]],
    guard: Callable[[], tuple[Executable, dict[str, Any]]],
    meanwhile: Callable[[], Any] | None = None,
) -> bool:
    """INSERT each chunk of rows as it comes, then run the guard; commit if it returned a row, else
    roll back and return False.

    One transaction on a pooled connection, in pipeline mode: each statement is sent as soon as it
    is made and none is waited for, so the server inserts a chunk while the caller makes the next
    (a 1,000-file batch: validation, ids and keys). `guard()` is called once the chunks are done
    (what it checks may depend on all of them) and returns an Executable with its parameters (an
    UPDATE ... RETURNING that reserves quota, say); then `meanwhile()` runs, then one wait for all
    the results, then COMMIT (or ROLLBACK): the guard's lock is held from the guard to the commit.
    Nothing is kept if anything fails on the way. PostgreSQL only (can_insert_streamed).
    """
    dialect = db.engine.dialect
    with driver_connection("INSERT ... then the guard") as driver, _transaction_sent_as_statements(driver) as control:
        with driver.cursor() as cursor:
            try:
                _send_chunks_then_guard(driver, control, cursor, dialect, table, chunks, guard, meanwhile)
            except ForeignKeyViolation:
                return False  # the rows' user is gone (rolled back on the way out): the caller's ledger says so
            # The pipeline's end: one Sync, one wait for every result (the guard's comes last).
            passed = cursor.fetchone() is not None
        control.execute("COMMIT" if passed else "ROLLBACK")
    return passed


def _send_chunks_then_guard(driver, control, cursor, dialect, table, chunks, guard, meanwhile) -> None:
    """Queue BEGIN, an INSERT per chunk and the guard in pipeline mode, run `meanwhile`, then wait once."""
    with driver.pipeline():
        control.execute("BEGIN")
        for rows in chunks:
            if rows:
                statement, _, values = _insert(dialect, table, rows, None)
                cursor.execute(statement, values)
        statement, params = guard()
        sql, names = _compiled(statement, dialect)
        cursor.execute(sql, [params[name] for name in names])
        if meanwhile is not None:
            meanwhile()


@contextmanager
def _transaction_sent_as_statements(driver) -> Iterator[Any]:
    """Yield a cursor for BEGIN/COMMIT/ROLLBACK on the driver's connection in autocommit mode.

    In pipeline mode psycopg's own BEGIN waits for a Sync before the first statement; sent as a
    statement it is queued like the others. Whatever leaves a transaction open (an error, the
    caller's) is rolled back here, and the connection goes back to the pool as the pool expects.
    """
    driver.autocommit = True
    try:
        with driver.cursor() as control:
            yield control
    finally:
        if driver.info.status == ConnStatus.OK:  # else it is dead: the pool drops it (driver_connection)
            if driver.info.transaction_status != TransactionStatus.IDLE:
                driver.rollback()
            driver.autocommit = False


@contextmanager
def driver_connection(what: str) -> Iterator[Any]:
    """Yield the driver's connection of a pooled connection, given back to the pool after.

    Without SQLAlchemy's Connection (whose setup, isolation level and teardown cost a fifth of an
    Uppy form in process), so SQLAlchemy's statement events do not see what runs on it; pool events
    do (the liveness check), and the pool's reset rolls back what was left open. The driver's errors
    become SQLAlchemy's, as the Connection would raise them (a dead database is a 503), and a dead
    connection leaves the pool.
    """
    engine = db.engine
    dbapi_error = engine.dialect.loaded_dbapi.Error
    pooled = engine.raw_connection()
    try:
        yield pooled.driver_connection
    except dbapi_error as error:
        invalidated = engine.dialect.is_disconnect(error, pooled.dbapi_connection, None)
        if invalidated:
            pooled.invalidate(error)
        raise DBAPIError.instance(
            what, None, error, dbapi_error, connection_invalidated=invalidated, dialect=engine.dialect
        ) from error
    finally:
        pooled.close()


def session_in_transaction() -> bool:
    """Tell whether the request's session has a transaction open (without creating a session to ask)."""
    return db.session.registry.has() and db.session().in_transaction()


def _guards_inserts(engine) -> bool:
    return engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"


def _insert(dialect, table: Table, rows: list[dict[str, Any]], guard: Executable | None) -> tuple[str, tuple, list]:
    """Return the INSERT of rows (guarded by `guard`, if any), the guard's parameter names, and the
    rows' parameters: a value every row shares is one parameter, a column whose values differ one
    JSON array."""
    names = tuple(rows[0])
    # Column-wise, in C: each column's values, then which of them are one value throughout (of one
    # type: 1 == True). Several rows always read from the arrays, so that n rows are n rows.
    columns = (
        list(zip(*map(itemgetter(*names), rows), strict=True)) if len(names) > 1 else [[row[names[0]] for row in rows]]
    )
    count = len(rows)
    shared = tuple(
        column.count(column[0]) == count and (count == 1 or len(set(map(type, column))) == 1) for column in columns
    )
    if count > 1 and all(shared):
        shared = (False, *shared[1:])
    statement, guard_names = _insert_statement(dialect, table, names, shared, guard)
    processors = dict(_processors(dialect, table, names))
    values = []
    for i, column in enumerate(columns):
        if shared[i]:
            value = column[0]
            processor = processors.get(i)
            values.append(processor(value) if processor is not None and value is not None else value)
    # The others: one JSON array per column (encoded in C), zipped back into rows by the server.
    values.extend(
        orjson.dumps(column, option=orjson.OPT_NAIVE_UTC).decode()
        for column, same in zip(columns, shared, strict=True)
        if not same
    )
    return statement, guard_names, values


@lru_cache(maxsize=256)  # building it costs more than running it
def _insert_statement(
    dialect, table: Table, names: tuple[str, ...], shared: tuple[bool, ...], guard: Executable | None
) -> tuple[str, tuple[str, ...]]:
    """Return `[WITH guard AS (...)] INSERT ... SELECT <shared values, the rows' columns> [WHERE EXISTS (guard)]`
    and the guard's parameter names in order.

    Parameters, in order: the guard's, one per shared column, then a JSON array per column that
    differs (if any), zipped into rows by ROWS FROM. Each value is cast to its column's type, but
    text to TEXT: a cast to VARCHAR(n) would cut what the INSERT must refuse.
    """
    quote = dialect.identifier_preparer.quote
    selected, arrays, aliases = [], [], []
    for name, same in zip(names, shared, strict=True):
        type_ = table.c[name].type
        cast = "TEXT" if isinstance(type_, String) else type_.compile(dialect=dialect)
        if same:
            selected.append(f"CAST(%s AS {cast})")
            continue
        aliases.append(f"c{len(aliases)}")
        alias = f"new_rows.{aliases[-1]}"
        if isinstance(type_, JSON):
            # JSON values stay JSON; a None in the list (JSON null) is SQL NULL, as a shared None is.
            arrays.append("json_array_elements(CAST(%s AS JSON))")
            selected.append(f"CASE WHEN json_typeof({alias}) = 'null' THEN NULL ELSE {alias} END")
        else:
            # The others come out as text, like a literal's (a None as NULL).
            arrays.append("json_array_elements_text(CAST(%s AS JSON))")
            selected.append(f"CAST({alias} AS {cast})")
    source = f" FROM ROWS FROM ({', '.join(arrays)}) AS new_rows({', '.join(aliases)})" if arrays else ""
    statement = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) SELECT {', '.join(selected)}{source}"
    )
    if guard is None:
        return statement, ()
    compiled, guard_names = _compiled(guard, dialect)
    return f"WITH guard AS ({compiled}) {statement} WHERE EXISTS (SELECT FROM guard)", guard_names


@lru_cache(maxsize=64)
def _compiled(statement: Executable, dialect) -> tuple[str, tuple[str, ...]]:
    """Return a Core statement's SQL for the driver (positional %s) and its parameter names in order."""
    compiled = statement.compile(dialect=type(dialect)(paramstyle="format"))
    return str(compiled), tuple(compiled.positiontup)


def _driver_values(dialect, table: Table, names: list[str], rows: list[dict[str, Any]]) -> list[tuple]:
    """Return each row's values in `names` order, as the driver takes them (bind processors applied)."""
    # Most columns need no processing: take them all in C, then fix up the few that do.
    take = itemgetter(*names)
    processors = _processors(dialect, table, tuple(names))
    memo: dict[int, tuple[Any, Any]] = {}
    params = []
    for row in rows:
        values = list(take(row))
        for i, processor in processors:
            value = values[i]
            if value is not None:
                seen = memo.get(i)
                if seen is None or seen[0] is not value:
                    seen = memo[i] = (value, processor(value))
                values[i] = seen[1]
        params.append(tuple(values))
    return params


@lru_cache(maxsize=64)
def _processors(dialect, table: Table, names: tuple[str, ...]) -> list[tuple[int, Any]]:
    """Return (position, bind processor) of the columns whose values the driver cannot take as they are."""
    return [
        (i, processor)
        for i, name in enumerate(names)
        if (processor := table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) is not None
    ]
