"""Guessing is slow: logins (pages and admin) lock out per username and per address, wrong
API keys and tokens and password resets are throttled; a websocket opens only for a page
of this very site (scheme, host and port)."""

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from rest_framework.test import APIClient

from lots.routing import SameOriginValidator
from tests.factories import make_tenant


@pytest.fixture
def ada(db):
    return get_user_model().objects.create_user(
        "ada", email="ada@example.com", password="right-pw-123"
    )


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_twenty_wrong_passwords_lock_the_username_out_even_with_the_right_one(ada, url):
    client = Client(REMOTE_ADDR="192.0.2.7")
    answers = [
        client.post(url, {"username": "ada", "password": f"wrong-{n}"}).status_code
        for n in range(20)
    ]
    assert answers[:9] == [200] * 9  # the form again, "wrong username or password"
    assert set(answers[10:]) == {429}  # locked out from the tenth failure
    right = client.post(url, {"username": "ada", "password": "right-pw-123"})
    assert right.status_code == 429 and b"Too many failed logins" in right.content
    # From another address the username is locked too: guessing it from many is no faster.
    elsewhere = Client(REMOTE_ADDR="198.51.100.9")
    assert elsewhere.post(url, {"username": "ada", "password": "right-pw-123"}).status_code == 429


def test_an_address_guessing_many_usernames_is_locked_out(db):
    client = Client(REMOTE_ADDR="192.0.2.8")
    answers = [
        client.post("/accounts/login/", {"username": f"user{n}", "password": "x"}).status_code
        for n in range(12)
    ]
    assert answers[-1] == 429


def test_an_operator_unlocks_a_user_with_a_command(ada):
    from django.core.management import call_command

    client = Client(REMOTE_ADDR="192.0.2.9")
    for n in range(10):
        client.post("/accounts/login/", {"username": "ada", "password": f"wrong-{n}"})
    call_command("axes_reset_username", "ada")
    call_command("axes_reset_ip", "192.0.2.9")
    right = client.post("/accounts/login/", {"username": "ada", "password": "right-pw-123"})
    assert right.status_code == 302


def test_wrong_api_keys_from_one_address_are_throttled(db):
    make_tenant("acme")
    client = APIClient(REMOTE_ADDR="192.0.2.10")
    client.credentials(HTTP_AUTHORIZATION="Api-Key pk_0123456789ab_wrong")
    answers = [client.get("/api/v1/tenants/acme/lots/").status_code for _ in range(25)]
    assert answers[:20] == [401] * 20 and set(answers[20:]) == {429}
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert client.get("/api/v1/tenants/").status_code == 429  # the same address, any kind


def test_password_resets_are_throttled_per_address_and_per_email(ada):
    client = Client(REMOTE_ADDR="192.0.2.11")
    answers = [
        client.post("/accounts/password_reset/", {"email": "ada@example.com"}).status_code
        for _ in range(7)
    ]
    assert answers[:5] == [302] * 5 and set(answers[5:]) == {429}
    assert len(mail.outbox) == 5
    other = Client(REMOTE_ADDR="198.51.100.12")
    refused = other.post("/accounts/password_reset/", {"email": "ADA@example.com"})
    assert refused.status_code == 429 and b"Too many password reset requests" in refused.content


def scope(origin: str | None, host: str = "parkweb.example.com", scheme: str = "ws", **extra):
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    return {"type": "websocket", "scheme": scheme, "headers": headers}


@pytest.mark.parametrize(
    "case,allowed",
    [
        (scope("http://parkweb.example.com"), True),
        (scope("http://parkweb.example.com:80"), True),
        (scope("http://parkweb.example.com:8080"), False),  # the same host, another port
        (scope("https://parkweb.example.com"), False),  # another scheme than the request's
        (scope("https://parkweb.example.com", scheme="wss"), True),
        (scope("http://evil.example"), False),
        (scope("http://parkweb.example.com.evil.example"), False),
        (scope(None), False),
        (scope("null"), False),
        (scope("http://evil.example", host="evil.example"), False),  # not an allowed host
        (scope("https://trusted.example"), True),  # CSRF_TRUSTED_ORIGINS
        (scope("https://trusted.example:444"), False),
    ],
)
def test_websockets_open_only_for_this_sites_own_origin(settings, case, allowed):
    settings.ALLOWED_HOSTS = ["parkweb.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://trusted.example"]
    assert SameOriginValidator.allowed(case) is allowed


def test_behind_a_tls_proxy_the_https_origin_is_the_sites_own(settings):
    settings.ALLOWED_HOSTS = ["parkweb.example.com"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxied = scope("https://parkweb.example.com", **{"x-forwarded-proto": "https"})
    assert SameOriginValidator.allowed(proxied)
    assert not SameOriginValidator.allowed(scope("https://parkweb.example.com"))
