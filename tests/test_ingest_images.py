"""ingestion.images: each kind of bad file is rejected with a reason a person understands, and each odd but
good one becomes the same kind of training image. Fast: no services, small images made here."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from core.config import IngestConfig
from data_schema import IMAGE_SIZE
from ingestion.images import RejectedImage, TrainingImage, accepted_image, convert
from serving.inputs import SERVED_FORMATS

LIMITS = IngestConfig()
RED, WHITE = (255, 0, 0), (255, 255, 255)


def encoded(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def noise(width: int, height: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))


def pixels(result: TrainingImage) -> np.ndarray:
    image = Image.open(io.BytesIO(result.image_jpeg))
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (IMAGE_SIZE, IMAGE_SIZE))
    return np.asarray(image).astype(int)


def assert_colour(area: np.ndarray, colour: tuple[int, int, int]) -> None:
    """JPEG is lossy: a flat area keeps its colour within a few levels."""
    assert np.abs(area.reshape(-1, 3).mean(axis=0) - colour).max() < 6, area.reshape(-1, 3).mean(axis=0)


def one_colour_png(width: int, height: int) -> bytes:
    """A valid black-and-white PNG of one colour, built row by row: 20000 x 20000 compresses to ~60 KB."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte, then 1 bit per pixel
    compressor = zlib.compressobj(9)
    pixels_compressed = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels_compressed)
            + chunk(b"IEND", b""))


def test_output_is_a_square_rgb_jpeg_and_keeps_the_original_size():
    result = convert(encoded(Image.new("RGB", (300, 200), RED), "JPEG"), LIMITS)
    assert_colour(pixels(result), RED)
    assert (result.height, result.width) == (200, 300)


def test_the_same_input_gives_the_same_bytes():
    data = encoded(noise(333, 222), "PNG")
    assert convert(data, LIMITS).image_jpeg == convert(data, LIMITS).image_jpeg


def test_a_zero_byte_file_is_rejected():
    with pytest.raises(RejectedImage, match=r"empty file \(0 bytes\)"):
        convert(b"", LIMITS)


