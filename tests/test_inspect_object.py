"""The orchestrator end to end on real bytes: it dispatches PDFs and media to their checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_inspect_media import write_video
from test_inspect_pdf import JAVASCRIPT_ACTION, make_pdf

from s3drive.inspect import inspect_object
from s3drive.inspect.base import BytesReader, Limits, Rejected


def test_a_plain_pdf_is_inspected_by_the_pdf_check():
    report = inspect_object(BytesReader(make_pdf(pages=3)), "application/pdf", Limits())
    assert (report.detected_type, report.kind, report.pages) == ("application/pdf", "pdf", 3)


def test_a_pdf_with_javascript_is_active_content_through_the_orchestrator():
    data = make_pdf(open_action=JAVASCRIPT_ACTION)
    with pytest.raises(Rejected) as refused:
        inspect_object(BytesReader(data), "application/pdf", Limits())
    assert refused.value.code == "active_content"


def test_a_video_is_probed_through_its_url(tmp_path: Path):
    path = write_video(tmp_path / "clip.mp4", seconds=3)
    data = Path(path).read_bytes()
    report = inspect_object(BytesReader(data), "video/mp4", Limits(), media_url=path)
    assert report.kind == "video" and report.detected_type == "video/mp4"
    assert 2.5 <= report.duration_seconds <= 3.5 and (report.width, report.height) == (64, 48)
    with pytest.raises(Rejected) as refused:
        inspect_object(BytesReader(data), "video/mp4", Limits(max_media_seconds=2), media_url=path)
    assert refused.value.code == "media_too_long"
