"""Make a rendered config live on one Asterisk: write, reload, verify, roll back.

No database here: `lots.services.deployment_run` gathers the plan, calls `apply`, and
records the outcome. Where the files go is a `ConfigStore`: a directory (Asterisk on this
host or a shared directory) or AMI `UpdateConfig` (Asterisk on another host).
"""

from __future__ import annotations

import asyncio
import difflib
import os
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from . import actions, comeback, confgen, confparse, verify
from .ami import AmiActionError, AmiClient, AmiResponse
from .confgen import Section

RES_PARKING = "res_parking.conf"
FEATURES = "features.conf"
# parkweb's generated dialplan (lots.asterisk.comeback): made live with
# DialplanExtensionAdd/Remove, never by reloading a module.
DIALPLAN = comeback.DIALPLAN
MODULE_OF = {RES_PARKING: "res_parking.so", FEATURES: "features"}
LAST_GOOD_SUFFIX = ".last-good"
RELOAD_IN_PROGRESS = "A reload is in progress"
# What parkweb puts back when there is no earlier good file at all.
EMPTY = {
    RES_PARKING: "[general]\n",
    FEATURES: "[general]\n\n[featuremap]\n",
    DIALPLAN: comeback.render({}),
}


class ConfigStore(Protocol):
    async def read(self, name: str) -> str | None: ...
    async def replace(self, name: str, text: str) -> None: ...
    async def keep_last_good(self, name: str, text: str) -> None: ...


class DirectoryStore:
    """Files in a local directory, replaced atomically: Asterisk never reads half a file."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    async def read(self, name: str) -> str | None:
        try:
            return (self.directory / name).read_text()
        except FileNotFoundError:
            return None

    async def replace(self, name: str, text: str) -> None:
        write_atomically(self.directory / name, text)

    async def keep_last_good(self, name: str, text: str) -> None:
        write_atomically(self.directory / (name + LAST_GOOD_SUFFIX), text)


def write_atomically(path: Path, text: str) -> None:
    """Temp file in the same directory, fsync, rename over the target, fsync the directory."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class AmiStore:
    """Files on a remote Asterisk, written by Asterisk itself through `UpdateConfig`.

    Asterisk refuses to create new files over AMI (it treats a path it cannot resolve as
    outside its config directory), so the file is rewritten in place, in batches (AMI takes
    at most 128 headers a message); nothing reloads it until the last batch is written.
    The last good text lives in parkweb's database, not beside the file. features.conf is
    not replaced: only `parkcall` in `[featuremap]` is set, leaving the operator's other
    features alone.
    """

    def __init__(self, ami: AmiClient):
        self.ami = ami

    async def sections(self, name: str) -> list[Section] | None:
        headers = await actions.get_config(self.ami, name)
        return None if headers is None else sections_from_getconfig(headers)

    async def read(self, name: str) -> str | None:
        sections = await self.sections(name)
        return None if sections is None else render_plain(sections)

    async def replace(self, name: str, text: str) -> None:
        wanted = sections_of(text)
        if name == FEATURES:
            featuremap = next((s.options for s in wanted if s.name == "featuremap"), ())
            await self._set_parkcall(dict(featuremap).get("parkcall", ""))
            return
        existing = await self.sections(name) or []
        edits: list[tuple[str, ...]] = [("DelCat", s.name) for s in existing]
        for section in wanted:
            edits.append(("NewCat", section.name))
            edits += [("Append", section.name, key, value) for key, value in section.options]
        await actions.update_config(self.ami, name, edits)

    async def _set_parkcall(self, code: str) -> None:
        existing = {s.name: dict(s.options) for s in await self.sections(FEATURES) or []}
        edits: list[tuple[str, ...]] = []
        if "featuremap" not in existing:
            edits.append(("NewCat", "featuremap"))
        if "parkcall" in existing.get("featuremap", {}):
            edits.append(("Delete", "featuremap", "parkcall"))
        if code:
            edits.append(("Append", "featuremap", "parkcall", code))
        await actions.update_config(self.ami, FEATURES, edits)

    async def keep_last_good(self, name: str, text: str) -> None:
        """The database keeps the last good text; nothing to write on the remote host."""


