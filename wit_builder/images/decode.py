"""Image bytes → checked, upright, RGB, resized JPEG: the resizer `wit download` gives
img2dataset's `Downloader`.

Pillow instead of img2dataset's OpenCV resizer, because OpenCV ignores EXIF orientation
and the checks below must happen before any pixel is decoded. In order:

1. The header is read lazily: bytes that are no image (HTML served as ``image/jpeg``)
   are ``not_an_image``.
2. The declared size is checked before decoding: more than `max_pixels` pixels is
   ``too_large`` (a 30000×30000 PNG is a few KB on the wire and 3.6 GB decoded), a short
   side under `min_image_size` is ``too_small``, long/short over `max_aspect_ratio` is
   ``bad_aspect``.
3. JPEGs are decoded at a reduced scale when the target is much smaller (``draft``),
   the EXIF orientation is applied, and every mode (CMYK, palette, 16-bit, alpha) is
   converted to RGB (transparency over white). A file that fails to decode (truncated)
   is ``decode_error``.
4. Resize: ``keep_ratio`` makes the short side `image_size` (never enlarging),
   ``center_crop`` then crops the centre square, ``no`` keeps the size. Encoded as JPEG.

The original (upright) width and height are returned with the new ones; an error is a
message starting with its reason.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ResizeMode = Literal["keep_ratio", "center_crop", "no"]
Result = tuple[bytes | None, int | None, int | None, int | None, int | None, str | None]
# EXIF orientations 5–8 swap width and height.
SWAPPING_ORIENTATIONS = {5, 6, 7, 8}


class Rejected(ValueError):
    """An image that is not kept; the message starts with the reason."""


@dataclass(frozen=True)
class Resizer:
    """Callable as img2dataset's resizer: ``(stream, bbox) -> (jpeg, w, h, orig_w,
    orig_h, error)``."""

    image_size: int = 256
    resize_mode: ResizeMode = "keep_ratio"
    min_image_size: int = 32
    max_aspect_ratio: float = 10.0
    max_pixels: int = 50_000_000
    quality: int = 95

    def __call__(self, stream: io.BytesIO, bbox_list: Any = None) -> Result:
        try:
            return self.process(stream.read())
        except Rejected as e:
            return None, None, None, None, None, str(e)
        except Exception as e:  # an escaped error would lose the row
            # img2dataset drops a sample whose resizer raises without recording it; any
            # failure not foreseen above is still a counted decode_error
            return None, None, None, None, None, f"decode_error: {type(e).__name__}: {e}"

    def process(self, data: bytes) -> Result:
        """The resized JPEG and sizes of `data` (raises `Rejected`)."""
        image = open_image(data)
        width, height = upright_size(image)
        self.check_size(width, height)
        image = to_rgb(upright(decoded(image, self.draft_size(width, height))))
        image = self.resize(image)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=self.quality)
        return out.getvalue(), image.width, image.height, width, height, None

    def check_size(self, width: int, height: int) -> None:
        """Reject by declared size (before decoding)."""
        if width * height > self.max_pixels:
            raise Rejected(f"too_large: {width}x{height} pixels")
        if min(width, height) < self.min_image_size:
            raise Rejected(f"too_small: {width}x{height}")
        if max(width, height) / max(1, min(width, height)) > self.max_aspect_ratio:
            raise Rejected(f"bad_aspect: {width}x{height}")

    def draft_size(self, width: int, height: int) -> tuple[int, int] | None:
        """The smallest size worth decoding to (None: full size)."""
        if self.resize_mode == "no":
            return None
        scale = self.image_size / min(width, height)
        return (max(1, int(width * scale)), max(1, int(height * scale))) if scale < 1 else None

    def resize(self, image: Image.Image) -> Image.Image:
        """Apply `resize_mode`."""
        if self.resize_mode == "no":
            return image
        scale = self.image_size / min(image.size)
        if scale < 1:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        if self.resize_mode == "center_crop":
            image = ImageOps.fit(image, (min(image.size),) * 2, Image.Resampling.LANCZOS)
        return image


def open_image(data: bytes) -> Image.Image:
    """The lazily opened image (header only); `Rejected` if it is no image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombWarning as e:
        raise Rejected(f"too_large: {e}") from None
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        reason = "too_large" if isinstance(e, Image.DecompressionBombError) else "not_an_image"
        raise Rejected(f"{reason}: {e}") from None
    except (OSError, SyntaxError, ValueError, struct.error) as e:
        # a recognised format whose header is cut or corrupt (e.g. a JPEG's APP segment
        # longer than the file): Pillow raises these from `open` itself
        raise Rejected(f"decode_error: {e}") from None


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as displayed, after the EXIF orientation."""
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block: treat as unrotated
        orientation = 1
    w, h = image.size
    return (h, w) if orientation in SWAPPING_ORIENTATIONS else (w, h)


def decoded(image: Image.Image, draft: tuple[int, int] | None) -> Image.Image:
    """Decode the pixels (at a JPEG draft scale when given); `Rejected` on failure."""
    try:
        if draft is not None and image.format == "JPEG":
            image.draft(image.mode if image.mode in ("RGB", "L", "CMYK") else "RGB", draft)
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise Rejected(f"decode_error: {e}") from None
    return image


def upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block: keep the pixels as stored
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB: 16/32-bit scaled down, transparency composited over white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array * 255.0 / top, 0, 255).astype(np.uint8))
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")
