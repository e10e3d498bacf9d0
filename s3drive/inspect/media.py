"""Audio and video checks with PyAV (FFmpeg in the wheel): duration, codecs, frame size, a poster frame.

The worker hands these a short-lived presigned GET; FFmpeg's HTTP client reads it with range
requests. Probing reads the container header (an MP4's moov box, wherever it sits, a Matroska
header) and the first packets FFmpeg needs to know each stream's parameters — never the whole
stream. Tests pass a local path instead of a URL.
"""

from __future__ import annotations

import av
from av.container import InputContainer

from .base import Limits, Rejected, Report
from .preview import webp_thumbnail

# Seconds FFmpeg may wait to connect, then for each read (a stalled S3 GET must not hang a worker).
OPEN_TIMEOUT = 10.0
READ_TIMEOUT = 10.0
# What FFmpeg may read to learn stream parameters after the header (its defaults: 5 MB, 5 s).
PROBE_OPTIONS = {
    "probesize": str(1024 * 1024),
    "analyzeduration": str(1_000_000),  # microseconds
    # The same read timeout inside FFmpeg's I/O layer, in microseconds.
    "rw_timeout": str(int(READ_TIMEOUT * 1_000_000)),
    # FFmpeg's first HTTP request asks for an open-ended range: S3 would stream the whole object into
    # the socket while FFmpeg reads the index. The first request asks for 16 KiB (the index of a
    # faststart file); later ones, after a seek to an index at the end, stay open-ended.
    "initial_request_size": str(16 * 1024),
}
# What FFmpeg says about bytes it cannot use. Anything else (HTTP 403 from an expired URL, a
# timeout, a refused connection) is the worker's trouble, not the file's: it propagates, and the
# task retries instead of rejecting a good file.
UNREADABLE = (
    av.error.InvalidDataError,
    av.error.EOFError,
    av.error.PatchWelcomeError,
    av.error.DemuxerNotFoundError,
    av.error.DecoderNotFoundError,
)
# A poster frame comes this far in (titles often open on black), or 10% in for shorter media.
POSTER_OFFSET = 1.0


def inspect_media(url: str, limits: Limits) -> Report:
    """Return kind, duration, codecs and frame size of audio or video at `url`; reject by duration."""
    with _open(url) as container:
        report = _describe(container)
    _check_duration(report.duration_seconds, limits)
    return report


def _open(url: str) -> InputContainer:
    """Open `url` for probing, or reject it as corrupt."""
    try:
        return _open_container(url)
    except UNREADABLE as error:
        raise Rejected("corrupt_file", "The audio or video cannot be read.") from error


def _open_container(url: str) -> InputContainer:
    """Open `url` with bounded probing and timeouts."""
    return av.open(url, options=dict(PROBE_OPTIONS), timeout=(OPEN_TIMEOUT, READ_TIMEOUT))


def _describe(container: InputContainer) -> Report:
    """Return the report of an open container: kind, duration, codecs, first video stream's size."""
    video = _video_streams(container)
    audio = list(container.streams.audio)
    if not video and not audio:
        raise Rejected("corrupt_file", "The file has no audio or video stream.")
    details = {
        "format": container.format.name,
        "video_codecs": [stream.codec_context.name for stream in video],
        "audio_codecs": [stream.codec_context.name for stream in audio],
    }
    report = Report(kind="video" if video else "audio", duration_seconds=_duration(container), details=details)
    if video:
        report.width, report.height = video[0].width or None, video[0].height or None
    return report


def _video_streams(container: InputContainer) -> list:
    """Return the real video streams: cover art in an MP3 or M4A is a one-picture 'video' stream."""
    return [stream for stream in container.streams.video if not stream.disposition & av.stream.Disposition.attached_pic]


def _duration(container: InputContainer) -> float | None:
    """Return the duration in seconds: the container's, else the longest stream's, else None."""
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    streams = [s for s in container.streams if s.duration and s.time_base]
    if not streams:
        return None
    return max(float(s.duration * s.time_base) for s in streams)


def _check_duration(seconds: float | None, limits: Limits) -> None:
    """Reject media longer than the limit or shorter than a profile's minimum."""
    maximum = limits.max_media_seconds
    if seconds is not None and seconds > maximum:
        raise Rejected("media_too_long", f"The media lasts {_seconds(seconds, maximum)}, more than {maximum} s.")
    minimum = limits.min_media_seconds
    # A profile with a minimum wants a duration it can check: an unknown one does not qualify.
    if minimum is not None and (seconds is None or seconds < minimum):
        shown = "an unknown time" if seconds is None else _seconds(seconds, minimum)
        raise Rejected("media_too_short", f"The media lasts {shown}, less than {minimum} s.")


def _seconds(seconds: float, limit: float) -> str:
    """Return a duration to one decimal, or to the millisecond when one decimal would read as the limit."""
    shown = f"{seconds:.1f}"
    return f"{seconds:.3f} s" if float(shown) == limit else f"{shown} s"


def poster_frame(url: str, size: int) -> bytes | None:
    """Return a WebP of the first keyframe ~1 s in, at most `size` px on the long side; None for audio."""
    try:
        with _open_container(url) as container:
            video = _video_streams(container)
            if not video:
                return None
            frame = _first_keyframe(container, video[0])
    # A preview is best effort: a file that passed inspection but will not decode gets none.
    except UNREADABLE:
        return None
    if frame is None:
        return None
    width, height = _fit(frame.width, frame.height, size)
    # Scale in FFmpeg while converting to RGB: a 4K frame never becomes a 4K RGB image.
    return webp_thumbnail(frame.to_image(width=width, height=height), size)


def _first_keyframe(container: InputContainer, stream):
    """Seek a little in and decode the first keyframe of `stream`, or None."""
    duration = _duration(container) or 0.0
    offset = POSTER_OFFSET if duration >= 10 * POSTER_OFFSET else duration / 10
    if offset > 0:
        # Seeking lands on the keyframe at or before the offset: one ranged read over HTTP.
        container.seek(int(offset * av.time_base), backward=True, any_frame=False)
    # Decode keyframes only: the first frame out is the poster, without decoding what precedes it.
    stream.codec_context.skip_frame = "NONKEY"
    for frame in container.decode(stream):
        return frame
    return None


def _fit(width: int, height: int, size: int) -> tuple[int, int]:
    """Return (width, height) scaled to at most `size` on the long side, aspect kept."""
    scale = min(1.0, size / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))
