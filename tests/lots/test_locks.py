"""Session advisory locks on a connection a worker keeps from one task to the next: one
that cannot be let go must not stay held."""

import time

import pytest
from django.db import DatabaseError, connection

from lots.locks import webhook_locks

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL's advisory locks; CI runs them there"
)


def refuse_unlocks(execute, sql, params, many, context):
    if "advisory_unlock" in sql:
        raise DatabaseError("unlock refused")
    return execute(sql, params, many, context)


def held_elsewhere(key: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s "
            "AND pid <> pg_backend_pid() AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())",
            [key],
        )
        return cursor.fetchone()[0] > 0


def test_locks_are_let_go_and_the_connection_kept(transactional_db):
    with webhook_locks([41, 42]) as held:
        assert held == {41, 42}
        kept = connection.connection
    assert kept is not None and connection.connection is kept
    with connection.cursor() as cursor:
        cursor.execute(  # this session's: others (CI's integration workers) take theirs
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        assert cursor.fetchone()[0] == 0


def test_a_lock_that_cannot_be_let_go_closes_its_connection(transactional_db):
    with (
        pytest.raises(DatabaseError, match="unlock refused"),
        connection.execute_wrapper(refuse_unlocks),
        webhook_locks([43]) as held,
    ):
        assert held == {43}
    assert connection.connection is None  # closed: the server lets go of its locks
    deadline = time.monotonic() + 10
    while held_elsewhere(43):  # the old session ends as the server sees the close
        assert time.monotonic() < deadline, "the lock stayed held"
        time.sleep(0.05)
    with webhook_locks([43]) as held:
        assert held == {43}
