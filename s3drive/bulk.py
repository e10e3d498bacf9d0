"""Bulk INSERT for the presign hot paths: 1,000 rows in one round trip, without per-row ORM work;
on PostgreSQL, in the same statement as the check that lets them in (insert_guarded)."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import JSON, Executable, Table
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

    A value every row shares is one parameter; the columns that differ travel as one JSON document
    (json_to_recordset): the server parses it in C, where COPY had the client format each row
    (the most CPU of a 1,000-file batch), and the statement's text is the same for any number of rows.

    `meanwhile`, if given, is called once the statement is on its way and before its result is
    awaited (pipeline mode), so that the caller's CPU work and the server's overlap; the statement
    commits when it returns, so the guard's lock is held while it runs. It is called only on the
    autocommit path; the caller tells by its having run.
    """
    names = list(rows[0])
    dialect = db.engine.dialect
    # Column-wise, in C: each column's values, then which of them are one value throughout.
    columns = list(zip(*map(itemgetter(*names), rows), strict=True))
    count = len(rows)
    shared = tuple(column.count(column[0]) == count for column in columns)
    key = (table.name, tuple(names), shared, guard)
    prepared = _GUARDED.get(key)
    if prepared is None:
        prepared = _GUARDED[key] = _guarded_statement(dialect, table, names, shared, guard)
    statement, guard_names = prepared
    # Positional parameters: the driver maps names to positions on every call otherwise.
    params = [guard_params[name] for name in guard_names]
    processors = dict(_processors(dialect, table, tuple(names)))
    varying: list[str] = []
    for i, (name, column) in enumerate(zip(names, columns, strict=True)):
        if shared[i]:
            value = column[0]
            processor = processors.get(i)
            params.append(processor(value) if processor is not None and value is not None else value)
        else:
            varying.append(name)
    if varying:
        picked = [columns[i] for i, same in enumerate(shared) if not same]
        document = [dict(zip(varying, values, strict=True)) for values in zip(*picked, strict=True)]
        params.append(orjson.dumps(document, option=orjson.OPT_NAIVE_UTC).decode())
    if session_in_transaction():
        inserted = db.session.connection().exec_driver_sql(statement, tuple(params)).rowcount
    else:
        inserted = autocommit_statement(statement, tuple(params), meanwhile)
    return inserted == count


def autocommit_statement(statement: str, params: tuple, meanwhile: Callable[[], Any] | None = None) -> int:
    """Run one statement on a pooled connection, committed on its own; return its row count.

    With `meanwhile`, the statement is sent in pipeline mode and `meanwhile()` runs before its result
    is awaited (and before it commits): the server works while the caller does.

    On the driver's connection, without SQLAlchemy's Connection (whose setup, isolation level and
    teardown cost a fifth of an Uppy form in process), so SQLAlchemy's statement events do not see
    it; pool events do (the liveness check). The driver's errors become SQLAlchemy's, as the
    Connection would raise them (a dead database is a 503), and a dead connection leaves the pool.
    """
    engine = db.engine
    dbapi_error = engine.dialect.loaded_dbapi.Error
    pooled = engine.raw_connection()
    try:
        driver = pooled.driver_connection
        driver.autocommit = True
        try:
            with driver.cursor() as cursor:
                if meanwhile is None:
                    cursor.execute(statement, params)
                else:
                    with driver.pipeline() as pipeline:
                        cursor.execute(statement, params)  # sent: the server starts on it
                        meanwhile()
                        pipeline.sync()
                return cursor.rowcount
        finally:
            if not driver.closed:
                driver.autocommit = False
    except dbapi_error as error:
        invalidated = engine.dialect.is_disconnect(error, pooled.dbapi_connection, None)
        if invalidated:
            pooled.invalidate(error)
        raise DBAPIError.instance(
            statement, params, error, dbapi_error, connection_invalidated=invalidated, dialect=engine.dialect
        ) from error
    finally:
        pooled.close()


def session_in_transaction() -> bool:
    """Tell whether the request's session has a transaction open (without creating a session to ask)."""
    return db.session.registry.has() and db.session().in_transaction()


def _guards_inserts(engine) -> bool:
    return engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"


# (table, columns, which columns all rows share, guard) -> (SQL, the guard's parameter names in
# order): building it costs more than running it.
_GUARDED: dict[tuple, tuple[str, list[str]]] = {}


def _guarded_statement(
    dialect, table: Table, names: list[str], shared: tuple[bool, ...], guard: Executable
) -> tuple[str, list[str]]:
    """Return `WITH guard AS (...) INSERT ... SELECT <shared values, the rows' columns> WHERE EXISTS (guard)`.

    Parameters, in order: the guard's, one per shared column, then the JSON document of the columns
    that differ (json_to_recordset, typed as the table's columns), if any.
    """
    quote = dialect.identifier_preparer.quote
    types = {name: table.c[name].type.compile(dialect=dialect) for name in names}
    # A parameter has no column to take a type from: each is cast to its column's.
    pairs = list(zip(names, shared, strict=True))
    selected = [f"CAST(%s AS {types[name]})" if same else f"new_rows.{quote(name)}" for name, same in pairs]
    varying = [f"{quote(name)} {types[name]}" for name, same in pairs if not same]
    source = f" FROM json_to_recordset(CAST(%s AS JSON)) AS new_rows({', '.join(varying)})" if varying else ""
    compiled = guard.compile(dialect=type(dialect)(paramstyle="format"))
    statement = (
        f"WITH guard AS ({compiled}) "
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
        f"SELECT {', '.join(selected)}{source} WHERE EXISTS (SELECT FROM guard)"
    )
    return statement, list(compiled.positiontup)


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
