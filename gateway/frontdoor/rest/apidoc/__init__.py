"""The REST API described: `GET /openapi.json` (always served; spec.py builds it) and, when
`enable_docs_url` is set, a documentation page at `/docs` (Swagger UI), served from the files
of this package: the page loads nothing from elsewhere (swagger-ui/VENDORED.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from sanic import Request, Sanic
from sanic.response import HTTPResponse

from ....errors import NotFound
from . import spec

if TYPE_CHECKING:
    from ....settings import ServerSettings

HERE = Path(__file__).parent
SWAGGER_UI = HERE / "swagger-ui"
ASSETS = {  # the files /docs/<asset> serves, and their content types
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "LICENSE": "text/plain; charset=utf-8",
    "NOTICE": "text/plain; charset=utf-8",
    "swagger-ui-bundle.js.LICENSE.txt": "text/plain; charset=utf-8",
}
CACHE = {"cache-control": "public, max-age=3600"}


def register(app: Sanic, settings: "ServerSettings") -> None:
    """Add the routes of the API's description to the REST app."""
    document = orjson.dumps(spec.document(settings))

    async def openapi(request: Request) -> HTTPResponse:
        return HTTPResponse(document, content_type="application/json")

    app.add_route(openapi, "/openapi.json", methods=("GET",), name="openapi")
    if not settings.enable_docs_url:
        return
    page = (HERE / "docs.html").read_bytes()
    assets = {name: ((SWAGGER_UI / name).read_bytes(), content_type) for name, content_type in ASSETS.items()}

    async def docs(request: Request) -> HTTPResponse:
        return HTTPResponse(page, content_type="text/html; charset=utf-8")

    async def docs_asset(request: Request, asset: str) -> HTTPResponse:
        if asset not in assets:
            raise NotFound(f"no file {asset!r} in the documentation page")
        body, content_type = assets[asset]
        return HTTPResponse(body, content_type=content_type, headers=CACHE)

    app.add_route(docs, "/docs", methods=("GET",), name="docs")
    app.add_route(docs_asset, "/docs/<asset>", methods=("GET",), name="docs_asset")
