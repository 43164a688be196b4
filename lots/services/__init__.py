"""Every write to the parking domain goes through here: `services.<noun>_<verb>`.

config: saves of servers, contexts and lots; deploys: making them live on Asterisk;
parking: live parked calls.
"""

from tenants.actors import SYSTEM, Actor

from .config import (
    context_create,
    context_save,
    lot_create,
    lot_delete,
    lot_save,
    lot_update,
    lots_retry,
    server_retire,
    server_save,
)
from .deploys import (
    Outcome,
    ami_client,
    config_changed,
    config_store,
    deployment_delay,
    deployment_pending,
    deployment_request,
    deployment_run,
    deployments_recover,
    deployments_retry_due,
    hints_sync,
    retry_delay,
    server_reconcile,
)
from .parking import (
    lot_for,
    parked_call_apply,
    parked_call_hangup,
    parked_call_retrieve,
    parked_call_retrieve_to_device,
    parked_calls_purge,
    parking_event_apply,
    reminders_send,
    retrieve_ringing_cancel,
    server_events_count,
    server_health_update,
    server_resync,
    timeout_step_apply,
)
from .phones import member_extension_set, phones_save

__all__ = [
    "SYSTEM",
    "Actor",
    "Outcome",
    "ami_client",
    "config_changed",
    "config_store",
    "context_create",
    "context_save",
    "deployment_delay",
    "deployment_pending",
    "deployment_request",
    "deployment_run",
    "deployments_recover",
    "deployments_retry_due",
    "hints_sync",
    "lot_create",
    "lot_delete",
    "lot_for",
    "lot_save",
    "lot_update",
    "lots_retry",
    "member_extension_set",
    "parked_call_apply",
    "parked_call_hangup",
    "parked_call_retrieve",
    "parked_call_retrieve_to_device",
    "parked_calls_purge",
    "parking_event_apply",
    "phones_save",
    "reminders_send",
    "retrieve_ringing_cancel",
    "retry_delay",
    "server_events_count",
    "server_health_update",
    "server_reconcile",
    "server_resync",
    "server_retire",
    "server_save",
    "timeout_step_apply",
]
