"""Yielding the CPU, for processes whose work may wait (webhook deliveries): the boards
and the watchers come first.

Linux's idle scheduling policy (SCHED_IDLE) ranks a task only against the other tasks of
its scheduling group. With autogroups (on in most distributions' kernels: one group per
session), a process alone in its session is a group of its own, and that group weighs as
much as the web server's or the watchers' group, whatever its tasks' policy. On a 2-core
host, two idle-policy busy loops in sessions of their own took the boards' p50 from 20 to
106 ms, and only to 29 ms with their groups' weight lowered too (bench/live.py --idle-load
2, --idle-load-groups keep, then yield). Under systemd with the cpu controller the group is
the unit's cgroup instead: `CPUWeight=idle` in deploy/systemd/parkweb-webhooks.service does
it there."""

import os

GROUP_NICE = 19  # an autogroup's lowest weight


def yield_cpu() -> None:
    """This process, and the threads it starts from now on, take only CPU time that no
    other process wants: the idle policy, and its group's lowest weight (group_yield)."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    group_yield()


def group_yield() -> bool:
    """Give this process's autogroup the lowest weight, if the group is its own: it leads
    its session (others in a shared session, a shell's say, are not its to slow down).
    Returns whether it did; a kernel without autogroups has nothing to lower."""
    if os.getsid(0) != os.getpid():
        return False
    try:
        with open("/proc/self/autogroup", "w") as group:
            group.write(str(GROUP_NICE))
    except OSError:
        return False
    return True


def yields() -> bool:
    """Whether this process runs under the idle policy (started so: a systemd unit's
    CPUSchedulingPolicy=idle, or `chrt --idle 0`)."""
    return os.sched_getscheduler(0) == os.SCHED_IDLE
