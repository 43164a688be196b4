"""What every benchmark needs before Django starts: a database of its own."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
