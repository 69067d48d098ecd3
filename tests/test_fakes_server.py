import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from demo.simulators.server import serve


async def test_serve_runs_a_real_server_and_stops_it() -> None:
    async def hello(_request: object) -> JSONResponse:
        return JSONResponse({"hello": "world"})

    app = Starlette(routes=[Route("/", hello)])
    async with serve(app) as base_url:
        async with httpx.AsyncClient() as client:
            response = await client.get(base_url + "/")
        assert response.json() == {"hello": "world"}
    async with httpx.AsyncClient() as client:
        try:
            await client.get(base_url + "/")
        except httpx.ConnectError:
            pass
        else:
            raise AssertionError("server still answering after exit")
