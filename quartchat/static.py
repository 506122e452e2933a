"""Static files under fingerprinted URLs: /static/v/<version>/js/app.js.

The version is a hash of every file in static/, so a deploy changes every URL at once
and browsers (and nginx, see docs/deploy.md) may cache them for a year. Only this
version's URLs are served: another version's (a page from before an upgrade, or after
a rollback) is a 404 that nothing caches, never today's file cached for a year under
an old name. ES modules import each other by relative path, so they inherit the
version of the page's first script.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from quart import Quart, Response, send_from_directory, url_for

YEAR = 365 * 24 * 3600


def static_version(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def register_static(app: Quart, folder: Path) -> None:
    current = static_version(folder)

    async def versioned(version: str, filename: str) -> Response:
        if version != current:
            return Response(
                f"not found: this server's static files are version {current}\n",
                404,
                {"Cache-Control": "no-store"},
                mimetype="text/plain",
            )
        response = await send_from_directory(folder, filename, cache_timeout=YEAR)  # max-age and Expires
        response.cache_control.immutable = True
        return response

    async def plain(filename: str) -> Response:
        # These URLs stay the same across deploys: revalidate every time.
        response = await send_from_directory(folder, filename, cache_timeout=0)
        response.cache_control.no_cache = True
        return response

    app.add_url_rule("/static/v/<version>/<path:filename>", "versioned_static", versioned)
    app.add_url_rule("/static/<path:filename>", "static", plain)

    @app.context_processor
    async def asset_url() -> dict[str, object]:
        def asset(filename: str) -> str:
            return url_for("versioned_static", version=current, filename=filename)

        return {"asset": asset}


def publish_static(folder: Path, target: Path) -> Path:
    """Copy this version's files to `target`/v/<version>/ for nginx, and point
    `target`/current at them. Earlier versions stay: pages an instance of the
    previous version served keep loading during a rolling upgrade or after a rollback."""
    version = static_version(folder)
    versions = target / "v"
    published = versions / version
    if not published.is_dir():
        versions.mkdir(parents=True, exist_ok=True)
        staging = versions / f".{version}.partial"
        shutil.rmtree(staging, ignore_errors=True)  # left by a copy that was interrupted
        shutil.copytree(folder, staging)
        staging.rename(published)  # whole or not at all: nginx never sees half a version
    link = target / ".current.new"
    link.unlink(missing_ok=True)
    link.symlink_to(Path("v") / version)
    os.replace(link, target / "current")
    return published
