"""HyperBEAM-style reads of a process's state (PROTOCOL 8.7): `GET /{pid}~process@1.0/now/...`.

`/{pid}~process@1.0/now/<a>/<b>/...` answers, as JSON, the value at that path of the
process's globals after its last committed slot: the compute unit evaluates what is new,
then reads its live state (`ComputeUnit.read`); no message is sent or scheduled. APUS's
router keeps what its document lists under the global `cache` (`/now/cache/credits/<pid>`,
`/now/cache/tasks/<pid>-<reference>`, `/now/cache/taskStats`), as HyperBEAM's patch@1.0
device exposes it. A path that names nothing is 404 `{error}`, a value that is not JSON
(a function) or a path that is not one 400 `{error}`.
"""

from __future__ import annotations

from aiohttp import web

from ao.cu import UnknownProcess
from ao.server import BadRequest, NotFoundError, UnitApi, guard, id_param

MAX_SEGMENTS = 64


def path_of(text: str) -> list[str]:
    """The segments of the path after `/now/` (empty ones, as a trailing slash makes, left
    out); BadRequest when there is none or too many."""
    segments = [s for s in text.split("/") if s != ""]
    if not segments:
        raise BadRequest("path: name at least a global after /now/, e.g. /now/cache")
    if len(segments) > MAX_SEGMENTS:
        raise BadRequest(f"path: at most {MAX_SEGMENTS} segments, got {len(segments)}")
    return segments


class PatchApi(UnitApi):
    """The `/now/` reads."""

    def routes(self) -> list[web.RouteDef]:
        return [web.get(r"/{pid}~process@1.0/now/{path:.*}", guard(self.now))]

    async def now(self, request: web.Request) -> web.Response:
        pid = id_param(request.match_info["pid"], "process")
        path = path_of(request.match_info["path"])
        try:
            value = await self.cu.read(pid, path)
        except UnknownProcess:
            raise
        except LookupError as exc:
            raise NotFoundError(str(exc)) from exc
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        return web.json_response(value)
