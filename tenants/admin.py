"""Operator admin for tenants, members, invitations, keys and the audit log: every change
goes through `tenants.services`, as from the pages and the API."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect

from parkweb.errors import DomainError
from parkweb.forms import ReadOnlyAdmin, ServiceAdmin, ServiceForm

from . import services
from .actors import Actor
from .models import ApiKey, AuditEntry, Invitation, Membership, Tenant


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class MembershipInline(ReadOnlyInline):
    """Members are changed on their own page (the last-admin rule holds there)."""

    model = Membership
    fields = ["user", "role", "extension", "created_at"]
    readonly_fields = fields


class TenantForm(ServiceForm):
    def write(self, tenant):
        return services.tenant_save(tenant, actor=self.actor)


@admin.register(Tenant)
class TenantAdmin(ServiceAdmin):
    form = TenantForm
    list_display = ["slug", "name", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]

    def get_readonly_fields(self, request, obj=None):
        return ["slug"] if obj else []


class MembershipForm(ServiceForm):
    def write(self, membership):
        if membership.pk is None:  # someone already a member gets the role
            membership, _ = services.member_set(
                membership.tenant, membership.user, membership.role, actor=self.actor
            )
            return membership
        return services.member_role_set(membership, membership.role, actor=self.actor)


@admin.register(Membership)
class MembershipAdmin(ServiceAdmin):
    form = MembershipForm
    list_display = ["user", "tenant", "role", "extension", "created_at"]
    list_filter = ["role", "tenant"]
    search_fields = ["user__username", "tenant__slug"]
    autocomplete_fields = ["user", "tenant"]
    fields = ["user", "tenant", "role", "extension"]

    def get_readonly_fields(self, request, obj=None):
        return ["user", "tenant", "extension"] if obj else ["extension"]

    def delete_view(self, request, object_id, extra_context=None):
        """Removing goes through the service; its refusal (the last admin) is shown on
        the member's page, as the pages and the API refuse it."""
        membership = self.get_object(request, object_id)
        if request.method == "POST" and membership is not None:
            if not self.has_delete_permission(request, membership):
                raise PermissionDenied
            try:
                services.member_remove(membership, actor=Actor.of(request.user))
            except DomainError as refused:
                self.message_user(request, refused.message, messages.ERROR)
                return redirect("admin:tenants_membership_change", membership.pk)
            self.message_user(request, f"{membership} removed.", messages.SUCCESS)
            return redirect("admin:tenants_membership_changelist")
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request, obj):
        services.member_remove(obj, actor=Actor.of(request.user))

    def delete_queryset(self, request, queryset):
        for membership in queryset:
            try:
                services.member_remove(membership, actor=Actor.of(request.user))
            except DomainError as refused:
                self.message_user(request, f"{membership}: {refused.message}", messages.ERROR)


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdmin):
    list_display = ["invitee", "tenant", "role", "created_by", "created_at", "expires_at"]
    list_filter = ["tenant", "role"]
    search_fields = ["email", "username"]
    list_select_related = ["tenant"]
    actions = ["withdraw"]

    @admin.action(description="Withdraw the invitations")
    def withdraw(self, request, queryset):
        for invitation in queryset:
            services.invitation_revoke(invitation, actor=Actor.of(request.user))


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ["name", "tenant", "role", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["tenant", "role"]
    search_fields = ["name", "prefix"]
    list_select_related = ["tenant"]
    exclude = ["digest"]
    actions = ["revoke"]

    @admin.action(description="Revoke the keys")
    def revoke(self, request, queryset):
        for key in queryset:
            services.api_key_revoke(key, actor=Actor.of(request.user))


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Who did what: written by the services, never edited by hand."""

    list_display = ["created_at", "tenant", "actor", "action", "target", "ok"]
    list_filter = ["action", "ok", "tenant"]
    search_fields = ["actor", "target"]
    list_select_related = ["tenant"]
