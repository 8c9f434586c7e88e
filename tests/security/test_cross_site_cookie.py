"""A page of another site, open in the same Chromium as a signed-in coordinator, cannot use the session:
the SameSite=Strict cookie is not sent with its form posts, images, fetches or links (seen from the server)."""

from __future__ import annotations

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import playwright.sync_api as playwright_api
import pytest
import uvicorn

from shared.auth import Directory
from shared.settings import RelaisSettings
from tests.infra.brokers import free_port
from tests.infra.wait import wait_for
from tests.security.test_web_sessions import kernel_app

pytestmark = pytest.mark.attack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def attack_page(target: str) -> bytes:
    # "localhost" and "127.0.0.1" are different sites: this page is cross-site for Relais.
    return f"""<!doctype html><html><body>
<img src="{target}/discharge/whoami?via=img">
<form id="f" method="post" action="{target}/discharge/write?via=form"><input name="x" value="1"></form>
<script>
fetch("{target}/discharge/whoami?via=fetch", {{credentials: "include", mode: "no-cors"}})
  .finally(function () {{ document.getElementById("f").submit(); }});
</script></body></html>""".encode()


@pytest.fixture
def servers(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: run scripts/install.sh --test (apt-get install -y chromium)")
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    token = directory.add("cpts", "cpts-a", "CPTS A")
    app = kernel_app(directory, RelaisSettings(data_dir=tmp_path))
    seen: list[tuple[str, bool]] = []

    async def spy(scope, receive, send):
        if scope["type"] == "http":
            cookie = b"".join(v for k, v in scope["headers"] if k == b"cookie")
            seen.append((f"{scope['path']}?{scope['query_string'].decode()}", b"relais_session=" in cookie))
        await app(scope, receive, send)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(spy, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, message="uvicorn on loopback")
    target = f"http://127.0.0.1:{port}"

    class Attacker(BaseHTTPRequestHandler):
        def do_GET(self):
            body = attack_page(target) if self.path == "/" else b"<!doctype html><p>elsewhere</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    evil = ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    evil_thread = threading.Thread(target=evil.serve_forever, daemon=True)
    evil_thread.start()
    yield target, f"http://localhost:{evil.server_address[1]}", token, seen
    evil.shutdown()
    server.should_exit = True
    thread.join(timeout=10)
    directory.close()


def test_another_site_cannot_ride_on_the_session_cookie(servers):
    target, evil, token, seen = servers
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{target}/discharge/app/signin")
            page.fill("#token", token)
            page.click("#signin")
            page.wait_for_url(f"{target}/discharge/app/board")
            page.goto(f"{target}/discharge/whoami?via=same-site")
            assert "cpts-a" in page.inner_text("body")
            page.goto(f"{evil}/", wait_until="commit")  # the page posts its form and navigates away
            page.wait_for_url(f"{target}/discharge/write?via=form")
            assert "send 'Authorization: Bearer" in page.inner_text("body")  # the post arrived without the cookie
            page.goto(f"{evil}/link")  # a link followed from another site is cross-site too
            page.evaluate(f"window.location.href = '{target}/discharge/whoami?via=link'")
            wait_for(lambda: any(path.endswith("via=link") for path, _ in seen), 20, message="the cross-site link")
            assert "send 'Authorization: Bearer" in page.inner_text("body")  # the cookie was not sent: 401
        finally:
            browser.close()
    with_cookie = {path for path, cookie in seen if cookie}
    assert "/discharge/whoami?via=same-site" in with_cookie
    for via in ("img", "fetch", "form", "link"):
        assert [path for path in seen if path[0].endswith(f"via={via}")], via
        assert not [path for path in with_cookie if path.endswith(f"via={via}")], f"cookie sent with {via}"
