"""Every write on tenants, their members, invitations and API keys goes through here.

Each takes plain values and an actor, checks once, takes its own locks, writes the audit
entry and raises `parkweb.errors` domain errors. Pages, the API, the admin and commands
only adapt input and output to these.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from parkweb.errors import Conflict, Invalid, NotFound, checked

from .actors import SYSTEM, Actor
from .apikeys import KEY_PREFIX, digest
from .audit import audit
from .models import ApiKey, Invitation, Membership, Role, Tenant

LAST_ADMIN = "A tenant always keeps one admin: make someone else admin first."


# -- tenants ---------------------------------------------------------------------------------


@transaction.atomic
def tenant_save(tenant: Tenant, *, actor: Actor = SYSTEM) -> Tenant:
    """Create or change a tenant (staff only: adapters check that the caller is staff)."""
    created = tenant.pk is None
    checked(tenant.full_clean)
    try:
        with transaction.atomic():
            tenant.save()
    except IntegrityError as exc:  # a concurrent create of the same slug won the race
        raise Invalid({"slug": "A tenant with this slug already exists."}) from exc
    audit(actor, "tenant.create" if created else "tenant.update", tenant.slug, tenant=tenant)
    return tenant


# -- members ---------------------------------------------------------------------------------


def _role(role: str) -> Role:
    if role not in Role.values:
        raise Invalid({"role": "Choose viewer, operator or admin."})
    return Role(role)


def _lock_members(tenant_id: int) -> None:
    """Changes of a tenant's members take turns: the tenant's row is their lock (so two
    admins stepping down at once cannot both, and cannot deadlock either)."""
    Tenant.objects.select_for_update().filter(pk=tenant_id).values_list("pk").first()


def _keeps_an_admin(membership: Membership, new_role: Role | None) -> None:
    """Refuse when the membership is its tenant's last admin and would stop being one
    (run with the tenant's members locked)."""
    if membership.role != Role.ADMIN or new_role == Role.ADMIN:
        return
    admins = Membership.objects.filter(tenant_id=membership.tenant_id, role=Role.ADMIN)
    if not admins.exclude(pk=membership.pk).exists():
        raise Conflict({"role": LAST_ADMIN})


@transaction.atomic
def member_set(tenant: Tenant, user, role: str, *, actor: Actor) -> tuple[Membership, bool]:
    """Make `user` a member of `tenant` with `role`; someone already a member gets that
    role. Returns (membership, created)."""
    role = _role(role)
    _lock_members(tenant.pk)
    existing = Membership.objects.filter(user=user, tenant=tenant).first()
    if existing is not None:
        return member_role_set(existing, role, actor=actor), False
    membership = Membership.objects.create(user=user, tenant=tenant, role=role)
    audit(actor, "member.add", user.get_username(), tenant=tenant, role=role)
    return membership, True


@transaction.atomic
def member_role_set(membership: Membership, role: str, *, actor: Actor) -> Membership:
    role = _role(role)
    _lock_members(membership.tenant_id)
    membership = Membership.objects.get(pk=membership.pk)
    if membership.role == role:
        return membership
    _keeps_an_admin(membership, role)
    before, membership.role = membership.role, role
    membership.save(update_fields=["role"])
    audit(
        actor,
        "member.role",
        membership.user.get_username(),
        tenant=membership.tenant_id,
        before=before,
        role=role,
    )
    return membership


@transaction.atomic
def member_remove(membership: Membership, *, actor: Actor) -> None:
    _lock_members(membership.tenant_id)
    membership = Membership.objects.filter(pk=membership.pk).first()
    if membership is None:
        raise NotFound("This membership no longer exists.")
    _keeps_an_admin(membership, None)
    username = membership.user.get_username()
    membership.delete()
    audit(actor, "member.remove", username, tenant=membership.tenant_id)


# -- invitations -----------------------------------------------------------------------------


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_create(
    tenant: Tenant,
    *,
    actor: Actor,
    role: str,
    site_url: str,
    email: str = "",
    username: str = "",
) -> Invitation:
    """Invite someone, by e-mail address or by username, to join `tenant` with `role`.

    The answer is the same whether or not such a person exists: no username is revealed.
    An e-mail address gets a one-time link; someone invited by username who has an
    account with an address gets it there, and sees the invitation when logging in.
    """
    role = _role(role)
    email, username = email.strip().lower(), username.strip()
    if bool(email) == bool(username):
        raise Invalid({"email": "Give an e-mail address, or else a username (one of them)."})
    token = secrets.token_urlsafe(32)
    invitation = Invitation(
        tenant=tenant,
        email=email,
        username=username,
        role=role,
        digest=_token_digest(token),
        created_by=actor.label[:150],
        expires_at=timezone.now() + timedelta(days=settings.PARKWEB_INVITATION_DAYS),
    )
    checked(lambda: invitation.full_clean(exclude=["tenant"]))
    with transaction.atomic():
        invitation.save()
        audit(actor, "member.invite", invitation.invitee, tenant=tenant, role=role)
    address = email
    if username:
        user = get_user_model()._default_manager.filter(username=username, is_active=True).first()
        address = user.email if user is not None else ""
    if address:
        link = f"{site_url.rstrip('/')}/accounts/invitation/{token}/"
        send_mail(
            f"You are invited to {tenant.name} on parkweb",
            f"{actor.label} invites you to join {tenant.name} as {role.label.lower()}.\n\n"
            f"Accept here (the link works once, for {settings.PARKWEB_INVITATION_DAYS} "
            f"days):\n{link}\n",
            None,
            [address],
        )
    return invitation


def member_invite(
    tenant: Tenant,
    *,
    actor: Actor,
    role: str,
    site_url: str,
    email: str = "",
    username: str = "",
) -> Membership | Invitation:
    """Add someone, by e-mail address or username: a member already gets the role at once
    (the membership is returned); anyone else is invited (the invitation is returned),
    whether or not they have an account, so the answer reveals no username."""
    members = Membership.objects.filter(tenant=tenant).select_related("user")
    if username.strip():
        existing = members.filter(user__username=username.strip()).first()
    else:
        existing = members.filter(user__email__iexact=email.strip()).first() if email else None
    if existing is not None:
        return member_role_set(existing, role, actor=actor)
    return invitation_create(
        tenant, actor=actor, role=role, site_url=site_url, email=email, username=username
    )


def invitation_for(token: str) -> Invitation:
    """The pending invitation behind a link's token (NotFound for any other)."""
    invitation = (
        Invitation.objects.select_related("tenant").filter(digest=_token_digest(token)).first()
    )
    if invitation is None or not invitation.pending or not invitation.tenant.active:
        raise NotFound("This invitation link is not valid any more: ask for a new one.")
    return invitation


def pending_invitations(user) -> list[Invitation]:
    """Invitations waiting for this person: to their username, or their e-mail address."""
    mine = Invitation.objects.filter(
        accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
    ).select_related("tenant")
    by_name = list(mine.filter(username=user.get_username()))
    by_mail = list(mine.filter(email=user.email.lower())) if user.email else []
    return [i for i in {i.pk: i for i in by_name + by_mail}.values() if i.tenant.active]


@transaction.atomic
def invitation_accept(invitation: Invitation, user) -> Membership:
    """The invited person (logged in as themselves) joins the tenant with the role."""
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if not invitation.pending:
        raise NotFound("This invitation link is not valid any more: ask for a new one.")
    if invitation.username and invitation.username != user.get_username():
        raise Invalid("This invitation is for another account.")
    membership, _ = member_set(invitation.tenant, user, invitation.role, actor=Actor.of(user))
    invitation.accepted_at, invitation.accepted_by = timezone.now(), user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    return membership


@transaction.atomic
def invitation_sign_up(invitation: Invitation, *, username: str, password: str):
    """Someone invited by e-mail without an account: make it (with that address), then
    accept. Returns the new user."""
    if not invitation.email:
        raise Invalid("Log in to accept this invitation.")
    users = get_user_model()._default_manager
    if users.filter(email__iexact=invitation.email).exists():
        raise Invalid("You have an account already: log in to accept this invitation.")
    user = users.model(username=username.strip(), email=invitation.email)
    try:
        user.full_clean(exclude=["password"])
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            raise Invalid.of(exc) from exc
        raise Invalid({"password": exc.messages}) from exc
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:
        raise Invalid({"username": "Choose another username."}) from exc
    invitation_accept(invitation, user)
    return user


@transaction.atomic
def invitation_revoke(invitation: Invitation, *, actor: Actor) -> None:
    if invitation.pending:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        audit(actor, "member.uninvite", invitation.invitee, tenant=invitation.tenant_id)


# -- API keys --------------------------------------------------------------------------------


@transaction.atomic
def api_key_create(tenant: Tenant, *, actor: Actor, name: str, role: str) -> tuple[ApiKey, str]:
    """A new key and its full text, which is shown once and never again."""
    role = _role(role)
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        tenant=tenant,
        name=name.strip(),
        role=role,
        prefix=prefix,
        digest=digest(secret),
        created_by=actor.user,
    )
    checked(key.full_clean)
    key.save()
    audit(actor, "api_key.create", f"{key.name} ({prefix})", tenant=tenant, role=role)
    return key, f"{KEY_PREFIX}{prefix}_{secret}"


@transaction.atomic
def api_key_revoke(key: ApiKey, *, actor: Actor) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit(actor, "api_key.revoke", f"{key.name} ({key.prefix})", tenant=key.tenant_id)
