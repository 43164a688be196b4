"""Forms: they read people's input; the services check it (once) and save it."""

from datetime import date, timedelta

from django import forms
from django.db.models import Q
from django.utils import timezone

from parkweb.forms import ParsingModelForm

from . import options, rules
from .models import DialplanContext, ParkedCall, ParkingLot


class LotForm(ParsingModelForm):
    class Meta:
        model = ParkingLot
        fields = [field for group in options.GROUPS.values() for field in group]

    def __init__(self, *args, tenant, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.tenant = tenant
        contexts = DialplanContext.objects.filter(tenant=tenant).select_related("server")
        self.fields["context"].queryset = contexts
        self.fields["comebackcontext"].queryset = contexts
        self.fields["server"].queryset = (
            self.fields["server"].queryset.filter(contexts__tenant=tenant).distinct()
        )
        # Another tenant's context or server is not on offer: said as every door says it.
        for name, message in (
            ("context", rules.CONTEXT_NOT_OWNED),
            ("comebackcontext", rules.CONTEXT_NOT_OWNED),
            ("server", rules.SERVER_NOT_OFFERED),
        ):
            self.fields[name].error_messages["invalid_choice"] = message
        if self.instance.pk:
            self.fields["slug"].disabled = True

    def groups(self) -> list[dict]:
        return [
            {
                "title": "Basics",
                "text": "Where calls park and for how long.",
                "names": options.GROUPS[options.BASICS],
            },
            {
                "title": "When nobody picks up",
                "text": "What happens to a call still parked when its parking time runs out.",
                "names": options.GROUPS[options.COMEBACK],
                "summary": self.comeback_policy(),
            },
            {
                "title": "Advanced",
                "text": "Hints for busy lamp fields, sounds, and what the people on a "
                "picked-up call may do with DTMF.",
                "names": options.GROUPS[options.ADVANCED],
            },
        ]

    def comeback_policy(self) -> dict:
        """The timeout policy the form's values make, in words, with the res_parking.conf
        options that carry it (as Asterisk 22 behaves: see ASTERISK.md's timeout flow)."""
        time = _number(self["parkingtime"].value())
        dial = _number(self["comebackdialtime"].value())
        to_origin = bool(self["comebacktoorigin"].value())
        context_pk = str(self["comebackcontext"].value() or "")
        context = (
            self.fields["comebackcontext"].queryset.filter(pk=context_pk).first()
            if context_pk.isdigit()
            else None
        )
        if time == 0:
            return {
                "text": "A parked call waits until somebody picks it up: it never times out.",
                "options": ["parkingtime = 0"],
            }
        wait = f"{time} s" if time is not None else "the parking time"
        if to_origin:
            return {
                "text": f"After {wait}, the call rings the phone that parked it for "
                f"{dial if dial is not None else '?'} s. If nobody answers there either, "
                "Asterisk hangs up the call.",
                "options": [
                    f"parkingtime = {time}",
                    "comebacktoorigin = yes",
                    f"comebackdialtime = {dial}",
                ],
            }
        where = f"context {context.name}" if context else "the come back context chosen below"
        return {
            "text": f"After {wait}, the call goes to the {where}, to the extension named "
            "after the phone that parked it (like PJSIP_alice), else to s: your dialplan "
            "there decides what happens next.",
            "options": [
                f"parkingtime = {time}",
                "comebacktoorigin = no",
                f"comebackcontext = {context.name if context else '(required)'}",
            ],
        }


def _number(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


FIRST_DAY = date(2000, 1, 1)


class HistoryFilters(forms.Form):
    """The history page's filters; every one optional, every one checked."""

    STILL_PARKED = "parked"

    lot = forms.ChoiceField(required=False)
    outcome = forms.ChoiceField(required=False)
    # No help texts: Django would point aria-describedby at them, and the row has no room.
    caller = forms.CharField(required=False, max_length=40, label="Caller number or name")
    day = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, lots, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["lot"].choices = [("", "all"), *((lot.slug, lot.name) for lot in lots)]
        self.fields["outcome"].choices = [
            ("", "all"),
            (self.STILL_PARKED, "still parked"),
            *ParkedCall.Outcome.choices,
        ]

    def clean_caller(self) -> str:
        caller = self.cleaned_data["caller"].strip()
        if caller and not caller.isprintable():
            raise forms.ValidationError("Use letters, digits and punctuation only.")
        return caller

    def clean_day(self):
        day = self.cleaned_data["day"]
        if day and not FIRST_DAY <= day <= timezone.localdate() + timedelta(days=1):
            raise forms.ValidationError(f"Give a day from {FIRST_DAY:%Y} to today.")
        return day

    def apply(self, calls):
        """Narrow a queryset of parked calls by the valid filters."""
        data = self.cleaned_data
        if data["lot"]:
            calls = calls.filter(lot__slug=data["lot"])
        if data["outcome"] == self.STILL_PARKED:
            calls = calls.filter(ended_at__isnull=True)
        elif data["outcome"]:
            calls = calls.filter(outcome=data["outcome"])
        if data["caller"]:
            calls = calls.filter(
                Q(caller_id_num__icontains=data["caller"])
                | Q(caller_id_name__icontains=data["caller"])
            )
        return calls
