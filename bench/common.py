"""What every benchmark needs before Django starts: a database of its own."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASGI_APP = "parkweb.asgi:application"


def fresh_database(name: str) -> str:
    """A new, empty database: PostgreSQL `name` when one answers on 127.0.0.1, else an
    SQLite file named after it. Returns its DATABASE_URL."""
    if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], check=False).returncode == 0:
        admin = "postgres://postgres@127.0.0.1:5432/postgres"
        for sql in (f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}"):
            subprocess.run(["psql", admin, "-qc", sql], check=True)
        return f"postgres://postgres@127.0.0.1:5432/{name}"
    path = ROOT / f"{name}.sqlite3"
    path.unlink(missing_ok=True)
    return f"sqlite:///{path}"


def start_daphne(port: int, env: dict, log_name: str) -> subprocess.Popen:
    """parkweb's web process (HTTP and websockets) on 127.0.0.1, its output in artifacts/."""
    (ROOT / "artifacts").mkdir(exist_ok=True)
    log = open(ROOT / "artifacts" / f"{log_name}.log", "w")  # noqa: SIM115 (lives with daphne)
    return subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), ASGI_APP],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def session_for(user) -> str:
    """A logged-in session for `user` (Django must be set up); returns its key."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key
