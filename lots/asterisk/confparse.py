"""Read config text the way Asterisk's main/config.c does, to check what we write.

Used by tests (what Asterisk would see in a generated file) and to inspect files found on a
server. It models the parts of the syntax that can change a file's meaning: comments
(`;`, `\\;`, `;-- ... --;`), section headers with `(...)` options, directives (`#include`,
`#exec`, any line starting with `#`), the first `=` (or `=>`) splitting name and value, and
lines too long for Asterisk's line buffer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LINE_LIMIT = 8192


@dataclass
class ParsedSection:
    name: str
    header_options: str | None = None  # text inside "(...)" after the name, if any
    options: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ParsedConfig:
    sections: list[ParsedSection] = field(default_factory=list)
    directives: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[tuple[str, str]]]:
        result: dict[str, list[tuple[str, str]]] = {}
        for section in self.sections:
            result.setdefault(section.name, []).extend(section.options)
        return result


def _strip_comments(line: str, depth: int) -> tuple[str, int]:
    """Remove comments from one line; `depth` counts open `;--` block comments."""
    if not depth and ";" not in line:
        return line, depth
    out: list[str] = []
    i = 0
    while i < len(line):
        if depth:
            if line.startswith("--;", i):
                depth -= 1
                i += 3
            elif line.startswith(";--", i):
                depth += 1
                i += 3
            else:
                i += 1
            continue
        char = line[i]
        if char == ";":
            if i > 0 and line[i - 1] == "\\":
                out[-1] = ";"  # an escaped semicolon is a literal one
                i += 1
                continue
            if line.startswith(";--", i):
                depth += 1
                i += 3
                continue
            break
        out.append(char)
        i += 1
    return "".join(out), depth


def parse(text: str) -> ParsedConfig:
    config = ParsedConfig()
    current: ParsedSection | None = None
    depth = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        # A character is at most 4 bytes: only long lines need the exact byte count.
        if len(raw) * 4 >= LINE_LIMIT - 1 and len(raw.encode()) >= LINE_LIMIT - 1:
            config.problems.append(f"line {number}: too long, Asterisk would misread it")
        line, depth = _strip_comments(raw, depth)
        line = line.strip()
        if not line:
            continue
        if line.startswith("["):
            end = line.find("]")
            if end < 0:
                config.problems.append(f"line {number}: section header without ']'")
                continue
            current = ParsedSection(line[1:end])
            rest = line[end + 1 :].strip()
            if rest.startswith("("):
                close = rest.find(")")
                current.header_options = rest[1:close] if close > 0 else rest[1:]
            config.sections.append(current)
        elif line.startswith("#"):
            config.directives.append(line)
        else:
            name, sep, value = line.partition("=")
            if not sep:
                config.problems.append(f"line {number}: no '=' in {line[:40]!r}")
                continue
            if value.startswith(">"):
                value = value[1:]
            if current is None:
                config.problems.append(f"line {number}: option outside any section")
                continue
            current.options.append((name.strip(), value.strip()))
    if depth:
        config.problems.append("unterminated ';--' block comment")
    return config
