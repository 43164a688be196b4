"""Asterisk servers: validated settings, secrets encrypted at rest."""

import pytest

from lots import crypto, services
from lots.models import AsteriskServer
from parkweb.errors import Invalid
from tests.factories import make_context, make_lot, make_server, make_tenant


def test_ami_secret_is_stored_encrypted_and_read_back(db):
    server = make_server("pbx1", secret="hunter2-and-more")
    stored = AsteriskServer.objects.values_list("ami_secret_encrypted", flat=True).get()
    assert "hunter2" not in stored
    assert AsteriskServer.objects.get(pk=server.pk).ami_secret == "hunter2-and-more"


def test_secret_unreadable_after_key_change(db, settings):
    server = make_server("pbx1", secret="abc")
    settings.PARKWEB_ENCRYPTION_KEYS = ["A" * 43 + "="]
    with pytest.raises(crypto.SecretUnreadable):
        _ = AsteriskServer.objects.get(pk=server.pk).ami_secret


@pytest.mark.parametrize(
    "field,value",
    [
        ("parkcall", "#72;x"),
        ("parkcall", "123456789"),
        ("parkcall", "#72\n[x]"),
        ("config_dir", "etc/asterisk"),
        ("config_dir", "/etc/../root"),
        ("ami_host", "pbx one"),
        ("ami_host", ("a" * 62 + ".") * 4 + "a" * 2),  # 254 characters, each label good
        ("ami_host", "a" * 64),
        ("ami_host", "-pbx"),
        ("name", "PBX 1"),
        ("ami_port", 70000),
    ],
)
def test_bad_server_settings_are_refused(db, field, value):
    with pytest.raises(Invalid) as caught:
        make_server(**{"name": "pbx1", field: value})
    assert field in caught.value.errors


def test_a_host_name_of_253_characters_is_taken(db):
    host = ("a" * 62 + ".") * 4 + "a"  # four labels of 62 and one of 1: 253 characters
    assert len(host) == 253
    assert make_server(name="pbx1", ami_host=host).ami_host == host


def test_reserved_contexts_must_be_context_names(db):
    with pytest.raises(Invalid) as caught:
        make_server("pbx1", reserved_contexts="ok, not ok")
    assert caught.value.codes["reserved_contexts"] == ["context_format"]


def test_default_lot_must_be_on_the_same_server(db):
    tenant = make_tenant("acme")
    one, two = make_server("pbx1"), make_server("pbx2")
    lot = make_lot(tenant, make_context(one, tenant, "acme-parking"), "main")
    two.default_lot = lot
    with pytest.raises(Invalid) as caught:
        services.server_save(two)
    assert "default_lot" in caught.value.errors
