"""Decoding and preprocessing: every format and mode, EXIF orientation, and refusal of bad bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from kubeclassify.core.resources import ImageInputSpec
from kubeclassify.inference.preprocess import ImageError, decode, prepare, scale_pixels

RGB = ImageInputSpec(height=8, width=12)
GRAY = ImageInputSpec(height=8, width=12, channels=1, color_mode="grayscale")


def encoded(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_every_format_decodes_to_the_spec(fmt: str) -> None:
    red = Image.new("RGB", (30, 20), (250, 10, 10))
    image = decode(encoded(red, fmt))
    arr = prepare(image, RGB)
    assert arr.shape == (8, 12, 3) and arr.dtype == np.uint8
    assert arr[..., 0].mean() > 200 and arr[..., 2].mean() < 60


def test_modes_become_rgb_or_l() -> None:
    palette = Image.new("P", (8, 8))
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((0, 0), 1)
    assert decode(encoded(palette, "PNG")).mode == "RGB"
    assert decode(encoded(Image.new("L", (8, 8), 90), "PNG")).mode == "L"
    sixteen = Image.fromarray(np.full((8, 8), 4000, dtype=np.uint16))
    arr = np.asarray(decode(encoded(sixteen, "PNG")))
    assert arr.dtype == np.uint8 and arr.max() == 255
    cmyk = decode(encoded(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))
    assert cmyk.mode == "RGB" and np.asarray(cmyk)[..., 0].mean() > 200
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert np.asarray(decode(encoded(transparent, "PNG"))).min() == 255, "transparency is white"


def test_gif_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert np.asarray(decode(data))[..., 0].mean() > 200


def test_exif_orientation_is_applied() -> None:
    wide = Image.new("RGB", (40, 10), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    assert decode(encoded(wide, "JPEG", exif=exif)).size == (10, 40)


def test_grayscale_and_bgr_preparation_and_scaling() -> None:
    img = Image.new("RGB", (12, 8), (255, 128, 0))
    assert prepare(img, GRAY).shape == (8, 12, 1)
    bgr = prepare(img, ImageInputSpec(height=8, width=12, color_mode="bgr"))
    assert tuple(bgr[0, 0]) == (0, 128, 255)
    x = np.full((1, 2, 2, 3), 255.0, dtype=np.float32)
    assert scale_pixels(x, RGB).max() == pytest.approx(1.0)
    assert scale_pixels(x, ImageInputSpec(scaling="-1..1")).max() == pytest.approx(1.0)
    assert scale_pixels(x, ImageInputSpec(scaling="none")).max() == 255.0
    imagenet = scale_pixels(x, ImageInputSpec(scaling="imagenet"))
    assert imagenet[0, 0, 0, 0] == pytest.approx((1 - 0.485) / 0.229, rel=1e-5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"GIF89a but not really", "not an image"),
        (b"plain text", "not an image"),
    ],
)
def test_bad_bytes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        decode(data)


def test_limits_are_checked_before_decoding() -> None:
    big = encoded(Image.new("L", (3000, 3000)), "PNG")
    with pytest.raises(ImageError, match="limit is 1000000 pixels"):
        decode(big, max_pixels=1_000_000)
    with pytest.raises(ImageError, match="limit is 10 bytes"):
        decode(big, max_bytes=10)
    jpeg = encoded(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")
    with pytest.raises(ImageError, match="corrupt or truncated"):
        decode(jpeg[: len(jpeg) // 2])


def test_large_jpegs_decode_at_a_reduced_scale_but_never_below_the_target() -> None:
    from kubeclassify.inference.preprocess import load_image

    photo = encoded(Image.new("RGB", (1600, 1200), (10, 200, 30)), "JPEG")
    assert decode(photo).size == (1600, 1200)
    reduced = decode(photo, at_least=224)
    assert reduced.size == (400, 300), "an eighth would be below 224 pixels; a quarter is not"
    arr = load_image(photo, ImageInputSpec(height=224, width=224))
    assert arr.shape == (224, 224, 3) and abs(int(arr[..., 1].mean()) - 200) < 5
