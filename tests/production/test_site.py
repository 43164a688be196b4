"""The production setup in deploy/, run as shipped: Debian's nginx with
deploy/nginx/parkweb.conf in front of daphne started as parkweb-web.service starts it,
with the settings of deploy/parkweb.env and the files `collectstatic` gathered.

Only what cannot run here is changed in the nginx site: its ports (loopback ports of the
test's own), the certificate (made by the test) and the paths of the static files and
of daphne. Checked: plain HTTP is redirected; static files come from nginx; pages carry
HSTS, the content security policy and secure cookies; the board's websocket works
through nginx; /metrics sees the client's address as nginx gives it, never one a client
claims; /healthz answers plain HTTP on the web process itself.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
import websockets
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from tenants.models import Membership, Role
from tests.factories import make_tenant
from tests.integration.workers import isolated_redis_url, shared_test_database_url
from tests.production.env import METRICS_TOKEN, production_env

pytestmark = pytest.mark.integration

BASE = Path(settings.BASE_DIR)
DEPLOY = BASE / "deploy"
SITE = "parkweb.example.com"
TOKEN = METRICS_TOKEN


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def daphne_command(port: int) -> list[str]:
    """parkweb-web.service's ExecStart, on the test's port and this interpreter."""
    unit = (DEPLOY / "systemd" / "parkweb-web.service").read_text()
    exec_start = re.search(r"^ExecStart=(.+)$", unit, re.MULTILINE).group(1)
    args = shlex.split(exec_start)
    assert args[0].endswith("/daphne") and "--proxy-headers" in args
    args[args.index("-p") + 1] = str(port)
    return [sys.executable, "-m", "daphne", *args[1:]]


def nginx_site(work: Path, http: int, https: int, upstream: int, static: Path) -> str:
    text = (DEPLOY / "nginx" / "parkweb.conf").read_text()
    replacements = [
        ("listen 80;", f"listen 127.0.0.1:{http};"),
        ("listen [::]:80;", ""),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https} ssl http2;"),
        ("listen [::]:443 ssl http2;", ""),
        (f"/etc/ssl/certs/{SITE}.pem", str(work / "site.pem")),
        (f"/etc/ssl/private/{SITE}.key", str(work / "site.key")),
        ("/opt/parkweb/staticfiles/", f"{static}/"),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};"),
    ]
    for old, new in replacements:
        assert old in text, f"deploy/nginx/parkweb.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


@pytest.fixture
def production(transactional_db, tmp_path):
    if not Path("/usr/sbin/nginx").exists():
        pytest.fail("Debian's nginx is missing: `make test` installs it (scripts/ensure-nginx)")
    # nginx's workers run as www-data, as Debian's nginx.conf has them: STATIC_ROOT must be
    # readable by them (pytest's own folders are private to root).
    static = Path(tempfile.mkdtemp(prefix="parkweb-static-"))
    static.chmod(0o755)
    web_port, http_port, https_port = free_port(), free_port(), free_port()
    env = production_env(
        DATABASE_URL=shared_test_database_url(),
        REDIS_URL=isolated_redis_url(),
        STATIC_ROOT=str(static),
        ALLOWED_HOSTS=f"{SITE},127.0.0.1",
        CSRF_TRUSTED_ORIGINS=f"https://{SITE}",
        PARKWEB_METRICS_ALLOW="10.0.0.0/8",
        PARKWEB_WORKER_WATCHERS="0",
    )
    assert not [v for v in env.values() if v.startswith("change-me")]
    manage = [sys.executable, "manage.py"]
    check = subprocess.run(
        [*manage, "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    subprocess.run(
        [*manage, "collectstatic", "--noinput"],
        cwd=BASE,
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
    )
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={SITE}",
            "-keyout",
            tmp_path / "site.key",
            "-out",
            tmp_path / "site.pem",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (tmp_path / "site.conf").write_text(
        nginx_site(tmp_path, http_port, https_port, web_port, static)
    )
    (tmp_path / "nginx.conf").write_text(
        f"""daemon off;
