"""Static files under fingerprinted URLs: /static/v/<version>/js/app.js.

The version is a hash of every file in static/, so a deploy changes every URL at once
and browsers (and nginx, see nginx.conf) may cache them for a year. ES modules import
each other by relative path, so they inherit the version of the page's first script.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from quart import Quart, Response, send_from_directory, url_for

YEAR = 365 * 24 * 3600


def static_version(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def register_static(app: Quart, folder: Path) -> None:
    version = static_version(folder)

    async def versioned(version: str, filename: str) -> Response:
        response = await send_from_directory(folder, filename)
        response.cache_control.public = True
        response.cache_control.max_age = YEAR
        response.cache_control.immutable = True
        return response

    async def plain(filename: str) -> Response:
        response = await send_from_directory(folder, filename)
        response.cache_control.no_cache = True  # revalidate: these URLs do not change on deploy
        return response

    app.add_url_rule("/static/v/<version>/<path:filename>", "versioned_static", versioned)
    app.add_url_rule("/static/<path:filename>", "static", plain)

    @app.context_processor
    async def asset_url() -> dict[str, object]:
        def asset(filename: str) -> str:
            return url_for("versioned_static", version=version, filename=filename)

        return {"asset": asset}
