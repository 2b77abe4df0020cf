"""Request bodies parsed as strict JSON (``orchestrator.bounds.loads_strict``).

FastAPI reads a JSON body with ``Request.json()``, i.e. Python's ``json.loads``, which accepts
``NaN``, ``Infinity`` and ``1e400`` (read as ``inf``): values no store holds as JSON. Routes of
this class read the body strictly instead; a refusal is FastAPI's own ``json_invalid`` error, so it
is answered 400 ``malformed_json`` like any other broken body, its message naming the JSON path of
such a number (``jobs[3].args[0]``), never the number.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from orchestrator.bounds import loads_strict


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_strict(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict
