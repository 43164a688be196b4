"""What every benchmark shares: a place of its own to run in (database, Redis, sandbox
Asterisk, web port), chosen before Django starts, and the counts every run must get right.

Full-size runs use fixed places, apart from the test suite's (sandboxes "test" and
"phones", AMI 5039 and 5046, daphne on 8766, Redis database 13) and from each other:
deploy.py sandbox "bench" (AMI 5041) and Redis database 14, api.py "bench-api" (5042) and
12, live.py "bench-live" (5043), daphne on 8765 and 11, board.py daphne on 8767 and 10. A
smoke run (`--smoke`: small counts, a few seconds, what tests/bench runs inside `make
test`) takes free ports, a Redis server of its own, and a sandbox and databases named after
the test run's sandbox (PARKWEB_TEST_SANDBOX, "test" by default), so it meets neither a
full-size run nor another test run on the same machine. Timing is never judged in a
smoke run; counts are, in every run: a wrong count makes the benchmark exit non-zero.
"""

import atexit
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASGI_APP = "parkweb.asgi:application"


@dataclass(frozen=True)
class Place:
    name: str  # names this run's logs and workers
    database_url: str
    redis_url: str
    sandbox: str
    ami_port: int
    web_port: int


def place(
    bench: str,
    smoke: bool,
    *,
    redis_db: int,
    sandbox: str = "",
    ami_port: int = 0,
    web_port: int = 0,
) -> Place:
    """Where this run of `bench` lives: the fixed full-size place given, or a smoke one.
    From here on SIGTERM ends the run as Ctrl-C does, through its cleanup, and whatever
    step it ends in, the processes it started are stopped on the way out."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    if smoke:
        test_run = os.environ.get("PARKWEB_TEST_SANDBOX", "test")[:24]
        name = f"{test_run}-smoke-{bench}"
        database = fresh_database(f"parkweb_bench_{bench}_smoke_{test_run.replace('-', '_')}")
        where = Place(
            name, database, private_redis(), f"{test_run}-smoke", free_port(), free_port()
        )
    else:
        database = fresh_database(f"parkweb_bench_{bench}")
        redis_url = f"redis://127.0.0.1:6379/{redis_db}"
        where = Place(f"bench-{bench}", database, redis_url, sandbox, ami_port, web_port)
    atexit.register(stop_children)  # runs before the private Redis is stopped
    return where


def stop_children() -> None:
    """End, by pid, every process this one started that still runs (a worker or a web
    process whose start was interrupted, say). The sandbox Asterisk is no child of ours:
    each benchmark stops it itself."""
    children = []
    for task in Path("/proc/self/task").iterdir():
        with suppress(FileNotFoundError):  # a thread that has just ended
            children += (task / "children").read_text().split()
    for pid in children:
        with suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGTERM)


def fresh_database(name: str) -> str:
    """A new, empty database: PostgreSQL `name` when one answers on 127.0.0.1, else an
    SQLite file named after it. Returns its DATABASE_URL."""
    if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], check=False).returncode == 0:
        admin = "postgres://postgres@127.0.0.1:5432/postgres"
        for sql in (f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"):
            subprocess.run(["psql", admin, "-qc", sql], check=True)
        return f"postgres://postgres@127.0.0.1:5432/{name}"
    path = ROOT / f"{name}.sqlite3"
    path.unlink(missing_ok=True)
    return f"sqlite:///{path}"


def free_port() -> int:
    """A TCP port nothing listens on now, chosen by the system."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    """Until `process` accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"{process.args[0]} ended before listening on {port}") from None
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing listens on {port} after {timeout:g} s") from None
            time.sleep(0.1)


def stop(process: subprocess.Popen) -> None:
    """End a process this run started (by its pid), killing it if it will not end."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def private_redis() -> str:
    """A Redis server of this run's own on a free port, ended when this process exits."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    atexit.register(stop, server)
    wait_for_port(port, server)
    return f"redis://127.0.0.1:{port}/0"


def procfile_daphne_options() -> list[str]:
    """The daphne options of the Procfile's web line, but its address and port."""
    line = next(
        line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:")
    )
    words = shlex.split(line.removeprefix("web:"))[1:]  # after "daphne"
    options = []
    while words and words[0] != ASGI_APP:
        option = words.pop(0)
        value = words.pop(0) if words and not words[0].startswith("-") else None
        if option not in ("-b", "-p"):
            options += [option] + ([value] if value is not None else [])
    return options