def sections_from_getconfig(headers: dict) -> list[Section]:
    """Sections from a GetConfig reply (Category-N, Line-N-M: key=value)."""
    categories: dict[str, str] = {}
    lines: dict[str, list[tuple[int, str, str]]] = {}
    for key, value in headers.items():
        if key.startswith("Category-"):
            categories[key.split("-")[1]] = str(value)
        elif key.startswith("Line-"):
            _, cat, line = key.split("-")
            name, _, option = str(value).partition("=")
            lines.setdefault(cat, []).append((int(line), name, option))
    return [
        Section(categories[cat], tuple((k, v) for _, k, v in sorted(lines.get(cat, []))))
        for cat in sorted(categories)
    ]


def render_plain(sections: list[Section]) -> str:
    out = []
    for section in sections:
        out.append(f"[{section.name}]")
        out += [f"{key} => {value}" for key, value in section.options]
    return "\n".join(out) + "\n"


@lru_cache(maxsize=8)
def sections_of(text: str) -> tuple[Section, ...]:
    """The sections of a config text (cached: a deploy looks at the same texts repeatedly).

    parkweb's own files (hash in the header intact) have one strict shape, checked when
    they were rendered, and are split directly; anything else goes through the full parser.
    """
    claimed, actual = confgen.content_hash(text)
    if claimed is None or claimed != actual or confgen.FEATURES_LOCAL_INCLUDE in text:
        return tuple(Section(s.name, tuple(s.options)) for s in confparse.parse(text).sections)
    body = text.partition("\n\n")[2]
    sections = []
    for block in body.split("\n\n"):
        header, *lines = block.strip("\n").split("\n")
        options = tuple(tuple(line.split(" => ", 1)) for line in lines)
        sections.append(Section(header[1:-1], options))
    return tuple(sections)


def unified_diff(old: dict[str, str | None], new: dict[str, str]) -> str:
    """A unified diff of each file. Sections equal on both sides are left out first, so a
    one-lot change on a server of thousands of lots costs little."""
    parts = []
    for name in sorted(new):
        before, after = old.get(name) or "", new[name]
        if before == after:
            continue
        if not before:
            changed = None
        elif name == DIALPLAN:
            changed = comeback.changed_contexts(comeback.parse(before), comeback.parse(after))
        else:
            changed = changed_sections(before, after)
        parts += difflib.unified_diff(
            _only_sections(before, changed),
            _only_sections(after, changed),
            fromfile=f"{name} (last good)",
            tofile=f"{name} (new)",
        )
    return "".join(parts)


def _only_sections(text: str, names: set[str] | None) -> list[str]:
    """The text's lines, keeping only the named sections (and what precedes the first)."""
    lines = text.splitlines(keepends=True)
    if names is None:
        return lines
    kept, keep = [], True
    for line in lines:
        if line.startswith("["):
            keep = line[1 : line.find("]")] in names
        if keep:
            kept.append(line)
    return kept


@dataclass
class Plan:
    files: dict[str, str]  # the new texts
    last_good: dict[str, str | None]  # texts Asterisk last confirmed (None: unknown)
    force: bool = False  # write and reload every file, even those equal to the last good


@dataclass
class Outcome:
    status: str  # "ok", "failed" (Asterisk refused), "rolled_back" (ran something else)
    reloaded: bool = False
    replies: list[dict] = field(default_factory=list)
    error: str = ""
    restored: bool | None = None  # after a failure: is the last good config running again?


def park_call_code(features_show: str) -> str:
    for line in features_show.splitlines():
        if line.startswith("Park Call"):
            parts = line.split()
            return parts[-1] if len(parts) > 2 else ""
    return ""


