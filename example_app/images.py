"""Images from a request (raw body or multipart), decoded with Pillow into ``image_load`` points.

``exif`` is whether EXIF orientation is used (the ``use_exif_info`` query parameter);
``autorotated`` is whether the image was actually turned by it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from luna_monitoring import current_collector

from .errors import BAD_IMAGE, EMPTY_BODY, IMAGE_TOO_LARGE, LunaError

MAX_PIXELS = 40_000_000
_ORIENTATION = 0x0112
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass(frozen=True, slots=True)
class LoadedImage:
    """One decoded, upright RGB image and what it was sent as."""

    filename: str
    format: str
    size: int
    image: Image.Image
    autorotated: bool


def checked_images(sent: list[tuple[str, bytes]], max_size: int) -> list[tuple[str, bytes]]:
    """``sent`` (``(filename, bytes)`` of every image of a request), each checked to be neither
    empty nor larger than ``max_size``."""
    for filename, body in sent:
        if not body:
            raise LunaError(EMPTY_BODY, f"image {filename!r} is empty")
        if len(body) > max_size:
            raise LunaError(
                IMAGE_TOO_LARGE, f"image {filename!r} has {len(body)} bytes, at most {max_size}"
            )
    return sent


def load_image(filename: str, body: bytes, *, use_exif: bool) -> LoadedImage:
    """Decode one image, turned upright by its EXIF orientation when ``use_exif``."""
    try:
        image = Image.open(io.BytesIO(body))
        image_format = image.format or "unknown"
        if image.width * image.height > MAX_PIXELS:
            raise LunaError(
                IMAGE_TOO_LARGE,
                f"image {filename!r} has {image.width}x{image.height} pixels, at most {MAX_PIXELS}",
            )
        rotate = use_exif and image.getexif().get(_ORIENTATION, 1) != 1
        with current_collector().image_load(
            format=image_format, exif=use_exif, autorotated=rotate
        ) as load:
            image.load()
            if rotate:
                image = ImageOps.exif_transpose(image)
            load.set(size=len(body), height=image.height, width=image.width)
    except UnidentifiedImageError:
        raise LunaError(BAD_IMAGE, f"image {filename!r} is in no format Pillow reads") from None
    except _DECODE_ERRORS as exc:
        raise LunaError(BAD_IMAGE, f"image {filename!r} cannot be decoded: {exc}") from None
    upright = image if image.mode == "RGB" else image.convert("RGB")
    return LoadedImage(filename, image_format, len(body), upright, rotate)


def load_images(sent: list[tuple[str, bytes]], *, use_exif: bool) -> list[LoadedImage]:
    """Decode every image of a request."""
    return [load_image(name, body, use_exif=use_exif) for name, body in sent]
