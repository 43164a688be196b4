"""Fixtures of the webhook tests: a real receiver on loopback, settings that make
retries quick, and the delivery loops' wake list in the tests' Redis."""

import pytest

from tests.receiver import Receiver


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def fast(settings):
    settings.DEBUG = True  # plain http to this machine: the receiver
    settings.PARKWEB_WEBHOOK_TIMEOUT = 1
    settings.PARKWEB_WEBHOOK_RETRY_BASE = 0.05
    settings.PARKWEB_WEBHOOK_RETRY_MAX = 0.1
    return settings


@pytest.fixture
def wake_list():
    """The tests' Redis with no webhook keys (the wake list, retry markers and slots: a
    marker left by an earlier test of the same endpoint id would stop a retry), before
    and after."""
    from lots.services.webhooks import _redis

    client = _redis()
    assert client is not None, "the tests run with a Redis broker"

    def clear():
        for key in client.scan_iter("parkweb:webhook:*"):
            client.delete(key)

    clear()
    yield client
    clear()
