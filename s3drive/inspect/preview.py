"""Preview encoding shared by the checks that make one (PDF pages, video poster frames)."""

from __future__ import annotations

import io

from PIL import Image

WEBP_QUALITY = 80


def webp_thumbnail(image: Image.Image, size: int) -> bytes:
    """Encode `image` as a WebP at most `size` px on the long side."""
    image.thumbnail((size, size))
    # WebP holds RGB(A) only; palette, CMYK or 16-bit sources are converted first.
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    out = io.BytesIO()
    image.save(out, "WEBP", quality=WEBP_QUALITY)
    return out.getvalue()
