"""`pip install .` (not editable) into a fresh venv, then `quartchat serve` elsewhere."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import httpx

from ..support import Server

REPOSITORY = Path(__file__).resolve().parents[2]


def test_a_wheel_install_serves_pages_static_files_and_migrations(tmp_path: Path) -> None:
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(REPOSITORY)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = Server(elsewhere)
    original = sys.executable
    try:
        sys.executable = str(python)  # Server runs `<python> -m quartchat serve`
        server.start()
    finally:
        sys.executable = original
    try:
        for path in ("/signin", "/static/style.css", "/static/js/app.js", "/static/js/socket.js"):
            response = httpx.get(server.base_url + path, trust_env=False)
            assert response.status_code == 200, path
        assert (elsewhere / "chat.db").exists(), "serve migrated the database in its working directory"
        location = subprocess.run(
            [python, "-c", "import quartchat.resources as r; print(r.resource('migrations'))"],
            capture_output=True,
            text=True,
            check=True,
            cwd=elsewhere,
        ).stdout.strip()
        assert location.startswith(str(environment)), "the migrations come from the installed package"
    finally:
        server.stop()
