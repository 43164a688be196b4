"""schemathesis against parkweb's own OpenAPI schema, in process, with a database that has
tenants, a server, contexts, a lot, a parked call, members, keys and an invitation: path
parameters name those real objects, so writes reach the serializers and the services, not
only 404s. Whatever it sends, the API answers without a server error, every error is JSON,
and every response is what its schema describes."""

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import response_schema_conformance

from tests.lots.test_api import World

schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", get_wsgi_application())


@pytest.fixture
def world(db):
    # As Django's test client does: a request must not close the test's connection.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield World()
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schemathesis.check
def no_server_error(ctx, response, case):
    """No 5xx, but the 503 of an action on a call when its PBX cannot be reached (there is
    no Asterisk behind these tests), which is the answer the API promises then."""
    pbx_away = response.status_code == 503 and "/parked-calls/" in case.path
    assert response.status_code < 500 or pbx_away, (response.status_code, response.text[:200])


@schemathesis.check
def errors_are_json(ctx, response, case):
    """Every 4xx and 5xx of the API is JSON, never an HTML page."""
    if response.status_code >= 400:
        kind = response.headers.get("content-type", [""])
        kind = kind[0] if isinstance(kind, list) else kind
        assert kind.startswith("application/json"), (response.status_code, kind)


def real_ids(world, path: str) -> dict:
    """Path parameters that name the world's real objects."""
    pk = (
        world.member_a.pk
        if "/members/" in path
        else world.key.pk
        if "/api-keys/" in path
        else world.invitation.pk
        if "/invitations/" in path
        else world.deployment.pk
        if "/deployments/" in path
        else world.server.pk
    )
    return {"tenant": "tenant-a", "slug": "tenant-a", "lot": "main", "space": 701, "pk": pk}


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays repeatable
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_api_never_errors_and_matches_its_schema(case, world):
    if case.path_parameters:
        ids = real_ids(world, case.path)
        for name in case.path_parameters:
            if name in ids:
                case.path_parameters[name] = ids[name]
    case.call_and_validate(
        headers={"Authorization": f"Token {world.staff_token}"},
        checks=[no_server_error, response_schema_conformance, errors_are_json],
    )
