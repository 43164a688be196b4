"""Every benchmark in its smoke size (`--smoke`): the same paths as a full run, a few seconds
each, judged on what it counted (never on time: these machines are shared and noisy).

Each runs as its own process, as from a shell, and starts its own database, Redis, sandbox
Asterisk and web processes (bench/common.py keeps them apart from this suite's) and stops
them again, also when it fails or is interrupted here."""

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 150  # for one smoke run; each takes 10-30 s
COUNTS = re.compile(
    r"^counts (?P<label>.+): expected (\d+), seen (\d+), lost (\d+), duplicate (\d+), "
    r"errors (\d+)$",
    re.MULTILINE,
)
# What each benchmark must count in its smoke size: label -> items expected.
EXPECTED = {
    "api": {"lots listed": 250, "lots created and live": 40},
    "board": {"changes on 1 x 9": 20, "changes on 3 x 20": 20},
    "deploy": {
        "10 lots live": 10,
        "50 lots live": 50,
        # five changes of one lot's timeout chain, each live with no reload
        "10 lots, chain changes live without a reload": 5,
        "50 lots, chain changes live without a reload": 5,
        "burst edits live": 20,
    },
    # 10 calls round 3 tenants, two events each, to each of a tenant's 2 endpoints / boards
    "webhooks": {
        "webhook deliveries": 40,
        "board frames without webhooks": 40,
        "board frames with webhooks": 40,
    },
    # 2,000 delivered rows over 60 days, half older than the log's 30 days; 7 pending
    # deliveries for each of a tenant's 5 endpoints
    "webhook_log": {"deliveries purged": 1000, "deliveries kept": 1035},
    # 30 calls round 5 tenants, two events each, to each of a tenant's 4 clients
    "live": {"event frames": 240, "herd snapshots": 100},
}


def run_smoke(bench: str) -> tuple[int, str]:
    """Exit status and output (stdout, then stderr) of `bench/<bench>.py --smoke`."""
    process = subprocess.Popen(
        [sys.executable, f"bench/{bench}.py", "--smoke"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=SECONDS)
    except subprocess.TimeoutExpired:
        # The benchmark's own cleanup stops what it started (bench/common.py).
        process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        pytest.fail(f"bench/{bench}.py --smoke ran over {SECONDS} s:\n{out}\n{err}")
    return process.returncode, f"{out}\n{err}"


def counted(output: str) -> dict[str, dict[str, int]]:
    """The counts lines of a benchmark's output, by label."""
    names = ("expected", "seen", "lost", "duplicate", "errors")
    return {
        match["label"]: dict(zip(names, map(int, match.groups()[1:]), strict=True))
        for match in COUNTS.finditer(output)
    }


def test_counts_lines_are_read_as_printed():
    output = (
        "| 10 | 4 | 33 |\n"
        "counts herd snapshots: expected 100, seen 97, lost 3, duplicate 1, errors 2\n"
        "counts 10 lots live: expected 10, seen 10, lost 0, duplicate 0, errors 0\n"
    )
    assert counted(output) == {
        "herd snapshots": {"expected": 100, "seen": 97, "lost": 3, "duplicate": 1, "errors": 2},
        "10 lots live": {"expected": 10, "seen": 10, "lost": 0, "duplicate": 0, "errors": 0},
    }


@pytest.mark.parametrize("bench", sorted(EXPECTED))
def test_benchmark_smoke_run_counts_everything_once(bench):
    status, output = run_smoke(bench)
    counts = counted(output)
    assert counts.keys() == EXPECTED[bench].keys(), output
    for label, items in EXPECTED[bench].items():
        assert counts[label] == {
            "expected": items,
            "seen": items,
            "lost": 0,
            "duplicate": 0,
            "errors": 0,
        }, f"{label}:\n{output}"
    assert status == 0, output
