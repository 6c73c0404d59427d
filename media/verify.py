"""What an uploaded file is, judged from its bytes alone (the client's word is not trusted):
its type sniffed from its first bytes, images decoded within a pixel budget, their metadata
(EXIF, GPS, text chunks) dropped, a thumbnail and a blurhash placeholder made. No I/O: the
processor (``media/processor.py``) reads and writes the store around it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import blurhash
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's own bomb guard (a warning above the limit, an error above twice it) stays on as a
# second line; the first is the explicit check of the header's dimensions before decoding.
# The processor sets it from CHAT_MEDIA_MAX_PIXELS at start (configure()).
Image.MAX_IMAGE_PIXELS = 40_000_000

IMAGE_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
# Only the formats we sniff are ever decoded: Pillow's other plugins never see user bytes.
DECODERS = tuple(IMAGE_FORMATS)
PLACEHOLDER_PX = 32
TEXT_SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True)
class Verified:
    type: str
    size: int
    width: int
    height: int
    data: bytes  # what is stored and served: images re-encoded without their metadata
    thumbnail: bytes | None  # JPEG
    placeholder: str  # blurhash, "" for files


@dataclass(frozen=True)
class Rejected:
    reason: str


def configure(max_pixels: int) -> None:
    Image.MAX_IMAGE_PIXELS = max_pixels


def sniff(data: bytes) -> str:
    """The type the bytes are, from their signature ("application/octet-stream": unknown)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    head = data[:TEXT_SNIFF_BYTES]
    # A multi-byte character may be cut at the end of the sniffed window.
    window = head if len(data) <= TEXT_SNIFF_BYTES else head[:-4]
    try:
        text = window.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    # Text has no control characters but tab, line breaks and form feed (executables do).
    if any((ord(c) < 32 and c not in "\t\n\r\f") or c == "\x7f" for c in text):
        return "application/octet-stream"
    return "text/plain"


def inspect(
    data: bytes,
    declared_type: str,
    allowed: tuple[str, ...],
    max_pixels: int,
    thumbnail_px: int,
) -> Verified | Rejected:
    kind = sniff(data)
    if kind not in allowed:
        return Rejected(f"file type not allowed (the bytes are {kind})")
    if kind != declared_type:
        return Rejected(f"declared as {declared_type} but the bytes are {kind}")
    if kind in IMAGE_FORMATS.values():
        return _image(data, kind, max_pixels, thumbnail_px)
    return Verified(kind, len(data), 0, 0, data, None, "")


def _image(data: bytes, kind: str, max_pixels: int, thumbnail_px: int) -> Verified | Rejected:
    try:
        with Image.open(io.BytesIO(data), formats=DECODERS) as im:
            if IMAGE_FORMATS.get(im.format or "") != kind:
                return Rejected(f"the bytes are not a valid {kind}")
            width, height = im.size
            frames = int(getattr(im, "n_frames", 1))
            # Decompression bombs: judged from the header, before a single pixel is decoded.
            if width < 1 or height < 1 or width * height * frames > max_pixels:
                return Rejected(
                    f"image too large: {width}x{height}x{frames} pixels (at most {max_pixels})"
                )
            im.load()
            if frames > 1:
                # Animations are kept as uploaded (re-encoding every frame is costly); GIF and
                # WebP carry no EXIF/GPS block in the frames Pillow reads.
                stored = data
                first = im.copy()
            else:
                first = ImageOps.exif_transpose(im)  # orientation first, then drop the EXIF
                stored = _reencode(first, im.format or "PNG")
                width, height = first.size
    except Image.DecompressionBombError:
        return Rejected(f"image too large: more than {max_pixels} pixels")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return Rejected(f"the image cannot be decoded: {exc.__class__.__name__}")
    rgb = first.convert("RGB")
    thumb = rgb.copy()
    thumb.thumbnail((thumbnail_px, thumbnail_px))
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=80)
    small = rgb.copy()
    small.thumbnail((PLACEHOLDER_PX, PLACEHOLDER_PX))
    raw, (w, h) = small.tobytes(), small.size
    # What blurhash reads: rows of [r, g, b].
    rows = [[raw[(y * w + x) * 3 : (y * w + x) * 3 + 3] for x in range(w)] for y in range(h)]
    placeholder = blurhash.encode(rows, components_x=4, components_y=3)
    return Verified(kind, len(stored), width, height, stored, out.getvalue(), placeholder)


def _reencode(im: Image.Image, fmt: str) -> bytes:
    """The pixels alone: a fresh image carries none of the source's EXIF, XMP or text chunks
    (the ICC profile is kept: it is colour, not metadata about the person)."""
    clean = Image.new(im.mode, im.size)
    clean.paste(im)
    if im.mode == "P" and im.getpalette():
        clean.putpalette(im.getpalette() or [])
    if fmt == "JPEG" and clean.mode not in ("RGB", "L", "CMYK"):
        clean = clean.convert("RGB")
    icc = im.info.get("icc_profile")
    out = io.BytesIO()
    options: dict[str, object] = {"icc_profile": icc} if icc else {}
    if fmt == "JPEG":
        options["quality"] = 90
    elif fmt == "WEBP":
        options["quality"] = 90
    clean.save(out, fmt, **options)
    return out.getvalue()
