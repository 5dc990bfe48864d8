"""Photo file names, decoding to RGB arrays, and a scan for unusable image files.

Every photo goes through `read_rgb`, which decodes with OpenCV and returns an
HxWx3 uint8 RGB array whatever the file stores (grayscale, alpha, palette,
CMYK, 16-bit), or raises `BadImageError` with a short reason.
"""

from __future__ import annotations

import logging
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

logger = logging.getLogger(__name__)

PHOTO_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

# Reasons carried by BadImageError.reason.
EMPTY_FILE = "empty file"
NOT_AN_IMAGE = "not an image"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
UNREADABLE = "unreadable"

_IMREAD_COLOR_RGB: int | None = getattr(cv2, "IMREAD_COLOR_RGB", None)
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# BITMAPCOREHEADER, BITMAPINFOHEADER, the V2 and V3 variants, OS/2 V2, V4 and V5.
_BMP_INFO_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_JPEG_EOI = b"\xff\xd9"
_JPEG_SOS = 0xDA
# JPEG markers that stand alone, without a length field: TEM and RST0..RST7.
_JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})


class BadImageError(ValueError):
    """An image file that cannot be decoded into a usable RGB array."""

    def __init__(self, path: str | os.PathLike, reason: str, detail: str | None = None) -> None:
        self.path = Path(path)
        self.reason = reason
        self.detail = detail
        message = f"Bad image {self.path}: {reason}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


def is_photo_name(name: str | os.PathLike) -> bool:
    """Return True when the file name has a photo extension and is not a hidden file.

    Names starting with "." are rejected, which covers `.DS_Store` and the `._cat.1.jpg`
    AppleDouble files that macOS puts into zip archives.
    """
    file_name = Path(name).name
    if file_name.startswith("."):
        return False
    return Path(file_name).suffix.lower() in PHOTO_EXTENSIONS


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read and decode an image file into a C-contiguous HxWx3 uint8 RGB array.

    The format is taken from the file content, not its extension. See `decode_rgb` for
    the conversions. Raises BadImageError with reason "unreadable" when the file cannot
    be read (any OSError, including a missing file), or with the reasons `decode_rgb` raises.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadImageError(path, UNREADABLE, exc.strerror or type(exc).__name__) from exc
    return decode_rgb(data, path)