def start_daphne(port: int, env: dict, log_name: str, *options: str) -> subprocess.Popen:
    """parkweb's web process (HTTP and websockets) on 127.0.0.1, as the Procfile runs it
    (its options, or these `options` instead), its output in artifacts/; returns once it
    listens."""
    (ROOT / "artifacts").mkdir(exist_ok=True)
    log = open(ROOT / "artifacts" / f"{log_name}.log", "w")  # noqa: SIM115 (lives with daphne)
    options = options or tuple(procfile_daphne_options())
    web = subprocess.Popen(
        [sys.executable, "-m", "daphne", *options, "-b", "127.0.0.1", "-p", str(port), ASGI_APP],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port, web, timeout=60)
    except BaseException:
        stop(web)
        raise
    return web


def counts(label: str, *, expected: int, seen: int, duplicate: int, errors: int) -> bool:
    """Print one counts line (tests/bench reads it); True when nothing was lost, seen twice
    or refused, and there was something to see."""
    lost = expected - seen
    print(
        f"counts {label}: expected {expected}, seen {seen}, lost {lost}, "
        f"duplicate {duplicate}, errors {errors}",
        flush=True,
    )
    return expected > 0 and lost == 0 and duplicate == 0 and errors == 0


def exit_on_wrong_counts(right: list[bool]) -> None:
    if not all(right):
        raise SystemExit("counts are wrong: see the counts lines above")


# The helpers below need Django set up.


def session_for(user) -> str:
    """A logged-in session for `user`; returns its key."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def viewers(tenants, count: int, prefix: str) -> list[tuple[str, str]]:
    """`count` viewers spread round the tenants, each logged in: (tenant slug, session key)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from tenants.models import Membership, Role

    user_model = get_user_model()
    password = make_password("bench-pw-123")  # hashed once: the hasher is slow on purpose
    users = user_model.objects.bulk_create(
        user_model(username=f"{prefix}{n}", password=password) for n in range(count)
    )
    Membership.objects.bulk_create(
        Membership(user=user, tenant=tenants[n % len(tenants)], role=Role.VIEWER)
        for n, user in enumerate(users)
    )
    return [(tenants[n % len(tenants)].slug, session_for(user)) for n, user in enumerate(users)]


def board(port: int, slug: str, session_key: str, **options):
    """A board's websocket to its tenant's parking state, as the logged-in page opens it."""
    import websockets

    return websockets.connect(
        f"ws://127.0.0.1:{port}/ws/t/{slug}/parking/",
        additional_headers={
            "Cookie": f"sessionid={session_key}",
            "Origin": f"http://127.0.0.1:{port}",
        },
        max_queue=None,
        **options,
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process, in MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def start_sandbox(where: Place):
    """This run's sandbox Asterisk, started afresh (a leftover of an interrupted run of the
    same place is stopped first)."""
    from tests.integration.sandbox import Sandbox, sandbox

    sandbox("stop", "--name", where.sandbox)
    try:
        started = sandbox("start", "--name", where.sandbox, "--ami-port", str(where.ami_port))
    except BaseException:  # failed or interrupted: it may have come up all the same
        sandbox("stop", "--name", where.sandbox, check=False)
        raise
    return Sandbox.from_env_output(started.stdout)


def live_lots(box, server) -> dict[str, int]:
    """Counts for "every lot of `server` runs on Asterisk as saved" (its spaces and timeout,
    as `Parkinglots` reports them); errors are the server's deployments that are not ok."""
    from lots.models import Deployment, ParkingLot

    saved = {
        lot.asterisk_name: (lot.parkpos_start, lot.parkpos_end, lot.parkingtime)
        for lot in ParkingLot.objects.filter(server=server).select_related("tenant")
    }
    running = [lot for lot in box.running_state()[0] if lot.name in saved]
    names = [lot.name for lot in running]
    as_saved = {
        lot.name
        for lot in running
        if (lot.start_space, lot.stop_space, lot.timeout) == saved[lot.name]
    }
    return {
        "expected": len(saved),
        "seen": len(as_saved),
        "duplicate": len(names) - len(set(names)),
        "errors": Deployment.objects.filter(server=server).exclude(status="ok").count(),
    }
