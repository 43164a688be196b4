"""Forms: they read people's input; the services check it (once) and save it."""

from datetime import date, timedelta

from django import forms
from django.db.models import Q
from django.utils import timezone

from parkweb.forms import ParsingModelForm

from . import options, rules
from .models import DialplanContext, ParkedCall, ParkingLot


def chain_fields_optional(form) -> None:
    """The timeout chain's fields came after the rest: a form posted without them (an
    older page, a script) keeps the lot's values, and an empty number its default."""
    for name in (*options.CHAIN, *options.ALERT_FIELDS):
        field = form.fields.get(name)
        if field is None or name == "fallback_context":
            continue
        field.required = False
        default = ParkingLot._meta.get_field(name).default
        if isinstance(field, forms.IntegerField):
            field.clean = _or_default(field.clean, default)


def _or_default(clean, default):
    def clean_or_default(value):
        found = clean(value)
        return default if found is None else found

    return clean_or_default


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
        self.fields["fallback_context"].queryset = contexts
        self.fields["server"].queryset = (
            self.fields["server"].queryset.filter(contexts__tenant=tenant).distinct()
        )
        chain_fields_optional(self)
        # Another tenant's context or server is not on offer: said as every door says it.
        for name, message in (
            ("context", rules.CONTEXT_NOT_OWNED),
            ("comebackcontext", rules.CONTEXT_NOT_OWNED),
            ("fallback_context", rules.CONTEXT_NOT_OWNED),
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
                "title": "Alerts",
                "text": "Warnings on the board (and by mail to members who ask for them) "
                "before callers give up: a lot filling up, a call waiting too long.",
                "names": options.GROUPS[options.ALERTS],
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
        policy = self._policy()
        if time == 0:
            policy = {
                "text": "A parked call waits until somebody picks it up: it never times out.",
                "options": ["parkingtime = 0"],
            }
        elif self["timeout_policy"].value() == rules.TIMEOUT_CHAIN:
            policy = self._chain_policy(time, dial)
        reminders = _number(self["reminder_seconds"].value())
        if reminders:
            policy["text"] += (
                f" Meanwhile, every {reminders} s the parker's phone rings with a reminder; "
                "answering it picks the call up."
            )
            policy["options"].append(f"parkweb rings the parker every {reminders} s")
        return policy

    def _context(self, name: str):
        pk = str(self[name].value() or "")
        return self.fields[name].queryset.filter(pk=pk).first() if pk.isdigit() else None

    def _chain_policy(self, time: int | None, dial: int | None) -> dict:
        """parkweb's timeout chain in words, with the dialplan it generates."""
        slug = self["slug"].value() or self.instance.slug or "<lot>"
        tenant = self.instance.tenant.slug
        context = f"parkweb-timeout-{tenant}_{slug}"
        wait = f"{time} s" if time is not None else "the parking time"
        steps, lines = (
            [],
            [
                f"parkingtime = {time}",
                "comebacktoorigin = no",
                f"comebackcontext = {context}",
            ],
        )
        if self["comeback_ring_parker"].value():
            prefix = self["comeback_cid_prefix"].value() or ""
            marked = f", shown as '{prefix}701 <caller>'" if prefix else ""
            steps.append(f"the call rings the phone that parked it for {dial} s{marked}")
            lines.append(f"Dial(${{PARKER}},{dial})")
        fallback = self["fallback"].value()
        if fallback == rules.FALLBACK_DESTINATION:
            target = self._context("fallback_context")
            extension = self["fallback_extension"].value() or "?"
            where = f"{extension}@{target.name}" if target else f"{extension}@(context below)"
            steps.append(f"then, if nobody answers, it goes to {where}")
            lines.append(f"Goto({target.name},{extension},1)" if target else "Goto(...)")
        elif fallback == rules.FALLBACK_REPARK:
            times = self["repark_limit"].value() or 1
            steps.append(
                f"then, if nobody answers, it is parked again (at most {times} more "
                "time(s)), and hung up after that"
            )
            lines.append("Park(<this lot>)")
        else:
            steps.append("then, if nobody answers, it is hung up")
            lines.append("Hangup()")
        return {
            "text": f"After {wait}, " + ", ".join(steps) + ". parkweb generates this "
            f"dialplan in {context}; the PBX's extensions.conf includes it once "
            "(#tryinclude parkweb_timeout.conf).",
            "options": lines,
        }

    def _policy(self) -> dict:
        """res_parking's own timeout policy (the guide's scenarios, as Asterisk 22 runs them)."""
        time = _number(self["parkingtime"].value())
        dial = _number(self["comebackdialtime"].value())
        to_origin = bool(self["comebacktoorigin"].value())
        context = self._context("comebackcontext")
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
            # What a lot's timeout chain did after the timeout.
            *(
                (f"{ParkedCall.Outcome.TIMED_OUT}.{after}", f"timed out, then {label}")
                for after, label in ParkedCall.AfterTimeout.choices
            ),
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
            outcome, _, after = data["outcome"].partition(".")
            calls = calls.filter(outcome=outcome, **({"after_timeout": after} if after else {}))
        if data["caller"]:
            calls = calls.filter(
                Q(caller_id_num__icontains=data["caller"])
                | Q(caller_id_name__icontains=data["caller"])
            )
        return calls