async def reload(
    ami: AmiClient, module: str, replies: list[dict], attempts: int = 8
) -> AmiResponse:
    """Reload one module, waiting out "A reload is in progress" with backoff."""
    delay = 0.1
    for attempt in range(attempts):
        started = time.perf_counter()
        response = await actions.reload_module(ami, module)
        replies.append(
            {
                "action": "Reload",
                "module": module,
                "success": response.success,
                "message": response.message,
                "seconds": round(time.perf_counter() - started, 4),
            }
        )
        if response.success or RELOAD_IN_PROGRESS not in response.message:
            return response
        if attempt < attempts - 1:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    return response


async def running_differences(
    ami: AmiClient,
    files: dict[str, str],
    replies: list[dict],
    changed_lots: set[str] | None = None,
) -> list[str]:
    """What Asterisk runs that differs from `files`; [] when it runs exactly them.

    `Parkinglots` checks every lot's presence, spaces and timeout; `parking show` checks
    the other options, for every lot or, when the caller knows which lots changed, only for
    those and for lots Asterisk runs that the config does not have (a big server answers
    `parking show` slowly).
    """
    sections = [s for s in sections_of(files[RES_PARKING]) if s.name != "general"]
    parkinglots = await actions.parkinglots(ami)
    problems = verify.parkinglots_differences(sections, parkinglots)
    if changed_lots is None:
        running = verify.parse_parking_show(await actions.command(ami, "parking show"))
        problems += verify.detail_differences(sections, running)
    else:
        wanted = {s.name for s in sections}
        extra = {lot.name for lot in parkinglots} - wanted
        running = {}
        for name in sorted((changed_lots & wanted) | extra):
            running.update(
                verify.parse_parking_show(await actions.command(ami, f"parking show {name}"))
            )
        detailed = [s for s in sections if s.name in changed_lots]
        problems += [
            p for p in verify.detail_differences(detailed, running) if not p.endswith("not running")
        ]
    if FEATURES in files:
        featuremap = next(
            (s.options for s in sections_of(files[FEATURES]) if s.name == "featuremap"), ()
        )
        wanted_code = dict(featuremap).get("parkcall", "")
        actual = park_call_code(await actions.command(ami, "features show"))
        if actual != wanted_code:
            problems.append(f"features: parkcall is {actual!r}, expected {wanted_code!r}")
    replies.append({"action": "verify", "lots": len(parkinglots), "problems": problems[:50]})
    return problems


def changed_sections(old: str | None, new: str) -> set[str] | None:
    """Names of the lots whose sections differ between two res_parking texts; None when
    the old one is unknown."""
    if old is None:
        return None
    before = {s.name: s.options for s in sections_of(old)}
    after = {s.name: s.options for s in sections_of(new)}
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


async def _load(
    ami: AmiClient,
    store: ConfigStore,
    files: dict[str, str],
    keep: dict[str, str | None],
    replies: list[dict],
    live: dict[str, str | None],
) -> list[AmiResponse]:
    """Write the files and make them live: the generated dialplan first (so that a lot's
    timeout context exists before res_parking sends calls to it), then reload the modules.
    `live` is what Asterisk is believed to run now (the dialplan is changed where it
    differs)."""
    if DIALPLAN in files:
        await load_dialplan(ami, store, live.get(DIALPLAN), files[DIALPLAN], replies)
    modules = [name for name in files if name in MODULE_OF]
    for name in modules:
        if keep.get(name) is not None:
            await store.keep_last_good(name, keep[name])
        await store.replace(name, files[name])
    return [await reload(ami, MODULE_OF[name], replies) for name in modules]


def _dialplan_change(before: str | None, text: str) -> tuple[dict, set[str]]:
    """The generated dialplan of `text`, and its contexts that differ from `before` (all
    of them, and those `before` had, when it is unknown)."""
    old, new = comeback.parse(before), comeback.parse(text)
    return new, comeback.changed_contexts(old, new) if before is not None else {*old, *new}


