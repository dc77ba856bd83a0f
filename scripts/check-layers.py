#!/usr/bin/env python3
"""Checks the layering of functions/core/src (docs/design.md, "Code layout"): every reference to
another module of the crate (`crate::…`, `super::…`) must point to a layer the referring layer may
import, and the modules must not import each other in a loop. Test modules are left out.
Prints each offending reference or loop and exits 1; prints a one-line summary and exits 0."""

import re
import sys
from pathlib import Path

SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "functions" / "core" / "src"

# Which layers each layer may reference, besides itself.
ALLOWED = {
    "domain": set(),
    "ports": {"domain"},
    "services": {"domain", "ports"},
    "adapters": {"domain", "ports"},
    "entrypoints": {"domain", "ports", "services"},
    "runtime": {"domain", "ports", "services", "adapters", "entrypoints"},
}

PATH = re.compile(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super)((?:::[a-z_][a-z0-9_]*)*)::\{([^}]*)\}", re.S)


def module_of(file: Path) -> tuple:
    parts = list(file.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts.pop()
    return tuple(parts)


def without_tests(text: str) -> str:
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def references(module: tuple, is_mod_file: bool, text: str):
    """The module paths a file's code names, resolved to absolute module paths."""
    here = list(module) if is_mod_file else list(module[:-1])
    found = []
    for root, rest in PATH.findall(text):
        found.append((root, rest))
    for root, prefix, group in USE_GROUP.findall(text):
        for item in re.split(r"[,\s]+", group):
            item = item.split("::")[0].strip()
            if re.fullmatch(r"[a-z_][a-z0-9_]*", item or ""):
                found.append((root, f"{prefix}::{item}"))
    for root, rest in found:
        names = [n for n in rest.split("::") if n]
        base = [] if root == "crate" else here[:]
        while names and names[0] == "super":
            names.pop(0)
            base = base[:-1]
        yield tuple(base + names)


def main() -> int:
    files = sorted(SRC.rglob("*.rs"))
    modules = {module_of(f): f for f in files}
    edges = {m: set() for m in modules}
    problems = []
    for module, file in modules.items():
        text = without_tests(file.read_text())
        for target in references(module, file.name in ("mod.rs", "lib.rs"), text):
            # The longest prefix that is a module of ours (the rest names an item in it).
            while target and target not in modules:
                target = target[:-1]
            if not target or target == module or module[:len(target)] == target:
                continue
            edges[module].add(target)
            layer, other = module[0] if module else "", target[0]
            if layer and layer != other and other not in ALLOWED.get(layer, set()):
                problems.append(f"{'/'.join(module)} imports {'/'.join(target)}: {layer} may not reach {other}")

    # Loops: a depth-first search that reports each back edge's cycle once.
    state, stack, cycles = {}, [], set()

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in edges[node]:
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):]
                cycles.add(" → ".join("/".join(m) for m in cycle + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in edges:
        if node not in state:
            visit(node)
    problems.extend(f"import loop: {c}" for c in sorted(cycles))

    for problem in problems:
        print(problem)
    if problems:
        return 1
    count = sum(len(e) for e in edges.values())
    print(f"layers ok: {len(modules)} modules, {count} imports, no loop, no arrow out of its layer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
