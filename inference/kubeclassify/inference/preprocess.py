"""Turn encoded images into model input, the same way for training, the predictor and batches.

`decode` opens an image safely: a byte cap, a pixel cap checked from the header before any pixel
is decoded (decompression bombs), EXIF orientation applied, and every mode Pillow reads (palette,
16-bit, CMYK, RGBA, multi-frame: the first frame) brought to RGB or L. `prepare` resizes and sets
the channels; `scale_pixels` applies the spec's scaling to numpy arrays and TensorFlow tensors alike.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kubeclassify.core.resources import ImageInputSpec

MAX_BYTES = 32 * 1024 * 1024
MAX_PIXELS = 40_000_000  # well below Pillow's own bomb limit (about 179 million)

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class ImageError(ValueError):
    """The bytes are not an image this service accepts; the message says why."""


def decode(
    data: bytes, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS, at_least: int | None = None
) -> Image.Image:
    """Open and fully decode an image, refusing what is too large before decoding its pixels.

    With `at_least`, a JPEG much larger than that is decoded at a reduced scale in the DCT domain
    (Pillow's draft mode), never below `at_least` pixels on either side: about half the work."""
    if not data:
        raise ImageError("empty body: expected an encoded image")
    if len(data) > max_bytes:
        raise ImageError(f"image is {len(data)} bytes; the limit is {max_bytes} bytes")
    try:
        image: Image.Image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as e:
        raise ImageError("not an image (or a format that is not supported)") from e
    except Image.DecompressionBombError as e:
        raise ImageError(f"image has too many pixels: {e}") from e
    except (OSError, SyntaxError, ValueError) as e:  # a header cut short or malformed
        raise ImageError(f"image is corrupt or truncated: {e}") from e
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"image is {width}x{height} pixels; the limit is {max_pixels} pixels")
    try:
        if at_least is not None and image.format == "JPEG" and image.mode in ("RGB", "L"):
            image.draft(image.mode, (at_least, at_least))
        image.seek(0)  # the first frame of an animation
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # a copy only when it must turn
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"image is corrupt or truncated: {e}") from e
    return _to_rgb_or_l(image)


def _to_rgb_or_l(image: Image.Image) -> Image.Image:
    if image.mode in ("RGB", "L"):
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16- and 32-bit grayscale: stretch to 8 bits by the range actually used.
        arr = np.asarray(image, dtype=np.float32)
        hi = float(arr.max()) or 1.0
        return Image.fromarray((arr * (255.0 / hi)).clip(0, 255).astype(np.uint8), mode="L")
    if image.mode in ("LA", "PA", "RGBA", "P") and ("transparency" in image.info or "A" in image.mode):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # transparent areas become white
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(
    data: bytes, spec: ImageInputSpec, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Encoded bytes to the spec's HxWxC uint8 array: the predictor's and the batch worker's path."""
    image = decode(data, max_bytes, max_pixels, at_least=max(spec.height, spec.width))
    return prepare(image, spec)


def prepare(image: Image.Image, spec: ImageInputSpec) -> np.ndarray:
    """An HxWxC uint8 array: resized with the spec's filter, in its colour mode."""
    mode = "L" if spec.channels == 1 else "RGB"
    if image.mode != mode:
        image = image.convert(mode)
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), _RESAMPLE[spec.resize_method])
    arr = np.asarray(image, dtype=np.uint8)
    if spec.channels == 1:
        arr = arr[:, :, None]
    elif spec.color_mode == "bgr":
        arr = arr[:, :, ::-1]
    return arr


def scale_pixels(x: Any, spec: ImageInputSpec) -> Any:
    """Scale 0..255 pixels as the spec says; `x` is a float numpy array or TensorFlow tensor."""
    if spec.scaling == "0..1":
        return x / 255.0
    if spec.scaling == "-1..1":
        return x / 127.5 - 1.0
    if spec.scaling == "imagenet":
        order = slice(None, None, -1) if spec.color_mode == "bgr" else slice(None)
        return (x / 255.0 - _IMAGENET_MEAN[order]) / _IMAGENET_STD[order]
    return x
