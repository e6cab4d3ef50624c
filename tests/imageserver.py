"""A real HTTP server on 127.0.0.1 serving real images (scikit-image's sample photos)
and every way a download can go wrong, for the download tests and the demo's tests.

Paths (``ROUTES`` says each one's expected outcome): ``/photo/NAME.FMT`` real photos as
jpg/png/webp/gif; ``/cmyk.jpg``; ``/rotated.jpg`` (EXIF orientation 6: stored 600×400,
displayed 400×600); ``/deep16.png`` (16-bit grey); ``/alpha.png`` (RGBA); ``/missing.jpg``
404; ``/flaky.jpg`` 500 on the first request, then the image; ``/slow.jpg`` answers after
`SLOW_SECONDS`; ``/redirect/3`` a chain of redirects to a photo; ``/to-private`` a
redirect to 127.0.0.2 (refused); ``/optout.jpg`` ``X-Robots-Tag: noai``;
``/truncated.jpg`` half a JPEG; ``/bad-header.jpg`` a JPEG header cut into text;
``/html.jpg`` HTML sent as image/jpeg; ``/bomb.png`` a PNG declaring 30000×30000
pixels; ``/small.png`` 16×16; ``/wide.jpg`` 1000×50.
``/copy/...`` (`COPIES`) are copies of photos: re-encoded at JPEG quality 40, resized,
shifted by one pixel, byte-identical.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import struct
import tarfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from tests.builders import LocalServer
from wit_builder.curate.pairs import ENTRY_IDS, KEEP_PROB, PAIR_SCHEMA, PAIRS_FILE

SLOW_SECONDS = 4.0
LOOPBACK = ["127.0.0.1/32"]  # what downloads from this server must be allowed
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "camera",
          "moon", "hubble_deep_field", "colorwheel", "coins", "brick", "grass", "gravel",
          "clock", "page", "text")


def photo(name: str) -> Image.Image:
    """A real photo from scikit-image's bundled data, as RGB or L."""
    import skimage.data

    array = getattr(skimage.data, name)()
    return Image.fromarray(array.astype(np.uint8) if array.dtype != np.uint8 else array)


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kw)
    return out.getvalue()


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header declaring `width`×`height` pixels, with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def skimage_logo() -> Image.Image:
    """scikit-image's logo: a real RGBA image with a transparent background."""
    import skimage.data

    return Image.fromarray(skimage.data.logo())


