"""Forms that only read input: the services check it, once, on every door alike."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.core.validators import ProhibitNullCharactersValidator
from django.forms.models import construct_instance

from tenants.actors import SYSTEM, Actor
from tenants.models import SafeTextValidator

from .errors import DomainError


def one_text_rule(field, model_field=None) -> None:
    """A field whose model checks safe text keeps that rule alone, so a NUL is refused with
    the same message as any other line-breaking character, on every door."""
    rules = (model_field or field).validators
    if any(isinstance(v, SafeTextValidator) for v in rules):
        field.validators = [
            v for v in field.validators if not isinstance(v, ProhibitNullCharactersValidator)
        ]


class ParsingModelForm(forms.ModelForm):
    """A model form that only reads its input into the instance (types, choices, required
    fields): the rules are the service's to check. Its refusal goes next to the fields
    with `add_domain_errors`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        model_fields = {f.name: f for f in self._meta.model._meta.get_fields()}
        for name, field in self.fields.items():
            if hasattr(model_fields.get(name), "validators"):
                one_text_rule(field, model_fields[name])

    def _post_clean(self) -> None:
        try:
            self.instance = construct_instance(
                self, self.instance, self._meta.fields, self._meta.exclude
            )
        except ValidationError as exc:
            self._update_errors(exc)

    def add_domain_errors(self, error: DomainError) -> None:
        for field, messages in error.errors.items():
            self.add_error(field if field in self.fields else None, messages)


class ServiceForm(ParsingModelForm):
    """An admin form whose validation is the service's write: the admin saves through the
    same service, with the same checks and messages, as the pages and the API. The write
    happens inside the admin's transaction; a refusal shows next to the fields."""

    actor: Actor = SYSTEM  # the person, set per request by ServiceAdmin.get_form

    def write(self, instance):
        raise NotImplementedError

    def _post_clean(self) -> None:
        super()._post_clean()
        if self._errors:
            return
        try:
            self.instance = self.write(self.instance)
        except DomainError as refused:
            self.add_domain_errors(refused)


class ServiceAdmin(admin.ModelAdmin):
    """Saves through the form's service write (see ServiceForm), never model.save()."""

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        return type(form.__name__, (form,), {"actor": Actor.of(request.user)})

    def save_model(self, request, obj, form, change) -> None:
        """Saved already, by the form's service write."""


class ReadOnlyAdmin(admin.ModelAdmin):
    """What parkweb writes itself (history, the audit log), never edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
