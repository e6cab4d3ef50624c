"""The demo's image server: a threaded HTTP server on 127.0.0.1 serving the web's images
from memory (404 for the missing ones), stopped at the end of the demo."""

from __future__ import annotations

import http.server
import threading
from collections import Counter
from types import TracebackType

from wit_builder.demo.web import WebImage

TYPES = {"png": "image/png", "jpg": "image/jpeg"}


class ImageServer:
    """Serve `images` on 127.0.0.1:`port` in a background thread (a context manager)."""

    def __init__(self, images: list[WebImage], port: int) -> None:
        files = {im.path: im.data for im in images if im.data is not None}
        self.requests: Counter[int] = Counter()
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = files.get(self.path.split("?", 1)[0])
                code = 200 if data is not None else 404
                requests[code] += 1
                body = data if data is not None else b"not found"
                self.send_response(code)
                kind = TYPES.get(self.path.rsplit(".", 1)[-1], "text/plain")
                self.send_header("Content-Type", kind if code == 200 else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # the demo prints a summary
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
