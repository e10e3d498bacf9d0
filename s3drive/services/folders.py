"""Folders: made by the user (kept while empty), renamed or moved with all they hold, deleted when
empty; and files moved between folders.

A folder is a path on files (files.folder, e.g. 'photos/2026'); a `folders` row keeps one the
user made before anything was put in it. Moving never touches S3: keys do not contain folders.
Only live records move (pending, uploading, complete: files.EDITABLE_STATUSES); history
(deleted, rejected, expired ...) stays where it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import AppError, Conflict, InvalidState, NotFound, ValidationFailed
from ..extensions import db
from ..models import File, Folder
from ..policy import MAX_FOLDER_LENGTH, folder_too_long, normalize_folder
from .files import EDITABLE_STATUSES
from .quota import chunked


@dataclass
class FolderChange:
    """A folder after a create or a move, and how many files moved with it."""

    path: str
    created: bool = False
    files_moved: int = 0


@dataclass
class MoveOutcome:
    """What a move of files did: ids now in the folder, and (id, error) for the rest."""

    folder: str
    moved: list[str] = field(default_factory=list)
    failed: list[tuple[str, AppError]] = field(default_factory=list)


def create_folder(user_id: str, raw_path: str) -> FolderChange:
    """Make an empty folder (and so its parents, as listed); a folder that exists already is kept."""
    path = folder_path(raw_path, "path")
    if folder_exists(user_id, path):
        return FolderChange(path)
    db.session.add(Folder(user_id=user_id, path=path))
    try:
        db.session.commit()
    except IntegrityError:  # made meanwhile by a concurrent request: the same outcome
        db.session.rollback()
        return FolderChange(path)
    return FolderChange(path, created=True)


def move_folder(user_id: str, raw_path: str, raw_new_path: str) -> FolderChange:
    """Rename or move a folder with its subfolders and live files; into an existing folder, merge."""
    path, new_path = folder_path(raw_path, "path"), folder_path(raw_new_path, "new_path")
    if not folder_exists(user_id, path):
        raise NotFound("No such folder.")
    if new_path == path:
        return FolderChange(path)
    if new_path.startswith(path + "/"):
        raise ValidationFailed("A folder cannot move into itself.", field="new_path")
    _check_moved_lengths(user_id, path, new_path)
    renamed = literal(new_path) + func.substr(File.folder, len(path) + 1)
    moved = db.session.execute(
        update(File)
        .where(File.user_id == user_id, File.status.in_(EDITABLE_STATUSES), _under(File.folder, path))
        .values(folder=renamed)
        .execution_options(synchronize_session=False)
    ).rowcount
    try:
        _move_folder_rows(user_id, path, new_path)
        db.session.commit()
    except IntegrityError:  # a folder made meanwhile where one moves to: nothing moved, say so
        db.session.rollback()
        raise Conflict("The folders changed while this one was moving; try again.") from None
    return FolderChange(new_path, files_moved=moved)


def delete_folder(user_id: str, raw_path: str) -> str:
    """Remove an empty folder and its empty subfolders; conflict if it holds live files."""
    path = folder_path(raw_path, "path")
    if not folder_exists(user_id, path):
        raise NotFound("No such folder.")
    held = db.session.scalar(select(func.count()).where(*_live_files_under(user_id, path)))
    if held:
        raise Conflict(
            f"The folder holds {held} file{'s' if held != 1 else ''}: delete or move them first.",
            details={"file_count": held},
        )
    db.session.execute(delete(Folder).where(Folder.user_id == user_id, _under(Folder.path, path)))
    db.session.commit()
    return path


def move_files(user_id: str, ids: list[str], raw_folder: str | None) -> MoveOutcome:
    """Put files in a folder ('' or None: the top); each id is moved or failed with its error."""
    outcome = MoveOutcome(normalize_folder(raw_folder))
    wanted = list(dict.fromkeys(ids))
    statuses: dict[str, str] = {}
    for chunk in chunked(wanted):
        rows = db.session.execute(select(File.id, File.status).where(File.user_id == user_id, File.id.in_(chunk)))
        statuses.update((row.id, row.status) for row in rows)
    movable = [file_id for file_id in wanted if statuses.get(file_id) in EDITABLE_STATUSES]
    moved: set[str] = set()
    for chunk in chunked(movable):
        # The status is checked again by the UPDATE itself: a delete that started meanwhile wins.
        statement = (
            update(File)
            .where(File.user_id == user_id, File.id.in_(chunk), File.status.in_(EDITABLE_STATUSES))
            .values(folder=outcome.folder)
            .returning(File.id)
        )
        moved.update(db.session.scalars(statement))
    db.session.commit()
    for file_id in wanted:
        if file_id in moved:
            outcome.moved.append(file_id)
        elif file_id not in statuses:
            outcome.failed.append((file_id, NotFound("No such file.")))
        else:
            outcome.failed.append((file_id, InvalidState("The file can no longer be changed.")))
    return outcome


def made_subfolders(user_id: str, folder: str) -> set[str]:
    """Return the names of the folders directly under `folder` that the user made (empty or not)."""
    prefix = folder + "/" if folder else ""
    statement = select(Folder.path).where(Folder.user_id == user_id)
    if prefix:
        statement = statement.where(Folder.path.startswith(prefix, autoescape=True))
    return {path[len(prefix) :].split("/", 1)[0] for path in db.session.scalars(statement)}


# -- helpers ---------------------------------------------------------------------------------


def folder_path(raw: str, name: str) -> str:
    """Return the normalized folder path; the top level is not a folder one can name here."""
    path = normalize_folder(raw)
    if not path:
        raise ValidationFailed("Give a folder path, such as photos/2026.", field=name)
    return path


def folder_exists(user_id: str, path: str) -> bool:
    """Tell whether the user made the folder or any folder under it, or has live files in it."""
    made = select(Folder.id).where(Folder.user_id == user_id, _under(Folder.path, path)).limit(1)
    if db.session.scalar(made) is not None:
        return True
    return db.session.scalar(select(File.id).where(*_live_files_under(user_id, path)).limit(1)) is not None


def _under(column, path: str):
    """The folder itself or any folder below it (LIKE wildcards in names are escaped)."""
    return or_(column == path, column.startswith(path + "/", autoescape=True))


def _live_files_under(user_id: str, path: str) -> list:
    return [File.user_id == user_id, File.status.in_(EDITABLE_STATUSES), _under(File.folder, path)]


def _check_moved_lengths(user_id: str, path: str, new_path: str) -> None:
    """Refuse a move that would make some folder path longer than the limit (policy.folder_too_long)."""
    made = select(Folder.path).where(Folder.user_id == user_id, _under(Folder.path, path))
    held = select(File.folder).where(*_live_files_under(user_id, path)).distinct()
    for old in {*db.session.scalars(made), *db.session.scalars(held)}:
        if folder_too_long(new_path + old[len(path) :]):
            raise ValidationFailed(
                f"Folder paths inside would be longer than {MAX_FOLDER_LENGTH} bytes (UTF-8).", field="new_path"
            )


def _move_folder_rows(user_id: str, path: str, new_path: str) -> None:
    """Move the made folders under path to new_path, merging with those that exist there already."""
    rows = db.session.scalars(select(Folder).where(Folder.user_id == user_id, _under(Folder.path, path))).all()
    if not rows:
        return
    targets = {new_path + row.path[len(path) :] for row in rows}
    moving = {row.path for row in rows}
    # A target may be one of the moving rows itself ('a/b/b' -> 'a/b' when 'a/b' moves to 'a'): it is
    # deleted below, so it does not count as present.
    present = (
        set(db.session.scalars(select(Folder.path).where(Folder.user_id == user_id, Folder.path.in_(list(targets)))))
        - moving
    )
    db.session.execute(delete(Folder).where(Folder.id.in_([row.id for row in rows])))
    db.session.add_all(Folder(user_id=user_id, path=target) for target in sorted(targets - present))
    db.session.flush()
