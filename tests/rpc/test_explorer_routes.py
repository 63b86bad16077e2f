"""The explorer's HTTP side (PROTOCOL 5.10): `GET /` answers the page to a request that asks
for HTML and, to any other, the 405 it answered before the explorer (the same as `GET /rpc`);
`POST /` stays JSON-RPC; the page's files are served with their types and the
Content-Security-Policy, exactly as they are on disk; every file the page names is served and
none is from elsewhere; a name that is not one of them (a missing file, a path out of the
directory) is 404 in the `{error}` shape of the other GET routes.
"""

from __future__ import annotations

import re

import aiohttp
import pytest

from rpc import explorer
from tests.helpers import LocalChain

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def test_a_browser_gets_the_page(chain: LocalChain, http: aiohttp.ClientSession) -> None:
    async with http.get(chain.url + "/", headers={"Accept": BROWSER_ACCEPT}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert resp.headers["Content-Security-Policy"] == explorer.CONTENT_SECURITY_POLICY
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        page = await resp.read()
    assert page == (explorer.STATIC_DIR / "index.html").read_bytes()
    assert b'<script src="/explorer/explorer.js"' in page


@pytest.mark.parametrize("accept", [None, "application/json", "*/*", "text/plain", "xtext/html"])
async def test_any_other_get_is_answered_as_before(
    chain: LocalChain, http: aiohttp.ClientSession, accept: str | None
) -> None:
    """As GET /rpc, which the explorer does not touch: 405, Allow: POST, the same body."""
    headers = {} if accept is None else {"Accept": accept}
    async with http.get(chain.url + "/rpc", headers=headers) as resp:
        before = (
            resp.status,
            resp.headers["Allow"],
            resp.headers["Content-Type"],
            await resp.read(),
        )
    async with http.get(chain.url + "/", headers=headers) as resp:
        now = (resp.status, resp.headers["Allow"], resp.headers["Content-Type"], await resp.read())
        assert "Content-Security-Policy" not in resp.headers
    assert now == before
    assert before[:2] == (405, "POST")


async def test_post_stays_json_rpc(chain: LocalChain, http: aiohttp.ClientSession) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "chainId"}
    headers = {"Accept": BROWSER_ACCEPT}
    async with http.post(chain.url + "/", json=body, headers=headers) as resp:
        assert resp.status == 200
        assert await resp.json() == {
            "jsonrpc": "2.0",
            "result": chain.node.genesis.chain_id,
            "id": 1,
        }


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("index.html", "text/html; charset=utf-8"),
        ("explorer.css", "text/css; charset=utf-8"),
        ("explorer.js", "text/javascript; charset=utf-8"),
    ],
)
async def test_the_files_are_served_as_they_are(
    chain: LocalChain, http: aiohttp.ClientSession, name: str, content_type: str
) -> None:
    async with http.get(f"{chain.url}/explorer/{name}") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == content_type
        assert resp.headers["Content-Security-Policy"] == explorer.CONTENT_SECURITY_POLICY
        assert await resp.read() == (explorer.STATIC_DIR / name).read_bytes()


async def test_every_file_the_page_names_is_served_and_none_is_from_elsewhere(
    chain: LocalChain, http: aiohttp.ClientSession
) -> None:
    page = (explorer.STATIC_DIR / "index.html").read_text()
    named = re.findall(r'(?:src|href)="([^"#]+)"', page)
    assert "/explorer/explorer.js" in named and "/explorer/explorer.css" in named
    for url in named:
        if url.startswith("data:"):
            continue
        assert url.startswith("/explorer/"), url
        async with http.get(chain.url + url) as resp:
            assert resp.status == 200, url
    for name in ("index.html", "explorer.css", "explorer.js"):
        # SVG's namespace is a name, not a place anything is loaded from
        text = (explorer.STATIC_DIR / name).read_text().replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import", text), name


@pytest.mark.parametrize(
    "path",
    [
        "/explorer/missing.js",
        "/explorer/explorer.JS",
        "/explorer/..%2Fserver.py",
        "/explorer/%2E%2E%2Fexplorer.py",
        "/explorer/" + "x" * 300,
    ],
)
async def test_a_file_it_does_not_have_is_404(
    chain: LocalChain, http: aiohttp.ClientSession, path: str
) -> None:
    async with http.get(chain.url + path) as resp:
        assert resp.status == 404
        answer = await resp.json()
    assert answer["error"].startswith("no file ") and "in the explorer" in answer["error"]
    assert answer["files"] == ["explorer.css", "explorer.js", "index.html"]
    assert len(answer["error"]) < 120


@pytest.mark.parametrize(
    ("accept", "page"),
    [
        ("text/html", True),
        ("TEXT/HTML; q=0.5", True),
        ("application/json, text/html;q=0.1", True),
        ("", False),
        ("application/xhtml+xml", False),
        ("text/htmlx", False),
    ],
)
async def test_which_requests_ask_for_html(
    chain: LocalChain, http: aiohttp.ClientSession, accept: str, page: bool
) -> None:
    async with http.get(chain.url + "/", headers={"Accept": accept}) as resp:
        assert resp.status == (200 if page else 405)


def test_a_missing_page_is_refused_at_start() -> None:
    files = explorer.load_files()
    del files["index.html"]
    with pytest.raises(FileNotFoundError, match=r"index\.html"):
        explorer.Explorer(files)