user www-data;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    access_log {tmp_path}/access.log;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/site.conf;
}}
"""
    )
    nginx = ["/usr/sbin/nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    tested = subprocess.run([*nginx, "-t"], capture_output=True, text=True, timeout=30)
    assert tested.returncode == 0, tested.stderr

    connection.close()
    processes = [
        subprocess.Popen(
            daphne_command(web_port),
            cwd=BASE,
            env=env,
            stdout=open(tmp_path / "daphne.log", "w"),  # noqa: SIM115 (lives with daphne)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
        subprocess.Popen(nginx, start_new_session=True, stderr=subprocess.DEVNULL),
    ]
    try:
        deadline = time.monotonic() + 30
        for port in (web_port, https_port):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, (tmp_path / "daphne.log").read_text()
                    time.sleep(0.1)
        yield {"web": web_port, "http": http_port, "https": https_port, "dir": tmp_path}
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=20)
        shutil.rmtree(static, ignore_errors=True)


def insecure() -> ssl.SSLContext:
    """TLS to the test's own self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def get(port: int, path: str, *, tls: bool = True, host: str = SITE, **headers: str):
    if tls:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=15, context=insecure())
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.request("GET", path, headers={"Host": host, **headers})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response, body


def test_the_shipped_nginx_site_and_settings_serve_parkweb(production):
    response, _ = get(production["http"], "/accounts/login/", tls=False)
    assert response.status == 301
    assert response.getheader("Location") == f"https://{SITE}/accounts/login/"

    response, body = get(production["https"], "/static/board.js")
    assert response.status == 200 and b"WebSocket" in body
    assert response.getheader("Cache-Control") == "max-age=604800, public"  # nginx (expires 7d)

    response, body = get(production["https"], "/accounts/login/")
    assert response.status == 200
    assert response.getheader("Strict-Transport-Security").startswith("max-age=31536000")
    assert "script-src 'self'" in response.getheader("Content-Security-Policy")
    cookies = response.getheader("Set-Cookie")
    assert "csrftoken=" in cookies and "Secure" in cookies

    # Plain HTTP to the web process itself (a probe on the host) is not redirected.
    response, body = get(production["web"], "/healthz", tls=False, host="127.0.0.1")
    assert response.status == 200 and json.loads(body) == {"status": "ok"}

    # /metrics allows 10.0.0.0/8: a client claiming to be there is still 127.0.0.1.
    response, _ = get(production["https"], "/metrics", **{"X-Forwarded-For": "10.1.2.3"})
    assert response.status == 403
    response, body = get(production["https"], "/metrics", Authorization=f"Bearer {TOKEN}")
    assert response.status == 200 and b"parkweb_websocket_clients" in body


def log_in(port: int, username: str, password: str) -> str:
    """Log in through nginx as a person would; returns the session cookie."""
    response, body = get(port, "/accounts/login/")
    csrf = re.search(r"csrftoken=([^;]+)", response.getheader("Set-Cookie")).group(1)
    field = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=15, context=insecure())
    conn.request(
        "POST",
        "/accounts/login/",
        body=urlencode({"username": username, "password": password, "csrfmiddlewaretoken": field}),
        headers={
            "Host": SITE,
            "Cookie": f"csrftoken={csrf}",
            "Referer": f"https://{SITE}/accounts/login/",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 302, response.status
    cookie = response.getheader("Set-Cookie")
    assert "Secure" in cookie and "HttpOnly" in cookie
    return re.search(r"sessionid=([^;]+)", cookie).group(1)


def test_the_board_websocket_works_through_nginx(production, settings):
    # daphne checks passwords with the production hasher, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    tenant = make_tenant("acme", name="Acme")
    user = get_user_model().objects.create_user("ola", password="pw-ola-123")
    Membership.objects.create(user=user, tenant=tenant, role=Role.OPERATOR)
    session = log_in(production["https"], "ola", "pw-ola-123")

    async def board() -> dict:
        async with websockets.connect(
            f"wss://{SITE}:{production['https']}/ws/t/acme/parking/",
            host="127.0.0.1",  # the site's name, reached on this machine
            port=production["https"],
            ssl=insecure(),
            additional_headers={"Origin": f"https://{SITE}", "Cookie": f"sessionid={session}"},
            open_timeout=15,
        ) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 15))

    assert asyncio.run(board())["type"] == "snapshot"