def rotated_jpeg() -> bytes:
    """coffee (600×400) stored as is, with EXIF orientation 6 (rotate 90° clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(photo("coffee"), "JPEG", exif=exif.tobytes())


# copy path → the photo path it copies
COPIES = {
    "/copy/astronaut-q40.jpg": "/photo/astronaut.jpg",
    "/copy/astronaut-300.jpg": "/photo/astronaut.jpg",
    "/copy/chelsea-shift.png": "/photo/chelsea.png",
    "/copy/rocket-q40.jpg": "/photo/rocket.gif",
    "/copy/coffee-same.webp": "/photo/coffee.webp",
}


def copy_files(files: dict[str, tuple[str, bytes]]) -> dict[str, tuple[str, bytes]]:
    """The `COPIES`, made from the photos."""
    astronaut, chelsea, rocket = photo("astronaut"), photo("chelsea"), photo("rocket")
    return {
        "/copy/astronaut-q40.jpg": ("image/jpeg", encode(astronaut, "JPEG", quality=40)),
        "/copy/astronaut-300.jpg": ("image/jpeg", encode(astronaut.resize((300, 300)),
                                                         "JPEG")),
        "/copy/chelsea-shift.png": ("image/png", encode(chelsea.crop(
            (1, 0, chelsea.width, chelsea.height)), "PNG")),
        "/copy/rocket-q40.jpg": ("image/jpeg", encode(rocket, "JPEG", quality=40)),
        "/copy/coffee-same.webp": files["/photo/coffee.webp"],
    }


def build_files() -> dict[str, tuple[str, bytes]]:
    """path → (content type, body) of the static routes."""
    files = {}
    for i, name in enumerate(PHOTOS):
        fmt = ("jpg", "png", "webp", "gif")[i % 4]
        pil_fmt = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF"}[fmt]
        files[f"/photo/{name}.{fmt}"] = (f"image/{'jpeg' if fmt == 'jpg' else fmt}",
                                         encode(photo(name), pil_fmt))
    jpeg = encode(photo("chelsea"), "JPEG")
    files["/cmyk.jpg"] = ("image/jpeg", encode(photo("astronaut").convert("CMYK"), "JPEG"))
    files["/rotated.jpg"] = ("image/jpeg", rotated_jpeg())
    deep = np.asarray(photo("camera"), dtype=np.uint16) * 257  # 16-bit grey
    files["/deep16.png"] = ("image/png", encode(Image.fromarray(deep), "PNG"))
    logo = skimage_logo()  # RGBA with transparency
    files["/alpha.png"] = ("image/png", encode(logo, "PNG"))
    files["/flaky.jpg"] = ("image/jpeg", jpeg)
    files["/slow.jpg"] = ("image/jpeg", jpeg)
    files["/optout.jpg"] = ("image/jpeg", jpeg)
    files["/truncated.jpg"] = ("image/jpeg", encode(photo("rocket"), "JPEG")[:5000])
    files["/html.jpg"] = ("image/jpeg", b"<!doctype html><html><body>Not found</body></html>")
    # a JPEG start and APP0 marker, then text: Pillow fails while reading the header
    files["/bad-header.jpg"] = ("image/jpeg", b"\xff\xd8\xff\xe0 not really a jpeg")
    files["/bomb.png"] = ("image/png", bomb_png())
    files["/small.png"] = ("image/png", encode(photo("astronaut").resize((16, 16)), "PNG"))
    files["/wide.jpg"] = ("image/jpeg", encode(photo("coffee").resize((1000, 50)), "JPEG"))
    files["/Mein Foto.jpg"] = ("image/jpeg", jpeg)  # sent as /Mein%20Foto.jpg
    files["/bild-ä.jpg"] = ("image/jpeg", jpeg)  # sent as /bild-%C3%A4.jpg
    files.update(copy_files(files))
    return files


# path → expected outcome of a download that allows 127.0.0.1/32 with timeout < SLOW.
ROUTES = {
    **{f"/photo/{n}.{('jpg', 'png', 'webp', 'gif')[i % 4]}": "success"
       for i, n in enumerate(PHOTOS)},
    "/cmyk.jpg": "success", "/rotated.jpg": "success", "/flaky.jpg": "success",
    "/deep16.png": "success", "/alpha.png": "success",
    "/redirect/3": "success", "/missing.jpg": "http_4xx", "/slow.jpg": "timeout",
    "/to-private": "blocked_address", "/optout.jpg": "opted_out",
    "/truncated.jpg": "decode_error", "/bad-header.jpg": "decode_error",
    "/html.jpg": "not_an_image", "/bomb.png": "too_large",
    "/small.png": "too_small", "/wide.jpg": "bad_aspect",
}
# Hostile servers and URLs a browser would still fetch (a download with a deadline
# shorter than forever): path → expected outcome.
HOSTILE_ROUTES = {
    "/Mein Foto.jpg": "success", "/bild-ä.jpg": "success",
    "/tarpit.jpg": "timeout", "/endless.jpg": "too_large", "/declared-huge.jpg": "too_large",
    "/redirect-loop": "too_many_redirects", "/to-file": "blocked_scheme",
}
TARPIT_BYTES_PER_S = 16  # /tarpit.jpg drips its body this slowly, forever


class ImageServer(LocalServer):
    """The server (threaded; started on creation, stopped by `close`). `requests` counts
    the requests each path received."""

    def __init__(self, hold: str | None = None) -> None:
        self.files = build_files()
        self.requests: Counter[str] = Counter()
        self.arrived, self.released = threading.Event(), threading.Event()
        self.hold = hold
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests[self.path] += 1
                server.respond(self)

            def log_message(self, *args) -> None:
                pass

        super().__init__(Handler)

    def respond(self, h: http.server.BaseHTTPRequestHandler) -> None:
        path = unquote(h.path.split("?", 1)[0])  # a query string names a copy of the file
        if path == self.hold and not self.released.is_set():
            self.arrived.set()
            self.released.wait()
        if path.startswith("/redirect/"):
            hops = int(path.rsplit("/", 1)[1])
            target = f"/redirect/{hops - 1}" if hops > 1 else "/photo/astronaut.jpg"
            return self.redirect(h, target)
        if path == "/redirect-loop":
            return self.redirect(h, "/redirect-loop")
        if path == "/to-file":
            return self.redirect(h, "file:///etc/passwd")
        if path == "/to-private":
            return self.redirect(h, f"http://127.0.0.2:{self.port}/photo/astronaut.jpg")
        if path == "/flaky.jpg" and self.requests[path] == 1:
            return self.send(h, 500, "text/plain", b"try again")
        if path == "/slow.jpg":
            time.sleep(SLOW_SECONDS)
        if path in ("/tarpit.jpg", "/endless.jpg", "/declared-huge.jpg"):
            return self.stream(h, path)
        if path not in self.files:
            return self.send(h, 404, "text/plain", b"not found")
        ctype, body = self.files[path]
        extra = {"X-Robots-Tag": "noai"} if path == "/optout.jpg" else {}
        return self.send(h, 200, ctype, body, extra)

    @staticmethod
    def send(h, code: int, ctype: str, body: bytes, headers: dict | None = None) -> None:
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            h.wfile.write(body)  # fails when the client gave up (the timeout case)

    @staticmethod
    def stream(h, path: str) -> None:
        """A body that never ends: dripped (tarpit), as fast as possible (endless), or
        declared far over any cap."""
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        if path == "/declared-huge.jpg":
            h.send_header("Content-Length", str(10 * 2**30))
        h.end_headers()
        chunk = b"\xff" * (1 if path == "/tarpit.jpg" else 1 << 16)
        with contextlib.suppress(OSError):  # until the client gives up
            while True:
                h.wfile.write(chunk)
                h.wfile.flush()
                if path == "/tarpit.jpg":
                    time.sleep(1 / TARPIT_BYTES_PER_S)

    @staticmethod
    def redirect(h, location: str) -> None:
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        super().close()


def write_pairs(directory: Path, urls: list[str]) -> Path:
    """A balance-stage output holding one pair per URL (uid i, caption naming the URL)."""
    rows = {name: [None] * len(urls) for name in PAIR_SCHEMA.names}
    rows.update(uid=[f"{i:024x}" for i in range(len(urls))], url=urls,
                text=[f"a picture from {u.rsplit('/', 1)[-1]}" for u in urls],
                page_url=[f"http://example.com/page{i}.html" for i in range(len(urls))])
    table = pa.table(rows, schema=PAIR_SCHEMA)
    table = table.append_column(ENTRY_IDS, pa.array([[i % 7] for i in range(len(urls))],
                                                    ENTRY_IDS.type))
    table = table.append_column(KEEP_PROB, pa.array([1.0] * len(urls), pa.float64()))
    (directory / PAIRS_FILE).mkdir(parents=True)
    pq.write_table(table, directory / PAIRS_FILE / "part-0.parquet")
    return directory


def samples(out: Path) -> dict[str, dict]:
    """{uid: {"jpg": bytes, "txt": str, "json": dict, "key": str}} over all shards."""
    found: dict[str, dict] = {}
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            members: dict[str, dict] = {}
            for m in tar.getmembers():
                key, ext = m.name.split(".", 1)
                members.setdefault(key, {"key": key})[ext] = tar.extractfile(m).read()
        for sample in members.values():
            meta = json.loads(sample["json"])
            assert meta["uid"] not in found, f"{meta['uid']} twice"
            found[meta["uid"]] = {**sample, "json": meta, "txt": sample["txt"].decode()}
    return found
