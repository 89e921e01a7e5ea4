"""A local HTTP site on a free port of 127.0.0.1 that serves fixed pages: what ``http.get``
reads in tests and benchmarks (nothing here leaves this machine)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["local_site"]


@contextmanager
def local_site(pages: Mapping[str, tuple[str, bytes]]) -> Iterator[str]:
    """Serve ``pages`` (path -> content type and body; the query is ignored) and yield the
    site's base URL; any other path is a 404."""

    class Page(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            found = pages.get(self.path.partition("?")[0])
            kind, body = found or ("text/plain", b"not found")
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
