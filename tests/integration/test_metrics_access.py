"""`/metrics` served directly: to this host only, or to a scraper with the token."""

from __future__ import annotations

import httpx

from ..conftest import StartServer

TOKEN = "metrics-token-0123456789"


def scrape(base_url: str, address: str, token: str | None = None) -> httpx.Response:
    # With QUARTCHAT_TRUSTED_PROXY_HOPS=1 the server takes the client's address from the
    # proxy's X-Forwarded-For: here, the test plays that proxy.
    headers = {"X-Forwarded-For": address}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.get(f"{base_url}/metrics", headers=headers, trust_env=False)


def test_metrics_answer_loopback_clients_only(start_server: StartServer) -> None:
    server = start_server(trusted_proxy_hops="1")
    for address in ("127.0.0.1", "::1"):
        allowed = scrape(server.base_url, address)
        assert allowed.status_code == 200 and "quartchat_connections" in allowed.text, address
    for address in ("198.51.100.9", "10.0.0.1", "2001:db8::1"):
        refused = scrape(server.base_url, address, token="anything-at-all-123")
        assert refused.status_code == 403, address
        assert isinstance(refused.json()["error"], str) and "quartchat_" not in refused.text


def test_with_a_token_a_remote_scraper_that_sends_it_is_served(start_server: StartServer) -> None:
    server = start_server(trusted_proxy_hops="1", metrics_token=TOKEN)
    assert scrape(server.base_url, "198.51.100.9", TOKEN).status_code == 200
    assert scrape(server.base_url, "198.51.100.9", TOKEN.upper()).status_code == 403
    assert scrape(server.base_url, "198.51.100.9", TOKEN[:-1]).status_code == 403
    assert scrape(server.base_url, "198.51.100.9").status_code == 403
    assert scrape(server.base_url, "127.0.0.1").status_code == 200  # this host, as before
