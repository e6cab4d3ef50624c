"""The demo's small web: real images behind a server on 127.0.0.1, and WARC files of HTML
pages whose ``<img>`` tags point at them with natural alt-texts.

Images (all shipped in installed wheels): scikit-learn's digit scans — the *train* split
of `wit eval`'s digits set, plus a planted share of its *test* split so that `wit
overlap` has true copies to find — and scikit-image's sample photos. Some pages are in
German or French (dropped by language ID), a few images are broken or missing, and some
digits are served twice (a JPEG re-encoding under another URL: near-duplicates).

Everything is deterministic: the same images, captions and pages on every run.
"""

from __future__ import annotations

import html
import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ENGLISH = ("handwritten {w} on a scanned form", "a {n} written in pencil",
           "the number {w} written by hand", "scan of a handwritten digit {n}",
           "{w} drawn in black ink on white paper", "a small handwritten {w}",
           "digit {n} from a postal code form", "the numeral {w}, handwritten")
OTHER = ("eine handgeschriebene Ziffer {n} auf einem Formular",
         "le chiffre {n} écrit à la main au crayon")
OTHER_WORDS = {"de": ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben",
                      "acht", "neun")}
PHOTOS = {"astronaut": "portrait of an astronaut in a space suit",
          "chelsea": "a tabby cat looking at the camera", "coffee": "a cup of coffee",
          "rocket": "a rocket on the launch pad", "camera": "a man with a camera",
          "moon": "the surface of the moon", "coins": "old coins on a table",
          "horse": "silhouette of a horse", "clock": "a clock on the wall",
          "page": "a page of a printed book", "brick": "a brick wall",
          "grass": "green grass in a field", "gravel": "gravel on a path",
          "hubble_deep_field": "galaxies in the deep field of a space telescope"}
PAGES_PER_WARC = 40
IMAGES_PER_PAGE = 10
PLANT_SHARE = 0.05  # share of the digits test split copied onto the web
SIZE = 64  # side of the served digit images (the scans are 8×8)


@dataclass(frozen=True)
class WebImage:
    """One <img> of the web: its path on the server (None: the server answers 404), the
    bytes served, its alt-text, and what it is (for the demo's summary)."""

    path: str
    data: bytes | None
    alt: str
    kind: str  # digit, planted, photo, duplicate, broken, missing, other_language


def encode(image: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kw)
    return out.getvalue()


def digit_image(pixels: np.ndarray) -> Image.Image:
    """An 8×8 scan (0–255) as the web would show it: upscaled to SIZE px."""
    return Image.fromarray(np.asarray(pixels, dtype=np.uint8)).resize(
        (SIZE, SIZE), Image.Resampling.BICUBIC)


def caption(label: int, rng: random.Random, templates: tuple[str, ...] = ENGLISH) -> str:
    word = DIGIT_WORDS[label]
    return rng.choice(templates).format(w=word, n=label)


def digit_images(rng: random.Random) -> list[WebImage]:
    """The digits train split, the planted test copies, duplicates and other languages."""
    from wit_builder.clip.evalsets import load_digits_set

    digits = load_digits_set()
    out = []
    for i in range(len(digits.train)):
        image, label = digits.train.load(i), int(digits.train.labels[i])
        if i % 25 == 3:  # another language: the LID drops these pairs
            text = rng.choice(OTHER).format(n=OTHER_WORDS["de"][label])
            out.append(WebImage(f"/digits/train-{i}.png", encode(digit_image(image)), text,
                                "other_language"))
            continue
        out.append(WebImage(f"/digits/train-{i}.png", encode(digit_image(image)),
                            caption(label, rng), "digit"))
        if i % 40 == 7:  # the same scan again, re-encoded, under another URL
            out.append(WebImage(f"/mirror/train-{i}.jpg",
                                encode(digit_image(image).convert("RGB"), "JPEG",
                                       quality=80), caption(label, rng), "duplicate"))
    planted = rng.sample(range(len(digits.test)), round(PLANT_SHARE * len(digits.test)))
    for i in sorted(planted):
        out.append(WebImage(f"/digits/test-{i}.png", encode(digit_image(digits.test.load(i))),
                            caption(int(digits.test.labels[i]), rng), "planted"))
    return out


def photo_images() -> list[WebImage]:
    """scikit-image's photos as JPEGs, each with a plain caption."""
    import skimage.data

    out = []
    for name, text in PHOTOS.items():
        image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        out.append(WebImage(f"/photos/{name}.jpg", encode(image, "JPEG", quality=90), text,
                            "photo"))
    return out


def broken_images(count: int) -> list[WebImage]:
    """Missing images (404) and bytes that are not an image."""
    out = []
    for i in range(count):
        if i % 2:
            out.append(WebImage(f"/gone/{i}.jpg", None, "a handwritten two, scanned",
                                "missing"))
        else:
            out.append(WebImage(f"/broken/{i}.jpg", b"\xff\xd8\xff\xe0 not really a jpeg",
                                "the number seven written by hand", "broken"))
    return out


def web_images(seed: int = 0) -> list[WebImage]:
    """Every image of the demo web, in a fixed shuffled order."""
    rng = random.Random(seed)
    images = digit_images(rng) + photo_images() + broken_images(12)
    rng.shuffle(images)
    return images


def page_html(base: str, images: list[WebImage], title: str) -> bytes:
    """An HTML page showing `images` with their alt-texts (escaped)."""
    tags = "\n".join(f'<figure><img src="{base}{im.path}" alt="{html.escape(im.alt)}">'
                     f"</figure>" for im in images)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"</head><body><h1>{title}</h1>\n{tags}\n</body></html>").encode()


def write_warcs(directory: Path, base: str, images: list[WebImage]) -> list[Path]:
    """WARC files (gzip per record, warcio's writer) of pages of IMAGES_PER_PAGE images."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    directory.mkdir(parents=True, exist_ok=True)
    pages = [images[i:i + IMAGES_PER_PAGE] for i in range(0, len(images), IMAGES_PER_PAGE)]
    paths = []
    for w in range(0, len(pages), PAGES_PER_WARC):
        path = directory / f"demo-{w // PAGES_PER_WARC:03d}.warc.gz"
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as f:
            writer = WARCWriter(f, gzip=True)
            for p, page in enumerate(pages[w:w + PAGES_PER_WARC], start=w):
                body = page_html(base, page, f"Scans and photos, page {p}")
                headers = StatusAndHeaders("200 OK", [
                    ("Content-Type", "text/html; charset=utf-8"),
                    ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
                writer.write_record(writer.create_warc_record(
                    f"{base}/pages/{p}.html", "response", payload=io.BytesIO(body),
                    http_headers=headers))
        tmp.replace(path)
        paths.append(path)
    return paths