def test_a_truncated_jpeg_is_rejected():
    data = encoded(noise(256, 256), "JPEG")
    with pytest.raises(RejectedImage, match="truncated or corrupt JPEG image"):
        convert(data[: len(data) // 2], LIMITS)


def test_a_png_with_a_broken_checksum_is_rejected():
    data = bytearray(encoded(noise(64, 64), "PNG"))
    data[100] ^= 0xFF  # inside the pixel data, whose chunk checksum no longer matches
    with pytest.raises(RejectedImage, match="truncated or corrupt PNG image"):
        convert(bytes(data), LIMITS)


def test_bytes_that_are_no_image_are_rejected():
    with pytest.raises(RejectedImage, match="not an image"):
        convert(b"<html><body>Access denied</body></html>", LIMITS)


def test_a_file_over_max_image_bytes_is_rejected():
    data = encoded(noise(64, 64), "PNG")
    with pytest.raises(RejectedImage, match=r"more than ingest.max_image_bytes \(1000\)"):
        convert(data, IngestConfig(max_image_bytes=1000))


def test_a_huge_image_is_rejected_without_decoding_its_pixels():
    data = one_colour_png(20000, 20000)
    assert len(data) < 1_000_000
    # Pillow's own guard refuses this one (over 179 M pixels) as it reads the header.
    with pytest.raises(RejectedImage, match=r"too many pixels, not decoded: .*400000000 pixels"):
        convert(data, LIMITS)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # as ingestion.images does; pytest resets it
def test_an_image_over_max_image_pixels_is_rejected_without_decoding_its_pixels():
    with pytest.raises(RejectedImage, match=r"too many pixels, not decoded: 12000 x 10000 = 120000000 is more than "
                                            r"ingest.max_image_pixels \(100000000\)"):
        convert(one_colour_png(12000, 10000), LIMITS)


def test_a_large_jpeg_is_decoded_at_reduced_size_and_keeps_its_size():
    result = convert(encoded(Image.new("RGB", (4000, 3000), RED), "JPEG"), LIMITS)
    assert_colour(pixels(result), RED)
    assert (result.height, result.width) == (3000, 4000)


def test_a_cmyk_jpeg_is_converted_to_rgb():
    cyan_magenta = Image.new("CMYK", (64, 64), (255, 0, 0, 0))
    cyan_magenta.paste((0, 255, 0, 0), (32, 0, 64, 64))
    result = pixels(convert(encoded(cyan_magenta, "JPEG"), LIMITS))
    assert_colour(result[:, 8:56], (0, 255, 255))
    assert_colour(result[:, 72:120], (255, 0, 255))


def test_a_palette_png_without_transparency_keeps_its_colours():
    image = Image.new("P", (64, 64), 1)
    image.putpalette([0, 0, 255, *RED])
    image.paste(0, (32, 0, 64, 64))
    result = pixels(convert(encoded(image, "PNG"), LIMITS))
    assert_colour(result[:, 8:56], RED)
    assert_colour(result[:, 72:120], (0, 0, 255))


def test_a_palette_png_with_transparency_is_put_on_white():
    image = Image.new("P", (64, 64), 1)
    image.putpalette([0, 0, 0, *RED])
    image.paste(0, (32, 0, 64, 64))
    result = pixels(convert(encoded(image, "PNG", transparency=0), LIMITS))
    assert_colour(result[:, 8:56], RED)
    assert_colour(result[:, 72:120], WHITE)  # black underneath, but transparent


def test_an_rgba_png_is_put_on_white():
    image = Image.new("RGBA", (64, 64), (*RED, 255))
    image.paste((0, 0, 0, 0), (32, 0, 64, 64))
    result = pixels(convert(encoded(image, "PNG"), LIMITS))
    assert_colour(result[:, 8:56], RED)
    assert_colour(result[:, 72:120], WHITE)


def test_a_grayscale_jpeg_becomes_grey_rgb():
    assert_colour(pixels(convert(encoded(Image.new("L", (64, 64), 100), "JPEG"), LIMITS)), (100, 100, 100))


def test_a_16_bit_grayscale_png_keeps_its_brightness():
    samples = np.full((64, 64), 32768, dtype=np.uint16)
    samples[:, 32:] = 65535
    data = encoded(Image.fromarray(samples), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    result = pixels(convert(data, LIMITS))
    assert_colour(result[:, 8:56], (128, 128, 128))  # Pillow's own conversion would make this white
    assert_colour(result[:, 72:120], WHITE)


def test_serving_accepts_the_formats_it_serves_by_the_same_rules():
    for image_format in SERVED_FORMATS:
        image = accepted_image(encoded(noise(64, 48), image_format), LIMITS, SERVED_FORMATS)
        assert (image.format, image.size) == (image_format, (64, 48))
    gif = encoded(noise(64, 48), "GIF")
    assert convert(gif, LIMITS).width == 64  # ingestion converts any format Pillow reads
    with pytest.raises(RejectedImage, match=r"^images\[0\]: not a JPEG or PNG image \(its first bytes are b'GIF8"
                                            r".*\): send JPEG or PNG bytes$"):
        accepted_image(gif, LIMITS, SERVED_FORMATS, "images[0]")


@pytest.mark.parametrize("data, reason", [
    (b"", r"empty file \(0 bytes\)"),
    (b"\x89PNG\r\n\x1a\n" + bytes(8), "truncated or corrupt PNG image: its header cannot be read"),
])
def test_a_rejection_names_the_image_and_records_the_reason_alone(data, reason):
    with pytest.raises(RejectedImage, match=f"^photo.png: {reason}$") as rejected:
        accepted_image(data, LIMITS, SERVED_FORMATS, "photo.png")
    assert rejected.value.name == "photo.png"
    with pytest.raises(RejectedImage, match=f"^{reason}$"):
        accepted_image(data, LIMITS, SERVED_FORMATS)
