"""The API docs page (Swagger UI at ``/docs``), served from this process alone.

FastAPI's own ``/docs`` and ``/redoc`` load their scripts and styles from a CDN and start them with an inline
script: a deployment without internet access shows a blank page, and the Content-Security-Policy
(``stack.security_headers``) refuses both. Here the page is a small HTML file, Swagger UI's files come from
the ``fastapi-offline`` wheel (Swagger UI 5, which reads OpenAPI 3.1), and a script file of ours starts it.
ReDoc is not served: its styles are injected at run time, which the policy refuses.

The page's policy allows inline *styles* (``style-src 'self' 'unsafe-inline'``), because Swagger UI sets
some at run time; scripts stay ``'self'`` only, and every other response keeps the strict policy.
"""

from __future__ import annotations

import html
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

from stack.security_headers import content_security_policy

DOCS_PATH = "/docs"
ASSETS_PATH = f"{DOCS_PATH}/swagger-ui"
STARTER_PATH = f"{DOCS_PATH}/api-docs.js"
SWAGGER_UI_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")  # all the page loads
STARTER = Path(__file__).parent / "static" / "api-docs.js"

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{starter}"></script>
</body>
</html>
"""


def swagger_ui_dir() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def docs_page(title: str, root_path: str, openapi_url: str) -> str:
    """The page's HTML for an app mounted at ``root_path``; every inserted value is escaped."""
    return PAGE.format(title=html.escape(title), assets=html.escape(root_path + ASSETS_PATH),
                       openapi=html.escape(root_path + openapi_url), starter=html.escape(root_path + STARTER_PATH))  # fmt: skip


def add_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and its files on ``app``, whose ``openapi_url`` is set and whose own docs are off
    (``FastAPI(docs_url=None, redoc_url=None)``)."""
    assert app.openapi_url is not None and app.docs_url is None and app.redoc_url is None
    openapi_url = app.openapi_url

    @app.get(DOCS_PATH, include_in_schema=False)
    async def api_docs(request: Request) -> HTMLResponse:
        page = docs_page(f"{app.title} API", request.scope.get("root_path", ""), openapi_url)
        host = request.headers.get("host")
        policy = content_security_policy(host, request.url.scheme == "https", style_src="'self' 'unsafe-inline'")
        return HTMLResponse(page, headers={"Content-Security-Policy": policy})

    @app.get(f"{ASSETS_PATH}/{{name}}", include_in_schema=False)
    async def swagger_ui_file(name: str) -> FileResponse:
        if name not in SWAGGER_UI_FILES:
            raise HTTPException(status_code=404, detail="Not Found")
        return FileResponse(swagger_ui_dir() / name)

    @app.get(STARTER_PATH, include_in_schema=False)
    async def api_docs_starter() -> FileResponse:
        return FileResponse(STARTER, media_type="text/javascript")
