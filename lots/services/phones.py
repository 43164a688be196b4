"""Where tenants' phones are (staff set it), and each member's own extension."""

from __future__ import annotations

from django.db import transaction

from parkweb.errors import Invalid, checked
from tenants.actors import SYSTEM, Actor
from tenants.audit import audit
from tenants.models import Membership

from .. import rules
from ..models import TenantPhones


@transaction.atomic
def phones_save(phones: TenantPhones, *, actor: Actor = SYSTEM) -> TenantPhones:
    """Create or change where a tenant's phones are on a server (staff only: adapters
    check that the caller is staff)."""
    checked(phones.full_clean)
    phones.save()
    audit(
        actor,
        "phones.save",
        f"{phones.context.name} on server {phones.server_id}",
        tenant=phones.tenant_id,
        extensions=phones.extensions,
    )
    return phones


def member_extension_set(
    membership: Membership, extension: str, *, actor: Actor = SYSTEM
) -> Membership:
    """A member stores their own phone's extension ('' to forget it). It must be one of
    the tenant's extensions on at least one server where the tenant has phones."""
    extension = (extension or "").strip()
    if extension:
        # Without phones set up anywhere yet, only the form of the extension is checked.
        every_ranges = [
            phones.ranges for phones in TenantPhones.objects.filter(tenant=membership.tenant_id)
        ] or [[]]
        problems = [rules.check_phone_extension("extension", extension, r) for r in every_ranges]
        if all(problems):
            raise Invalid({"extension": problems[0][0].message})
    membership.extension = extension
    membership.save(update_fields=["extension"])
    audit(
        actor,
        "member.extension",
        membership.user.get_username(),
        tenant=membership.tenant_id,
        extension=extension,
    )
    return membership


def member_alert_mail_set(membership: Membership, on: bool, *, actor: Actor = SYSTEM) -> Membership:
    """A member asks for alert mail (a lot almost full or full, a call waiting too long),
    or stops it. Mail goes to the address of their account."""
    membership.alert_mail = bool(on)
    membership.save(update_fields=["alert_mail"])
    audit(
        actor,
        "member.alert_mail",
        membership.user.get_username(),
        tenant=membership.tenant_id,
        alert_mail=membership.alert_mail,
    )
    return membership
