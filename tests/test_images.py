import io
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from catsdogs.images import (
    PHOTO_EXTENSIONS,
    BadImageError,
    decode_rgb,
    find_bad_images,
    is_photo_name,
    read_rgb,
)


def encode_pil(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def gradient_jpeg(width: int = 64, height: int = 48) -> bytes:
    ramp = np.linspace(0, 255, width, dtype=np.uint8)
    pixels = np.stack([np.tile(ramp, (height, 1))] * 3, axis=2)
    return encode_pil(Image.fromarray(pixels), "JPEG", quality=90)


def write_bytes(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def bad_reason(path: Path) -> str:
    with pytest.raises(BadImageError) as info:
        read_rgb(path)
    return info.value.reason


def assert_rgb_uint8(image: np.ndarray, height: int, width: int) -> None:
    assert image.shape == (height, width, 3)
    assert image.dtype == np.uint8
    assert image.flags["C_CONTIGUOUS"]


# is_photo_name


@pytest.mark.parametrize(
    "name", ["cat.1.jpg", "dog.2.JPG", "1.jpeg", "x.PNG", "x.bmp", "x.webp", "dir/cat.3.Jpeg"]
)
def test_photo_name_accepted(name):
    assert is_photo_name(name)


@pytest.mark.parametrize(
    "name", [".DS_Store", "Thumbs.db", "notes.txt", "._cat.1.jpg", "jpg", "cat.1.jpg.part", ".jpg"]
)
def test_non_photo_name_rejected(name):
    assert not is_photo_name(name)


def test_photo_extensions_are_lowercase():
    for extension in PHOTO_EXTENSIONS:
        assert extension == extension.lower()
        assert extension.startswith(".")


def test_photo_name_accepts_path():
    assert is_photo_name(Path("data") / "train" / "dog.5.jpg")


# BadImageError


def test_bad_image_error_message(tmp_path):
    error = BadImageError(tmp_path / "cat.1.jpg", "truncated")
    assert "cat.1.jpg" in str(error)
    assert "truncated" in str(error)
    assert isinstance(error, ValueError)


def test_bad_image_error_attributes(tmp_path):
    error = BadImageError(tmp_path / "cat.1.jpg", "truncated")
    assert error.path == tmp_path / "cat.1.jpg"
    assert error.reason == "truncated"


# read_rgb: bad files


def test_empty_file_rejected(tmp_path):
    path = write_bytes(tmp_path, "cat.77.jpg", b"")
    assert bad_reason(path) == "empty file"


def test_half_jpeg_truncated(tmp_path):
    data = gradient_jpeg()
    path = write_bytes(tmp_path, "dog.12.jpg", data[: len(data) // 2])
    assert bad_reason(path) == "truncated"


def test_jpeg_cut_before_last_byte(tmp_path):
    data = gradient_jpeg()
    path = write_bytes(tmp_path, "dog.13.jpg", data[:-1])
    assert bad_reason(path) == "truncated"


def test_truncated_jpeg_with_thumbnail_marker(tmp_path):
    # An APP1 segment with its own FFD9, like an EXIF thumbnail, must not count as the end.
    data = gradient_jpeg()
    payload = b"Exif\x00\x00" + b"\xff\xd8\xff\xd9"
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    with_thumbnail = data[:2] + app1 + data[2:]
    assert read_rgb(write_bytes(tmp_path, "whole.jpg", with_thumbnail)).shape == (48, 64, 3)
    cut = with_thumbnail[: len(with_thumbnail) // 2]
    assert bad_reason(write_bytes(tmp_path, "cut.jpg", cut)) == "truncated"


def test_jpeg_header_only_truncated(tmp_path):
    data = gradient_jpeg()
    path = write_bytes(tmp_path, "cat.5.jpg", data[:20])
    assert bad_reason(path) == "truncated"


def test_jpeg_trailing_bytes_accepted(tmp_path):
    data = gradient_jpeg() + b"\x00" * 10_000 + b"trailer"
    image = read_rgb(write_bytes(tmp_path, "cat.6.jpg", data))
    assert_rgb_uint8(image, 48, 64)


def test_text_not_an_image(tmp_path):
    path = write_bytes(tmp_path, "cat.9.jpg", b"hello")
    assert bad_reason(path) == "not an image"


def test_text_starting_bm_not_an_image(tmp_path):
    path = write_bytes(tmp_path, "cat.10.jpg", b"BMW parked outside, no cat in sight")
    assert bad_reason(path) == "not an image"


def test_half_png_truncated(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    data = encode_pil(Image.fromarray(pixels), "PNG")
    path = write_bytes(tmp_path, "cat.11.png", data[: len(data) // 2])
    assert bad_reason(path) == "truncated"


def test_png_without_iend_truncated(tmp_path):
    data = encode_pil(Image.new("RGB", (4, 4), (1, 2, 3)), "PNG")
    path = write_bytes(tmp_path, "cat.12.png", data[:-12])
    assert bad_reason(path) == "truncated"


def test_half_bmp_truncated(tmp_path):
    data = encode_pil(Image.new("RGB", (16, 16), (1, 2, 3)), "BMP")
    path = write_bytes(tmp_path, "cat.13.bmp", data[: len(data) // 2])
    assert bad_reason(path) == "truncated"


def test_half_webp_truncated(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    data = encode_pil(Image.fromarray(pixels), "WEBP", lossless=True)
    path = write_bytes(tmp_path, "cat.14.webp", data[: len(data) // 2])
    assert bad_reason(path) == "truncated"


def test_jpeg_zero_dimensions_corrupt(tmp_path):
    # The markers are intact, but the frame header says 0x0 pixels, so OpenCV cannot decode it.
    data = bytearray(gradient_jpeg())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = b"\x00\x00\x00\x00"
    path = write_bytes(tmp_path, "cat.15.jpg", bytes(data))
    assert bad_reason(path) == "corrupt"


def test_directory_unreadable(tmp_path):
    folder = tmp_path / "cat.16.jpg"
    folder.mkdir()
    assert bad_reason(folder) == "unreadable"


def test_missing_file_unreadable(tmp_path):
    assert bad_reason(tmp_path / "absent.jpg") == "unreadable"


def test_empty_bytes_decode_rejected():
    with pytest.raises(BadImageError, match="empty file"):
        decode_rgb(b"", "cat.1.jpg")


# read_rgb: unusual but valid files


def test_rgba_png_behind_jpg_name(tmp_path):
    rgba = np.zeros((3, 5, 4), dtype=np.uint8)
    rgba[1, 2] = (200, 100, 50, 0)
    rgba[0, 0] = (10, 20, 30, 255)
    path = write_bytes(tmp_path, "cat.4.jpg", encode_pil(Image.fromarray(rgba, "RGBA"), "PNG"))
    image = read_rgb(path)
    assert_rgb_uint8(image, 3, 5)
    assert image[0, 0].tolist() == [10, 20, 30]
    assert image[1, 2].tolist() == [200, 100, 50]


def test_grayscale_jpeg_one_pixel(tmp_path):
    data = encode_pil(Image.new("L", (1, 1), 128), "JPEG")
    image = read_rgb(write_bytes(tmp_path, "cat.20.jpg", data))
    assert_rgb_uint8(image, 1, 1)
    assert image[0, 0, 1] == image[0, 0, 0]
    assert image[0, 0, 2] == image[0, 0, 0]
    assert abs(int(image[0, 0, 0]) - 128) <= 2


def test_cmyk_jpeg_one_pixel(tmp_path):
    # Full magenta and yellow ink with no cyan or black is red. JPEG is lossy, so allow a small error.
    data = encode_pil(Image.new("CMYK", (1, 1), (0, 255, 255, 0)), "JPEG")
    image = read_rgb(write_bytes(tmp_path, "cat.21.jpg", data))
    assert_rgb_uint8(image, 1, 1)
    assert image[0, 0, 0] >= 240
    assert image[0, 0, 1] <= 15
    assert image[0, 0, 2] <= 15


def test_palette_png_colours(tmp_path):
    palette_image = Image.new("P", (2, 2), 0)
    palette_image.putpalette([0, 0, 0, 200, 100, 50] + [0] * (254 * 3))
    palette_image.putpixel((1, 0), 1)
    image = read_rgb(write_bytes(tmp_path, "cat.22.png", encode_pil(palette_image, "PNG")))
    assert_rgb_uint8(image, 2, 2)
    assert image[0, 1].tolist() == [200, 100, 50]
    assert image[0, 0].tolist() == [0, 0, 0]


def test_grayscale_alpha_png(tmp_path):
    data = encode_pil(Image.new("LA", (3, 2), (77, 0)), "PNG")
    image = read_rgb(write_bytes(tmp_path, "cat.23.png", data))
    assert_rgb_uint8(image, 2, 3)
    assert image[1, 2].tolist() == [77, 77, 77]


def test_grayscale_png_exact(tmp_path):
    data = encode_pil(Image.new("L", (2, 2), 99), "PNG")
    image = read_rgb(write_bytes(tmp_path, "cat.24.png", data))
    assert_rgb_uint8(image, 2, 2)
    assert image[0, 0].tolist() == [99, 99, 99]


def test_sixteen_bit_png_scaled(tmp_path):
    bgr16 = np.zeros((2, 3, 3), dtype=np.uint16)
    bgr16[..., 2] = 200 * 257  # red channel in OpenCV's BGR order
    bgr16[..., 0] = 65535  # blue
    ok, encoded = cv2.imencode(".png", bgr16)
    assert ok
    image = read_rgb(write_bytes(tmp_path, "cat.25.png", encoded.tobytes()))
    assert_rgb_uint8(image, 2, 3)
    assert image[0, 0].tolist() == [200, 0, 255]


def test_rgb_png_channel_order(tmp_path):
    data = encode_pil(Image.new("RGB", (2, 1), (250, 5, 1)), "PNG")
    image = read_rgb(write_bytes(tmp_path, "cat.26.png", data))
    assert image[0, 0].tolist() == [250, 5, 1]


def test_lossless_webp_and_bmp(tmp_path):
    for fmt, options in [("WEBP", {"lossless": True}), ("BMP", {})]:
        data = encode_pil(Image.new("RGB", (2, 2), (1, 2, 3)), fmt, **options)
        image = read_rgb(write_bytes(tmp_path, f"cat.{fmt}.img", data))
        assert_rgb_uint8(image, 2, 2)
        assert image[1, 1].tolist() == [1, 2, 3]


def test_exif_orientation_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    data = encode_pil(Image.new("RGB", (4, 2), (255, 0, 0)), "JPEG", exif=exif)
    image = read_rgb(write_bytes(tmp_path, "dog.31.jpg", data))
    assert image.shape == (4, 2, 3)


def test_bgr_fallback_matches(tmp_path, monkeypatch):
    data = encode_pil(Image.new("RGB", (2, 1), (250, 5, 1)), "PNG")
    monkeypatch.setattr("catsdogs.images._IMREAD_COLOR_RGB", None)
    image = decode_rgb(data)
    assert image[0, 0].tolist() == [250, 5, 1]
    assert image.flags["C_CONTIGUOUS"]


def test_decode_rgb_matches_read(tmp_path):
    data = gradient_jpeg()
    path = write_bytes(tmp_path, "dog.30.jpg", data)
    assert np.array_equal(decode_rgb(data), read_rgb(path))


# find_bad_images


def test_find_bad_images_mixed_folder(tmp_path):
    good_jpeg = gradient_jpeg()
    files = {
        "cat.1.jpg": good_jpeg,
        "cat.77.jpg": b"",
        "dog.2.png": encode_pil(Image.new("RGBA", (4, 4), (1, 2, 3, 4)), "PNG"),
        "dog.12.jpg": good_jpeg[: len(good_jpeg) // 2],
        "cat.9.jpg": b"hello",
        "dog.3.jpg": encode_pil(Image.new("CMYK", (2, 2), (0, 0, 0, 0)), "JPEG"),
    }
    for name, data in files.items():
        write_bytes(tmp_path, name, data)
    paths = [tmp_path / name for name in files]

    bad = find_bad_images(paths, workers=3)

    assert bad == [
        (tmp_path / "cat.77.jpg", "empty file"),
        (tmp_path / "dog.12.jpg", "truncated"),
        (tmp_path / "cat.9.jpg", "not an image"),
    ]


def test_find_bad_images_all_good(tmp_path):
    paths = [write_bytes(tmp_path, f"cat.{i}.jpg", gradient_jpeg()) for i in range(5)]
    assert find_bad_images(paths) == []


def test_find_bad_images_accepts_strings(tmp_path):
    path = write_bytes(tmp_path, "cat.1.jpg", b"")
    assert find_bad_images([str(path)], workers=1) == [(path, "empty file")]


def test_find_bad_images_rejects_zero_workers(tmp_path):
    with pytest.raises(ValueError, match="workers"):
        find_bad_images([], workers=0)
