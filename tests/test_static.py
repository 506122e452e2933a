"""Fingerprinted static URLs (quartchat/static.py): only the current version's hash is
served and cached for a year; any other hash is a 404 that nothing caches."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from quart import Quart

from quartchat.resources import resource
from quartchat.static import YEAR, publish_static, register_static, static_version


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    static = tmp_path / "static"
    (static / "js").mkdir(parents=True)
    (static / "js" / "app.js").write_text("export const version = 2;\n")
    (static / "style.css").write_text("body { color: black; }\n")
    return static


@pytest.fixture
def app(folder: Path) -> Quart:
    application = Quart(__name__, static_folder=None)
    register_static(application, folder)
    return application


async def test_the_current_versions_url_is_cached_for_a_year_and_expires_says_the_same(
    app: Quart, folder: Path
) -> None:
    response = await app.test_client().get(f"/static/v/{static_version(folder)}/js/app.js")
    assert response.status_code == 200
    assert await response.get_data(as_text=True) == "export const version = 2;\n"
    assert response.cache_control.public and response.cache_control.immutable
    assert response.cache_control.max_age == YEAR
    expires = parsedate_to_datetime(response.headers["Expires"])
    assert expires > datetime.now(UTC) + timedelta(seconds=YEAR - 3600), "Expires agrees with max-age"


@pytest.mark.parametrize("version", ["000000000000", "0123456789ab", "zzz", "v"])
async def test_a_hash_that_is_not_the_current_versions_is_a_404_nothing_caches(app: Quart, version: str) -> None:
    response = await app.test_client().get(f"/static/v/{version}/style.css")
    assert response.status_code == 404
    assert response.cache_control.no_store
    assert not response.cache_control.immutable and response.cache_control.max_age is None
    assert "Expires" not in response.headers


async def test_unversioned_urls_are_revalidated_every_time(app: Quart) -> None:
    response = await app.test_client().get("/static/style.css")
    assert response.status_code == 200
    assert response.cache_control.no_cache
    assert response.cache_control.max_age in (None, 0)
    expires = response.headers.get("Expires")
    assert expires is None or parsedate_to_datetime(expires) <= datetime.now(UTC) + timedelta(seconds=1)


def test_publishing_keeps_earlier_versions_and_points_current_at_the_newest(folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "published"
    first = publish_static(folder, target)
    (folder / "style.css").write_text("body { color: navy; }\n")
    second = publish_static(folder, target)
    assert first != second and first.parent == second.parent == target / "v"
    assert (first / "style.css").read_text() == "body { color: black; }\n", "the earlier version stays as it was"
    assert (second / "style.css").read_text() == "body { color: navy; }\n"
    assert (target / "current").resolve() == second.resolve()
    assert (target / "current" / "js" / "app.js").read_text() == "export const version = 2;\n"
    assert publish_static(folder, target) == second, "publishing the same version again changes nothing"
    assert sorted(p.name for p in (target / "v").iterdir()) == sorted([first.name, second.name])


def test_the_static_command_publishes_into_a_directory_and_refuses_a_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARTCHAT_")}
    done = subprocess.run(
        [sys.executable, "-m", "quartchat", "static", str(tmp_path / "www")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    version = static_version(resource("static"))
    assert (tmp_path / "www" / "v" / version / "js" / "app.js").is_file()
    assert str(tmp_path / "www" / "v" / version) in done.stdout
    (tmp_path / "a-file").write_text("")
    refused = subprocess.run(
        [sys.executable, "-m", "quartchat", "static", str(tmp_path / "a-file")], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "is not a directory" in refused.stderr
