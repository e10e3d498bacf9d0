"""What the server's content check says about a file, in words (the same words as the page's lib/inspection.js).

Every File the API returns carries `inspection`: null when the file was never checked, else its
`state` (pending, passed, rejected) and, for a refused file, `reason: {code, message}`.
"""

from __future__ import annotations

from typing import Any

# What each inspection state reads as (File.inspection.state).
STATE_WORDS = {
    "pending": "Checking content…",
    "passed": "Checked",
    "rejected": "Refused",
}

# Per reason code of a refused file (File.inspection.reason.code), what it means for people.
REASON_WORDS = {
    "content_mismatch": "Refused: the content is not what the file's name or type says",
    "executable_content": "Refused: this file is a program",
    "image_too_large": "Refused: the image has too many pixels",
    "media_too_long": "Refused: the recording is too long",
    "archive_bomb": "Refused: the archive would unpack to far too much data",
    "unsafe_archive": "Refused: the archive holds unsafe entries",
    "active_content": "Refused: the PDF contains scripts or actions",
    "image_too_small": "Refused: the image is too small",
    "media_too_short": "Refused: the recording is too short",
    "corrupt_file": "Refused: the file is damaged or cannot be read",
}


def inspection_state(record: dict[str, Any]) -> str | None:
    """Return a file's inspection state, or None if it was never checked."""
    inspection = record.get("inspection")
    return inspection.get("state") if isinstance(inspection, dict) else None


def reason_text(reason: Any) -> str:
    """Return why a file was refused: the words of its code, then the server's message."""
    reason = reason if isinstance(reason, dict) else {}
    words = REASON_WORDS.get(str(reason.get("code")), STATE_WORDS["rejected"])
    message = str(reason.get("message") or "").strip()
    return f"{words}. {message}" if message else f"{words}."


def inspection_text(record: dict[str, Any]) -> str:
    """Return what a file's content check says in words; "" if it was never checked."""
    state = inspection_state(record)
    if not state:
        return ""
    if state == "rejected":
        return reason_text(record["inspection"].get("reason"))
    return STATE_WORDS.get(state, state)


def not_ready_text(file_id: str, record: dict[str, Any]) -> str:
    """Return the sentence for a download refused because the file is still being checked."""
    name = record.get("file_name") or file_id
    return (
        f"{name} ({file_id}) is still being checked; it can be downloaded once the check has passed. "
        f"Try again in a moment (`s3drive-client info {file_id}` shows where the check stands)."
    )
