#!/usr/bin/env python3
"""Checks the Markdown documentation; standard library only. Exits 1 with one line per problem.

1. Every relative link in every Markdown file git knows (tracked, or untracked and not ignored;
   not under vendor/ or node_modules/) resolves: `[text](target)`, `![alt](target)`, reference
   definitions `[x]: target` and `<a href="target">`. A target with a scheme (http:, https:,
   mailto:, ...) is skipped; the path is taken relative to the file's folder (a bare `#anchor`
   is the file itself) and must exist; a `#fragment` into a Markdown file must be the GitHub-style
   anchor of one of its headings. Links in fenced code blocks and inline code spans are ignored.
2. Every path and method of docs/openapi.json has a heading in docs/api.md whose text holds
   `METHOD PATH` (e.g. `GET /media/jobs/{job_id}`), the path ending there or at a `?`.
3. README.md has at most 300 lines.

On success it prints one line: the files, links and routes checked and the README's length.
"""
import json
import re
import subprocess
import sys
import unicodedata
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 300
EXCLUDED_DIRS = ("vendor/", "node_modules/")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*#*[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.S)
# [text](target "title") and ![alt](target); the text may hold one level of brackets.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HREF = re.compile(r"<a\s[^>]*?\bhref\s*=\s*(?:\"([^\"]*)\"|'([^']*)')", re.I)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
HTML_ANCHOR = re.compile(r"<a\s[^>]*?\b(?:name|id)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')", re.I)


def markdown_files():
    """Tracked and untracked-but-not-ignored *.md files, relative to ROOT, in git's order."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "*.md"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    files = []
    for name in dict.fromkeys(n for n in listing.split("\0") if n):
        if any(name.startswith(d) or f"/{d}" in name for d in EXCLUDED_DIRS):
            continue
        if (ROOT / name).is_file():  # a tracked file deleted in the work tree is not checked
            files.append(name)
    return files


def prose_lines(text):
    """(line number, line) outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.split("\n"), 1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence = match.group(1)
                continue
            yield number, line
        elif match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                and not line.strip()[len(match.group(1)):].strip():
            fence = None


def strip_code_spans(line):
    return CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)


def heading_texts(text):
    """The raw text of every ATX and setext heading, in order, outside code blocks."""
    previous = None
    for _, line in prose_lines(text):
        match = HEADING.match(line)
        if match:
            yield match.group(2) or ""
            previous = None
            continue
        if previous and SETEXT.match(line) and not HEADING.match(previous):
            yield previous.strip()
            previous = None
            continue
        previous = line if line.strip() and not line.startswith(("    ", "\t")) else None


def rendered(heading):
    """The heading's text as GitHub renders it: markup gone, code spans' content kept."""
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)", r"\1", heading)  # links, images
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    parts = re.split(r"(`+)(.+?)(?<!`)\1(?!`)", text)
    out = []
    for index, part in enumerate(parts):
        kind = index % 3
        if kind == 0:  # outside code spans: drop emphasis markers
            out.append(re.sub(r"(\*+|(?<!\w)_+|_+(?!\w))", "", part))
        elif kind == 2:
            out.append(part.strip() if part.strip() else part)
    return "".join(out).strip()


def slug(heading):
    """GitHub's anchor: lowercase; keep letters, digits, spaces, hyphens, underscores; spaces → hyphens."""
    text = rendered(heading).lower()
    kept = "".join(
        c for c in text
        if c in " -_" or unicodedata.category(c)[0] in ("L", "N") or unicodedata.category(c) == "Mn"
    )
    return kept.replace(" ", "-")


def anchors_of(path, cache={}):
    if path not in cache:
        text = path.read_text(encoding="utf-8")
        seen, anchors = {}, set()
        for heading in heading_texts(text):
            base = slug(heading)
            count = seen.get(base, 0)
            seen[base] = count + 1
            anchors.add(base if count == 0 else f"{base}-{count}")
        for _, line in prose_lines(text):
            for match in HTML_ANCHOR.finditer(strip_code_spans(line)):
                anchors.add(match.group(1) or match.group(2))
        cache[path] = anchors
    return cache[path]


def links_of(text):
    """(line number, target) of every link outside code."""
    for number, line in prose_lines(text):
        line = strip_code_spans(line)
        match = REFERENCE_DEF.match(line)
        if match:
            yield number, match.group(1)
        for match in INLINE_LINK.finditer(line):
            yield number, match.group(1)
        for match in HREF.finditer(line):
            yield number, match.group(1) if match.group(1) is not None else match.group(2)


def check_links(files):
    problems, count = [], 0
    for name in files:
        source = ROOT / name
        for number, target in links_of(source.read_text(encoding="utf-8")):
            target = target.strip()
            if target.startswith("<") and target.endswith(">"):
                target = target[1:-1]
            if not target or SCHEME.match(target) or target.startswith("//"):
                continue
            count += 1
            path_part, _, fragment = target.partition("#")
            path_part = unquote(path_part.split("?", 1)[0])
            where = f"{name}:{number}: link {target!r}"
            if path_part.startswith("/"):
                resolved = ROOT / path_part.lstrip("/")
            elif path_part:
                resolved = (source.parent / path_part).resolve()
            else:
                resolved = source
            if not resolved.exists():
                problems.append(f"{where}: {resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved} does not exist")
                continue
            if fragment and resolved.is_file() and resolved.suffix.lower() in (".md", ".markdown"):
                if unquote(fragment) not in anchors_of(resolved):
                    problems.append(f"{where}: no heading in {resolved.relative_to(ROOT)} has the anchor #{fragment}")
    return problems, count


def check_routes():
    contract = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
    routes = [
        f"{method.upper()} {path}"
        for path, item in contract.get("paths", {}).items()
        for method in item
        if method in METHODS
    ]
    described = set()
    route_in_heading = re.compile(r"\b(" + "|".join(m.upper() for m in METHODS) + r")[ \t]+(/[^\s`?#]*)")
    for heading in heading_texts((ROOT / "docs" / "api.md").read_text(encoding="utf-8")):
        for match in route_in_heading.finditer(heading):
            described.add(f"{match.group(1)} {match.group(2)}")
    missing = [route for route in routes if route not in described]
    problems = [f"docs/api.md: no heading describes `{route}` (a route of docs/openapi.json)" for route in missing]
    return problems, len(routes) - len(missing)


def main():
    files = markdown_files()
    problems, links = check_links(files)
    route_problems, routes = check_routes()
    problems += route_problems
    readme_lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    if readme_lines > README_MAX_LINES:
        problems.append(f"README.md: {readme_lines} lines, more than {README_MAX_LINES}; move reference material into docs/")
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"check-docs: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"docs: {len(files)} files, {links} links, {routes} routes described; README {readme_lines} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
