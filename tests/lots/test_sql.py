"""The watcher's and the delivery workers' hand-written queries (lots.sql) read what the
ORM reads: every field of every model, converted as a queryset converts it."""

from django.db.models import Model

from lots.models import AsteriskServer, ParkedCall, ParkingLot
from lots.services.alerts import _busy
from lots.services.parking import lot_by_pk, lot_for
from tests.factories import make_context, make_lot, make_server


def same(mine: Model, theirs: Model) -> None:
    assert type(mine) is type(theirs)
    for field in theirs._meta.concrete_fields:
        ours, orm = getattr(mine, field.attname), getattr(theirs, field.attname)
        assert ours == orm and type(ours) is type(orm), field.name


def same_lot(mine: ParkingLot | None, pk: int) -> None:
    theirs = ParkingLot.objects.select_related("tenant", "context").get(pk=pk)
    assert mine is not None
    same(mine, theirs)
    same(mine.tenant, theirs.tenant)
    same(mine.context, theirs.context)


def test_a_lot_is_found_by_its_asterisk_name_its_pk_or_as_the_default(
    db, server, acme, acme_ctx, globex, globex_ctx
):
    main = make_lot(acme, acme_ctx, "main", parkingtime=90, findslot="next")
    other = make_lot(globex, globex_ctx, "main", parkpos_start=801, parkpos_end=810)
    elsewhere = make_server("pbx2", ami_port=5039)
    far = make_lot(acme, make_context(elsewhere, acme, "acme-far"), "far")

    same_lot(lot_for(server.pk, "acme_main"), main.pk)
    same_lot(lot_for(server.pk, "globex_main"), other.pk)
    same_lot(lot_by_pk(far.pk), far.pk)
    assert lot_for(server.pk, "acme_far") is None  # another server's
    assert lot_for(server.pk, "acme_nope") is None
    assert lot_for(server.pk, "plain") is None  # not one of parkweb's names
    assert lot_by_pk(10**9) is None

    assert lot_for(server.pk, "default") is None  # none stands for Asterisk's own
    AsteriskServer.objects.filter(pk=server.pk).update(default_lot=main)
    same_lot(lot_for(server.pk, "default"), main.pk)
    assert lot_for(elsewhere.pk, "default") is None


def test_a_lots_busy_spaces_count_its_open_calls_only(db, server, acme, acme_ctx):
    from django.utils import timezone

    lot = make_lot(acme, acme_ctx, "main")
    for n, ended in enumerate([None, None, timezone.now()]):
        ParkedCall.objects.create(
            server=server,
            lot=lot,
            tenant=acme,
            lot_name="acme_main",
            space=701 + n,
            uniqueid=f"u.{n}",
            parked_at=timezone.now(),
            ended_at=ended,
        )
    assert _busy(lot.pk) == 2 == ParkedCall.objects.filter(lot=lot, ended_at=None).count()
