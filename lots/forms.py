"""Tenant self-service forms: the model's own validation, grouped for people."""

from django import forms

from .models import DialplanContext, ParkingLot

BASICS = [
    "name",
    "slug",
    "server",
    "context",
    "parkext",
    "parkext_exclusive",
    "parkpos_start",
    "parkpos_end",
    "parkingtime",
    "findslot",
    "enabled",
]
COMEBACK = ["comebacktoorigin", "comebackdialtime", "comebackcontext"]
ADVANCED = [
    "parkinghints",
    "parkedmusicclass",
    "courtesytone",
    "parkedplay",
    "parkedcalltransfers",
    "parkedcallreparking",
    "parkedcallhangup",
    "parkedcallrecording",
]


class LotForm(forms.ModelForm):
    class Meta:
        model = ParkingLot
        fields = BASICS + COMEBACK + ADVANCED

    def __init__(self, *args, tenant, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.tenant = tenant
        contexts = DialplanContext.objects.filter(tenant=tenant).select_related("server")
        self.fields["context"].queryset = contexts
        self.fields["comebackcontext"].queryset = contexts
        self.fields["server"].queryset = (
            self.fields["server"].queryset.filter(contexts__tenant=tenant).distinct()
        )
        if self.instance.pk:
            self.fields["slug"].disabled = True
        for name, field in self.fields.items():
            field.widget.attrs.setdefault("aria-describedby", f"help-{name}")

    def groups(self):
        return [
            ("Basics", "Where calls park and for how long.", BASICS),
            (
                "When nobody picks up",
                "What happens to a call still parked when its parking time runs out.",
                COMEBACK,
            ),
            (
                "Advanced",
                "Hints for busy lamp fields, sounds, and what the people on a "
                "picked-up call may do with DTMF.",
                ADVANCED,
            ),
        ]
