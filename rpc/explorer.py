"""The block explorer every validator serves (PROTOCOL 5.10): one page of plain HTML, CSS and
one JavaScript file, from `rpc/explorer_static/`, read once at start.

`GET /` answers the page to a browser, a request whose `Accept` names `text/html`; any other
`GET /` is answered as before the explorer existed (405, `Allow: POST`: `/` is JSON-RPC). The
files are also at `GET /explorer/<name>`; a name that is not one of them is 404. The page
reads the chain through the JSON-RPC API on `POST /` and follows it over `GET /ws`, on the
validator that served it: its Content-Security-Policy allows nothing else (no script, style,
font or image from elsewhere, no inline script).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "explorer_static"
PAGE = "index.html"
PREFIX = "/explorer/"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str


def load_files(directory: Path = STATIC_DIR) -> dict[str, StaticFile]:
    """The explorer's files by name (the only names served: nothing else of the disk is)."""
    return {
        path.name: StaticFile(path.read_bytes(), CONTENT_TYPES[path.suffix])
        for path in sorted(directory.iterdir())
        if path.is_file() and path.suffix in CONTENT_TYPES
    }


@cache
def shipped_files() -> dict[str, StaticFile]:
    """The files of STATIC_DIR, read once per process (every server of it serves the same)."""
    return load_files()


def wants_html(request: web.Request) -> bool:
    """True when the client asks for HTML, as a browser does when it opens a URL."""
    return any(
        part.split(";", 1)[0].strip().lower() == "text/html"
        for part in request.headers.get("Accept", "").split(",")
    )


class Explorer:
    """The explorer's routes on a validator's application."""

    def __init__(self, files: dict[str, StaticFile] | None = None) -> None:
        self.files = shipped_files() if files is None else files
        if PAGE not in self.files:
            raise FileNotFoundError(f"the explorer's {PAGE} is missing from {STATIC_DIR}")

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.handle_root, allow_head=False)
        app.router.add_get(PREFIX + "{name}", self.handle_file, allow_head=False)

    def _answer(self, name: str) -> web.Response:
        file = self.files[name]
        return web.Response(body=file.body, headers={"Content-Type": file.content_type, **HEADERS})

    async def handle_root(self, request: web.Request) -> web.Response:
        if not wants_html(request):
            raise web.HTTPMethodNotAllowed(request.method, ["POST"])
        return self._answer(PAGE)

    async def handle_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.files:
            return web.json_response(
                {
                    "error": f"no file {name[:80]!r} in the explorer",
                    "files": sorted(self.files),
                },
                status=404,
            )
        return self._answer(name)
