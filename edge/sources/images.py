"""Image files: what a file is by its content (``file_kind``), its format and size from its header
(no pixels decoded), and ``read_image`` with a pixel cap and the refusals it raises."""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}


#: an image in a folder source above this many pixels is read reduced (JPEG) or skipped
MAX_IMAGE_PIXELS = 40_000_000


def file_kind(path) -> str:
    """What a file is by its content, not its name: ``'image'`` (OpenCV knows its signature),
    ``'text'`` (no NUL byte and UTF-8 in its first 8 KB), ``'empty'``, or ``'other'`` (a video, maybe)."""
    with open(path, "rb") as f:
        head = f.read(8192)
    if not head:
        return "empty"
    if cv2.haveImageReader(str(path)):
        return "image"
    if b"\0" in head:
        return "other"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:   # not a multi-byte character cut at the end of the 8 KB
            return "other"
    return "text"


_PIL_LOCK = threading.Lock()
_HEADER_BYTES = 64 * 1024          # enough for every header but a JPEG's, whose segments are skipped by seeking
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(f) -> tuple[int, int] | None:
    """Walk a JPEG's marker segments (seeking over them) to its frame header (SOF)."""
    f.seek(2)
    for _ in range(10000):
        b = f.read(1)
        while b and b != b"\xff":          # garbage between segments: skip to the next marker
            b = f.read(1)
        while b == b"\xff":                 # fill bytes
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            continue
        if marker == 0xD9:
            return None
        seg = f.read(2)
        if len(seg) < 2:
            return None
        length = int.from_bytes(seg, "big")
        if marker in _JPEG_SOF:
            head = f.read(5)
            if len(head) < 5:
                return None
            h, w = int.from_bytes(head[1:3], "big"), int.from_bytes(head[3:5], "big")
            return (w, h) if w and h else None
        if length < 2:
            return None
        f.seek(length - 2, os.SEEK_CUR)
    return None


def _tiff_size(head: bytes) -> tuple[int, int] | None:
    order = "little" if head[:2] == b"II" else "big"
    u = lambda b: int.from_bytes(b, order)  # noqa: E731
    big = u(head[2:4]) == 43                 # BigTIFF
    ifd = u(head[8:16]) if big else u(head[4:8])
    count_size, entry_size = (8, 20) if big else (2, 12)
    if ifd + count_size > len(head):
        return None
    n = u(head[ifd:ifd + count_size])
    dims = {}
    for i in range(min(n, 512)):
        e = ifd + count_size + i * entry_size
        if e + entry_size > len(head):
            break
        tag, typ = u(head[e:e + 2]), u(head[e + 2:e + 4])
        if tag in (256, 257):
            val = head[e + (12 if big else 8):e + entry_size]
            dims[tag] = u(val[:2]) if typ == 3 else u(val[:4]) if typ == 4 else u(val[:8]) if typ == 16 else 0
    w, h = dims.get(256, 0), dims.get(257, 0)
    return (w, h) if w and h else None


def _pnm_size(head: bytes) -> tuple[int, int] | None:
    if head[:2] == b"P7":                    # PAM: WIDTH and HEIGHT lines
        fields = dict(ln.split(None, 1) for ln in head.split(b"ENDHDR")[0].decode("latin-1").splitlines()[1:]
                      if len(ln.split(None, 1)) == 2)
        try:
            return int(fields["WIDTH"]), int(fields["HEIGHT"])
        except (KeyError, ValueError):
            return None
    tokens = []
    for ln in head[2:].split(b"\n"):
        tokens += ln.split(b"#", 1)[0].split()
        if len(tokens) >= 2:
            break
    try:
        return int(tokens[0]), int(tokens[1])
    except (IndexError, ValueError):
        return None