def decode_rgb(data: bytes, path: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes into a C-contiguous HxWx3 uint8 RGB array.

    Grayscale is repeated into three channels, palette images are expanded, CMYK JPEGs
    are converted to RGB, 16-bit samples are scaled to 8 bits, and the EXIF orientation
    is applied (OpenCV's default). An alpha channel is dropped, not composited, so a
    transparent pixel comes out as the colour the file stores under it.

    `path` is used only in error messages. Raises BadImageError with one of these reasons:

    - "empty file": the data is 0 bytes.
    - "truncated": a JPEG has no end-of-image marker after its first scan, a PNG has no
      IEND chunk, or a BMP or WebP is shorter than its header declares.
    - "corrupt": a JPEG, PNG, BMP or WebP that OpenCV fails to decode.
    - "not an image": any other content that OpenCV cannot decode.
    """
    if not data:
        raise BadImageError(path, EMPTY_FILE)

    known_format = _detect_format(data)
    if known_format is not None and _is_truncated(data, known_format):
        raise BadImageError(path, TRUNCATED, f"{known_format} data ends early")

    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        image = _imdecode_rgb(buffer)
    except cv2.error as exc:
        raise BadImageError(path, CORRUPT, f"OpenCV error: {exc}") from exc

    if image is None:
        if known_format is None:
            raise BadImageError(path, NOT_AN_IMAGE, "OpenCV does not recognise the content")
        raise BadImageError(path, CORRUPT, f"OpenCV failed to decode the {known_format} data")

    # IMREAD_COLOR decoding already yields uint8 HxWx3. This check guards against a future
    # OpenCV release changing that contract.
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise BadImageError(path, CORRUPT, f"decoded to shape {image.shape}, dtype {image.dtype}")
    return np.ascontiguousarray(image)


def _imdecode_rgb(buffer: np.ndarray) -> np.ndarray | None:
    # Older OpenCV releases lack IMREAD_COLOR_RGB, so they decode to BGR and convert.
    if _IMREAD_COLOR_RGB is not None:
        return cv2.imdecode(buffer, _IMREAD_COLOR_RGB)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if image is None:
        return None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def find_bad_images(
    paths: Iterable[str | os.PathLike], workers: int = 4
) -> list[tuple[Path, str]]:
    """Decode every file once and return (path, reason) for each unusable one, in input order.

    Decoding runs in a thread pool of `workers` threads, which overlap because OpenCV
    releases the GIL while decoding.
    """
    path_list = [Path(p) for p in paths]
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = list(pool.map(_bad_image_reason, path_list))

    bad = [(path, reason) for path, reason in zip(path_list, reasons) if reason is not None]
    if bad:
        logger.warning("%d of %d image files are unusable", len(bad), len(path_list))
    else:
        logger.info("All %d image files decode", len(path_list))
    return bad


def _bad_image_reason(path: Path) -> str | None:
    try:
        read_rgb(path)
    except BadImageError as exc:
        logger.debug("%s", exc)
        return exc.reason
    return None


def _detect_format(data: bytes) -> str | None:
    if data.startswith(_JPEG_SIGNATURE):
        return "JPEG"
    if data.startswith(_PNG_SIGNATURE):
        return "PNG"
    if data.startswith(b"BM") and _has_bmp_info_header(data):
        return "BMP"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WebP"
    return None


def _has_bmp_info_header(data: bytes) -> bool:
    # "BM" alone is too weak a signature (a text file may start with it), so the size
    # field of the info header after the 14-byte file header must be a known one.
    if len(data) < 18:
        return False
    (info_header_size,) = struct.unpack_from("<I", data, 14)
    return info_header_size in _BMP_INFO_HEADER_SIZES


def _is_truncated(data: bytes, known_format: str) -> bool:
    # These checks read only headers and search for byte patterns, so they cost far less
    # than the decode and no second decode is needed.
    if known_format == "JPEG":
        return _is_jpeg_truncated(data)
    if known_format == "PNG":
        return _is_png_truncated(data)
    if known_format == "BMP":
        return _is_bmp_truncated(data)
    return _is_webp_truncated(data)


def _is_jpeg_truncated(data: bytes) -> bool:
    # libjpeg treats a premature end of data as a warning and fills the missing rows with
    # grey, so OpenCV builds that keep that default decode a truncated JPEG without error.
    # OpenCV 5.1 returns None instead, which would be reported as "corrupt". Requiring the
    # end-of-image marker FFD9 gives the reason "truncated" in both cases. It must come after the first scan (SOS)
    # because an EXIF thumbnail in the header ends with its own FFD9. Entropy-coded scan
    # data cannot contain FFD9 (0xFF bytes there are followed by 00 or a restart marker),
    # so a match after the SOS is the real end. Searching from the end finds it at once and
    # still accepts bytes that some cameras append after the marker.
    scan_start = _find_jpeg_scan_start(data)
    if scan_start is None:
        return True
    return data.rfind(_JPEG_EOI, scan_start) == -1


def _find_jpeg_scan_start(data: bytes) -> int | None:
    """Return the offset of the first SOS marker, or None when the header ends before it.

    When the marker structure is malformed, returns 2 (just past SOI) so that only the
    end-of-image search applies and OpenCV reports the damage.
    """
    size = len(data)
    offset = 2
    while offset + 1 < size:
        if data[offset] != 0xFF:
            return 2
        marker = data[offset + 1]
        if marker == 0xFF:
            # Fill byte before a marker.
            offset += 1
            continue
        if marker == _JPEG_SOS:
            return offset
        if marker in _JPEG_STANDALONE_MARKERS:
            offset += 2
            continue
        if offset + 4 > size:
            return None
        (segment_length,) = struct.unpack_from(">H", data, offset + 2)
        offset += 2 + segment_length
    return None


def _is_png_truncated(data: bytes) -> bool:
    # Walk the chunk headers (length, type, payload, CRC) until IEND. A file cut inside a
    # chunk ends the walk before IEND is reached.
    size = len(data)
    offset = len(_PNG_SIGNATURE)
    while offset + 8 <= size:
        (chunk_length,) = struct.unpack_from(">I", data, offset)
        if data[offset + 4 : offset + 8] == b"IEND":
            return False
        offset += 12 + chunk_length
    return True


def _is_bmp_truncated(data: bytes) -> bool:
    (declared_size,) = struct.unpack_from("<I", data, 2)
    # Some writers store 0 here, so only a nonzero size is checked.
    return declared_size > 0 and len(data) < declared_size


def _is_webp_truncated(data: bytes) -> bool:
    (riff_payload_size,) = struct.unpack_from("<I", data, 4)
    return len(data) < 8 + riff_payload_size
