"""Audio and video checks on real files made here with PyAV and `wave`, from disk and over HTTP ranges."""

from __future__ import annotations

import io
import os
import re
import socket
import threading
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import av
import pytest
from PIL import Image

from s3drive.inspect.base import Limits, Rejected
from s3drive.inspect.media import inspect_media, poster_frame

VIDEO_CODEC = "h264" if "libx264" in av.codecs_available else "mpeg4"


def write_video(path, seconds, width=64, height=48, fps=10, noise=False) -> str:
    """Write an MP4 of `seconds` at `fps`: colour ramps, or noise that does not compress (a big file)."""
    # A few noise frames in turn: incompressible, yet quick to encode (ultrafast).
    distinct = [_frame(width, height, index, noise) for index in range(7 if noise else 1)]
    with av.open(str(path), "w") as out:
        options = {"preset": "ultrafast"} if VIDEO_CODEC == "h264" else {}
        stream = out.add_stream(VIDEO_CODEC, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(seconds * fps):
            frame = distinct[index % len(distinct)] if noise else _frame(width, height, index, False)
            frame.pts = None
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return str(path)


def _frame(width, height, index, noise) -> av.VideoFrame:
    if noise:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), ((index * 8) % 256, 100, 150))
    return av.VideoFrame.from_image(image)


def write_wav(path, seconds=2, rate=8000) -> str:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x01" * round(rate * seconds))
    return str(path)


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> str:
    return write_video(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=3)


def rejection(url, **limits) -> Rejected:
    with pytest.raises(Rejected) as caught:
        inspect_media(url, Limits(**limits))
    return caught.value


def test_a_three_second_mp4_is_video_with_its_duration_and_size(mp4):
    report = inspect_media(mp4, Limits())
    assert report.kind == "video"
    assert report.duration_seconds == pytest.approx(3.0, abs=0.15)
    assert (report.width, report.height) == (64, 48)
    assert report.details["video_codecs"] == [VIDEO_CODEC] and report.details["audio_codecs"] == []


def test_longer_than_the_limit_is_media_too_long(mp4):
    assert rejection(mp4, max_media_seconds=2).code == "media_too_long"


def test_shorter_than_a_profile_minimum_is_media_too_short(mp4):
    assert rejection(mp4, min_media_seconds=5).code == "media_too_short"
    assert inspect_media(mp4, Limits(min_media_seconds=1, max_media_seconds=180)).kind == "video"


@pytest.mark.parametrize(
    ("seconds", "limits", "message"),
    [
        (1.5, {"min_media_seconds": 2}, "The media lasts 1.5 s, less than 2 s."),
        (1.98, {"min_media_seconds": 2}, "The media lasts 1.980 s, less than 2 s."),  # not "2.0 s, less than 2 s"
        (3.02, {"max_media_seconds": 3}, "The media lasts 3.020 s, more than 3 s."),
    ],
)
def test_a_duration_near_the_limit_never_reads_as_the_limit(tmp_path, seconds, limits, message):
    rejected = rejection(write_wav(tmp_path / "near.wav", seconds=seconds), **limits)
    assert rejected.message == message


def test_a_wav_is_audio_with_its_duration_and_no_poster(tmp_path):
    wav = write_wav(tmp_path / "tone.wav", seconds=2)
    report = inspect_media(wav, Limits())
    assert (report.kind, report.width, report.height) == ("audio", None, None)
    assert report.duration_seconds == pytest.approx(2.0)
    assert report.details["audio_codecs"] == ["pcm_s16le"]
    assert poster_frame(wav, 64) is None


@pytest.mark.parametrize("data", [os.urandom(4096), b"", b"\x00\x00\x00\x18ftypmp42" + os.urandom(100)])
def test_garbage_is_corrupt_and_gets_no_poster(tmp_path, data):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(data)
    assert rejection(str(path)).code == "corrupt_file"
    assert poster_frame(str(path), 64) is None


def test_a_truncated_mp4_is_corrupt(tmp_path, mp4):
    path = tmp_path / "cut.mp4"
    path.write_bytes(open(mp4, "rb").read()[:1000])
    assert rejection(str(path)).code == "corrupt_file"


def test_a_missing_file_is_the_workers_trouble_not_a_corrupt_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        inspect_media(str(tmp_path / "gone.mp4"), Limits())


def test_the_poster_frame_is_a_webp_within_the_size(mp4):
    image = Image.open(io.BytesIO(poster_frame(mp4, 32)))
    assert image.format == "WEBP" and image.size == (32, 24)


class RangeServer(ThreadingHTTPServer):
    """Serves one file with Range support and counts the bytes it managed to send."""

    daemon_threads = True

    def __init__(self, data: bytes):
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.data, self.sent, self.ranges = data, 0, []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/video.mp4"


class RangeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        # A small send buffer: what counts as sent is close to what the client read, not what
        # the kernel queued before FFmpeg hung up.
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        super().setup()

    def log_message(self, *args):
        pass

    def do_GET(self):
        data = self.server.data
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        start = int(match[1]) if match else 0
        end = int(match[2]) if match and match[2] else len(data) - 1
        self.send_response(206 if match else 200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if match:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        with self.server.lock:
            self.server.ranges.append(self.headers.get("Range"))
        try:
            for offset in range(start, end + 1, 16 * 1024):
                chunk = data[offset : min(offset + 16 * 1024, end + 1)]
                self.wfile.write(chunk)
                with self.server.lock:
                    self.server.sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # FFmpeg read what it needed and hung up


@pytest.fixture(scope="module")
def served_video(tmp_path_factory):
    path = write_video(tmp_path_factory.mktemp("media") / "long.mp4", seconds=30, width=320, height=240, noise=True)
    server = RangeServer(open(path, "rb").read())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_probing_over_http_reads_the_header_not_the_video(served_video):
    report = inspect_media(served_video.url, Limits())
    assert report.kind == "video" and report.duration_seconds == pytest.approx(30.0, abs=0.2)
    assert (report.width, report.height) == (320, 240)
    size = len(served_video.data)
    # The moov box sits at the end (the muxer's default): FFmpeg reaches it with a second range.
    assert any(r and int(re.match(r"bytes=(\d+)", r)[1]) > size // 2 for r in served_video.ranges)
    # Measured: ~170 KB of a ~15 MB file, most of it socket buffers filled before FFmpeg hung up.
    assert served_video.sent < 0.05 * size


def test_the_poster_frame_over_http_seeks_instead_of_reading_through(served_video):
    before = served_video.sent
    image = Image.open(io.BytesIO(poster_frame(served_video.url, 100)))
    assert image.format == "WEBP" and image.size == (100, 75)
    assert served_video.sent - before < 0.1 * len(served_video.data)