def image_header(path) -> tuple[str | None, tuple[int, int] | None]:
    """(format, (width, height)) from the file's first bytes, whatever its name; None for what is unknown.

    Reads no pixels and never trusts the extension: a PNG named ``.jpg`` is a PNG.
    Covers what OpenCV reads in an image folder (JPEG, PNG, BMP, GIF, WebP, TIFF, PNM/PAM,
    PFM, Sun raster, Radiance HDR); a damaged file whose header is whole still tells its size.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER_BYTES)
            if head[:3] == b"\xff\xd8\xff":
                return "jpeg", _jpeg_size(f)
    except OSError:
        return None, None
    le = lambda b: int.from_bytes(b, "little")  # noqa: E731
    be = lambda b: int.from_bytes(b, "big")     # noqa: E731
    size = None
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png", ((be(head[16:20]), be(head[20:24])) if head[12:16] == b"IHDR" else None)
    if head[:2] == b"BM" and len(head) >= 26:
        if le(head[14:18]) == 12:
            size = le(head[18:20]), le(head[20:22])
        else:
            size = abs(int.from_bytes(head[18:22], "little", signed=True)), \
                abs(int.from_bytes(head[22:26], "little", signed=True))
        return "bmp", size
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif", (le(head[6:8]), le(head[8:10]))
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = head[12:16]
        if kind == b"VP8 " and len(head) >= 30:
            size = le(head[26:28]) & 0x3FFF, le(head[28:30]) & 0x3FFF
        elif kind == b"VP8L" and len(head) >= 25:
            bits = le(head[21:25])
            size = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        elif kind == b"VP8X" and len(head) >= 30:
            size = le(head[24:27]) + 1, le(head[27:30]) + 1
        return "webp", size
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff", _tiff_size(head)
    if len(head) >= 2 and head[0:1] == b"P" and head[1:2] in b"1234567":
        return "pnm", _pnm_size(head)
    if head[:2] in (b"PF", b"Pf"):
        return "pfm", _pnm_size(head)
    if head[:4] == b"\x59\xa6\x6a\x95":
        return "sunras", (be(head[4:8]), be(head[8:12]))
    if head[:2] == b"#?":
        m = re.search(rb"\n\n([-+])Y (\d+) ([-+])X (\d+)", head)
        return "hdr", ((int(m.group(4)), int(m.group(2))) if m else None)
    return None, None


def image_size(path) -> tuple[int, int] | None:
    """(width, height) from the file's header (no pixels read), or None if unknown.

    Our own reading of the header first (:func:`image_header`: by content, and it tells the
    size of a damaged file Pillow refuses); then Pillow for the formats it does not know.
    """
    size = image_header(path)[1]
    if size is not None:
        return size
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    with _PIL_LOCK:  # Pillow's own bomb check would refuse to tell the size of a huge image
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(path) as im:
                return int(im.size[0]), int(im.size[1])
        except Exception:
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = saved


class ImageRefused(DataError):
    """An image file read_image will not decode (too big, truncated): skipped in a folder with one warning."""


def image_truncated(path, kind: str | None) -> bool:
    """True when a JPEG lacks its end marker or a PNG its IEND chunk: the file was cut short
    (a copy or a download that stopped). OpenCV would decode what is there and fill the rest."""
    if kind not in ("jpeg", "png"):
        return False
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 4096))
            tail = f.read().rstrip(b"\x00\r\n\t ")     # some writers pad after the end
    except OSError:
        return False
    return not tail.endswith(b"\xff\xd9") if kind == "jpeg" else b"IEND" not in tail[-12:]


class ImageTruncated(ImageRefused):
    """An image file cut short."""


class ImageTooBig(ImageRefused):
    """An image above the pixel cap that cannot be read reduced (or whose size cannot be told)."""


def read_image(path, max_pixels: int = 0) -> np.ndarray | None:
    """``cv2.imread`` (8-bit BGR) with a pixel cap checked on the header, before any decoding.

    The size and the format come from the file's content, never its name. Above
    ``max_pixels`` (0 = no cap) a JPEG is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's own
    reduced decoding, so the full image never exists in memory) with one warning; another
    format, or a file whose size cannot be told from its header, raises :class:`ImageTooBig`;
    a JPEG or PNG cut short (no end marker) raises :class:`ImageTruncated` (OpenCV would decode
    what is there and fill the rest with gray). None when the file is not a readable image.
    """
    path = Path(path)
    kind, size = image_header(path)
    if image_truncated(path, kind):
        raise ImageTruncated(f"{path}: truncated (the {kind.upper()} file ends before its end marker: "
                             "a copy or download cut short)")
    if max_pixels:
        if size is None:
            size = image_size(path)
        if size is None:
            if kind is None:        # neither we nor Pillow know it: not an image (never decoded)
                return None
            raise ImageTooBig(f"{path}: its size cannot be told from its header "
                              f"({kind or 'not a known image format'}); not decoded")
        w, h = size
        if w * h > max_pixels:
            if kind == "jpeg":
                reduced = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
                k = next((k for k in reduced if (w // k) * (h // k) <= max_pixels), None)
                if k is not None:
                    log.warning("%s: %dx%d is more than %d pixels: decoded at 1/%d size", path, w, h,
                                max_pixels, k)
                    return cv2.imread(str(path), reduced[k])
            raise ImageTooBig(f"{path}: {w}x{h} is more than {max_pixels} pixels "
                              f"({w * h * 3 / 1e6:.0f} MB decoded)")
    return cv2.imread(str(path), cv2.IMREAD_COLOR)  # 8-bit BGR, EXIF orientation applied
