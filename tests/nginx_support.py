"""A real nginx (Debian's) started from copies of the shipped nginx.conf and site file, placeholders filled in."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from .support import free_port, need_service

REPOSITORY = Path(__file__).resolve().parents[1]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def make_certificate(folder: Path) -> None:
    """A self-signed certificate for 127.0.0.1, made with openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(folder / "privkey.pem"),
            "-out",
            str(folder / "fullchain.pem"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


SITE = REPOSITORY / "docs" / "deploy" / "nginx-site.conf"


def fill(text: str, replacements: dict[str, str], name: str) -> str:
    for placeholder, value in replacements.items():
        assert placeholder in text, f"{name} lost its placeholder {placeholder!r}"
        text = text.replace(placeholder, value)
    return text


def filled_config(
    prefix: Path,
    upstreams: list[int] | None = None,
    http_port: int = 80,
    https_port: int = 443,
    ws_read_timeout: int | None = None,
    workers: int | None = None,
) -> str:
    """The whole-server nginx.conf with its documented placeholders pointed into
    `prefix` (and ports); it includes the site file, filled in as `prefix`/site.conf,
    and the static files are published into `prefix`/static as `quartchat static` does."""
    from quartchat.static import publish_static

    prefix.mkdir(parents=True, exist_ok=True)
    site = {
        "/srv/quartchat/static/current/": f"{prefix / 'static' / 'current'}/",
        "root /srv/quartchat;": f"root {prefix};",
        "root /var/www/html;": f"root {prefix / 'acme'};",
        "/etc/quartchat/tls/": f"{prefix / 'tls'}/",
        "/var/log/nginx/": f"{prefix / 'logs'}/",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "listen [::]:80;": "",
        "listen [::]:443 ssl http2;": "",
    }
    if upstreams is not None:
        site["server 127.0.0.1:8000;"] = " ".join(f"server 127.0.0.1:{port};" for port in upstreams)
    if ws_read_timeout is not None:
        site["proxy_read_timeout 75s;"] = f"proxy_read_timeout {ws_read_timeout}s;"
    (prefix / "site.conf").write_text(fill(SITE.read_text(), site, "the site file"))
    whole = {
        "/etc/nginx/sites-enabled/quartchat": str(prefix / "site.conf"),
        "/var/log/nginx/": f"{prefix / 'logs'}/",
        "pid /run/nginx.pid;": f"pid {prefix / 'nginx.pid'};",
        # pytest's temporary folders are private to root: the workers must be root too.
        "user www-data;": "user root;",
    }
    if workers is not None:  # one worker: one round-robin, so a test can predict the spread
        whole["worker_processes auto;"] = f"worker_processes {workers};"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    publish_static(REPOSITORY / "static", prefix / "static")
    if not (prefix / "tls" / "fullchain.pem").exists():
        make_certificate(prefix / "tls")
    return fill((REPOSITORY / "nginx.conf").read_text(), whole, "nginx.conf")


class Nginx:
    def __init__(
        self, prefix: Path, upstreams: list[int], ws_read_timeout: int | None = None, workers: int | None = None
    ) -> None:
        need_service(os.path.exists(NGINX), "nginx (apt-get install nginx-light)")
        self.prefix = prefix
        self.http_port, self.https_port = free_port(), free_port()
        self.config = prefix / "nginx.conf"
        self.config.write_text(
            filled_config(prefix, upstreams, self.http_port, self.https_port, ws_read_timeout, workers)
        )
        self.base_url = f"https://127.0.0.1:{self.https_port}"
        self.ws_url = f"wss://127.0.0.1:{self.https_port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        self.process = subprocess.Popen(
            [NGINX, "-p", str(self.prefix), "-c", str(self.config), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.prefix / "logs" / "stderr.log", "wb"),  # noqa: SIM115
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{self.http_port}/", trust_env=False, timeout=1)
                return self
            except httpx.HTTPError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        pytest.fail(f"nginx did not start: {(self.prefix / 'logs' / 'stderr.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGQUIT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)

    @staticmethod
    def client_ssl() -> ssl.SSLContext:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the tests' own self-signed certificate
        return context