async def load_dialplan(
    ami: AmiClient, store: ConfigStore, before: str | None, text: str, replies: list[dict]
) -> None:
    """Put the generated dialplan into the live dialplan, changing only the contexts that
    differ from `before` (all of them when it is unknown), then into its file. The file
    only matters at the next restart or `dialplan reload`: if it cannot be written (an
    AMI delivery whose PBX lacks the empty file), that is recorded, not fatal."""
    started = time.perf_counter()
    new, contexts = _dialplan_change(before, text)
    changes = await comeback.sync(ami, new, contexts)
    reply: dict = {
        "action": "dialplan",
        "contexts": len(contexts),
        "changes": changes[:50],
        "count": len(changes),
        "seconds": round(time.perf_counter() - started, 4),
    }
    try:
        await store.replace(DIALPLAN, text)
    except (AmiActionError, OSError) as exc:
        reply["file_error"] = str(exc)
    replies.append(reply)


async def dialplan_differences(
    ami: AmiClient, before: str | None, text: str, replies: list[dict]
) -> list[str]:
    """What the live dialplan holds that differs from `text`, in the contexts that
    changed since `before` (all when unknown)."""
    new, contexts = _dialplan_change(before, text)
    problems = await comeback.differences(ami, new, contexts)
    replies.append({"action": "verify dialplan", "contexts": len(contexts), "problems": problems})
    return problems


async def apply(ami: AmiClient, store: ConfigStore, plan: Plan) -> Outcome:
    """Write the changed files, make them live (reload their modules; change the live
    dialplan), verify; on failure restore the last good files, make them live and verify
    them. A lost connection propagates (AmiConnectError, AmiTimeout): the caller retries
    the whole deploy later."""
    changed = {
        name: text
        for name, text in plan.files.items()
        if plan.force or text != plan.last_good.get(name)
    }
    outcome = Outcome(status="ok")
    if not changed:
        return outcome
    modules = any(name in MODULE_OF for name in changed)
    try:
        responses = await _load(
            ami, store, changed, plan.last_good, outcome.replies, plan.last_good
        )
        outcome.reloaded = modules
        refused = [r for r in responses if not r.success]
        if refused:
            outcome.status = "failed"
            outcome.error = "Asterisk refused the new config: " + "; ".join(
                r.message or "error" for r in refused
            )
        else:
            problems = []
            if modules:
                lots = (
                    None
                    if plan.force
                    else changed_sections(plan.last_good.get(RES_PARKING), plan.files[RES_PARKING])
                )
                problems += await running_differences(ami, plan.files, outcome.replies, lots)
            if DIALPLAN in changed:
                before = None if plan.force else plan.last_good.get(DIALPLAN)
                problems += await dialplan_differences(
                    ami, before, changed[DIALPLAN], outcome.replies
                )
            if not problems:
                return outcome
            outcome.status = "rolled_back"
            outcome.error = "Asterisk does not run what was written: " + "; ".join(problems[:10])
    except (AmiActionError, OSError) as exc:
        outcome.status = "failed"
        outcome.error = f"Deploy failed: {exc}"

    previous = {name: plan.last_good.get(name) or EMPTY[name] for name in changed}
    expected = {RES_PARKING: plan.last_good.get(RES_PARKING) or EMPTY[RES_PARKING], **previous}
    try:
        # The live dialplan may hold any part of the new one: every context that differs
        # between the two is made the last good one's again.
        restore = await _load(ami, store, previous, {}, outcome.replies, changed)
        if all(r.success for r in restore):
            problems = await running_differences(ami, expected, outcome.replies)
            if DIALPLAN in previous:
                problems += await dialplan_differences(
                    ami, changed[DIALPLAN], previous[DIALPLAN], outcome.replies
                )
        else:
            problems = ["Asterisk refused the last good config too"]
    except (AmiActionError, OSError) as exc:
        problems = [str(exc)]
    outcome.restored = not problems
    if problems:
        outcome.error += ". Restoring the last good config FAILED: " + "; ".join(problems[:10])
    return outcome
