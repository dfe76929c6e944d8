"""The structure check: ``python -m local.layout`` lists what each module imports and fails
when an import crosses a layer the wrong way.

Layers of the ``punk_records`` package (the Lambda layer):

- **domain**: the envelope, redaction, settings, errors, tokens, cursors, the ports (Protocols
  and the values they exchange), the use cases (ingest, consumer, health, auth, query) and
  observability. Imports only the domain.
- **adapters**: Kafka (``producer``), PostgreSQL (``store``, ``read_store``, ``migrations``),
  Secrets Manager (``aws_secrets``). Import the domain, never the HTTP edge or the wiring.
- **http**: ``http_api`` and ``http_query`` (the read routes), the only modules that know HTTP
  or import Powertools' event handler. Import the domain and each other.
- **wiring**: ``bootstrap`` and the package's ``__init__``, which may import anything.

Outside the package, ``local/`` and the functions may import ``punk_records``; the package never
imports them. Imports are read from the source (``ast``), so nothing is executed.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = REPO_ROOT / "layers" / "punk_records" / "python" / "punk_records"

DOMAIN = "domain"
ADAPTER = "adapter"
HTTP = "http"
WIRING = "wiring"

LAYERS: dict[str, str] = {
    "acceptance": DOMAIN,
    "auth": DOMAIN,
    "breaker": DOMAIN,
    "config": DOMAIN,
    "consumer": DOMAIN,
    "envelope": DOMAIN,
    "errors": DOMAIN,
    "health": DOMAIN,
    "ingest": DOMAIN,
    "observability": DOMAIN,
    "ports": DOMAIN,
    "redaction": DOMAIN,
    "redaction_rules": DOMAIN,
    "tokens": DOMAIN,
    "cursor": DOMAIN,
    "query": DOMAIN,
    "memory": DOMAIN,
    "memory_query": DOMAIN,
    "aws_secrets": ADAPTER,
    "kafka_ca": ADAPTER,
    "migrations": ADAPTER,
    "producer": ADAPTER,
    "store": ADAPTER,
    "read_store": ADAPTER,
    "memory_store": ADAPTER,
    "replay": ADAPTER,
    "redrive": ADAPTER,
    "admin": ADAPTER,
    "http_api": HTTP,
    "http_query": HTTP,
    "http_memory": HTTP,
    "bootstrap": WIRING,
    "__init__": WIRING,
}
# Which layers each layer may import from the package.
ALLOWED: dict[str, frozenset[str]] = {
    DOMAIN: frozenset({DOMAIN}),
    ADAPTER: frozenset({DOMAIN, ADAPTER}),
    HTTP: frozenset({DOMAIN, HTTP}),
    WIRING: frozenset({DOMAIN, ADAPTER, HTTP, WIRING}),
}
# Third-party modules only one layer may import.
RESERVED = {"aws_lambda_powertools.event_handler": HTTP}
# Never imported by the package: the local tools, the functions, the tests.
OUTSIDE = ("local", "functions", "tests", "bench")


@dataclass(frozen=True, slots=True)
class Module:
    """One module of the package and what it imports."""

    name: str
    layer: str
    path: Path
    imports: tuple[str, ...]


def _imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, at any depth (lazy imports in functions count too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "punk_records":  # from punk_records import store
                yield from (f"punk_records.{alias.name}" for alias in node.names)
            else:
                yield node.module


def modules(package_dir: Path = PACKAGE_DIR) -> list[Module]:
    """The package's modules with their layers; a module no layer claims is ``unassigned``."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir).with_suffix("")
        top = relative.parts[0]
        name = "__init__" if relative.parts == ("__init__",) else top
        found.append(
            Module(
                name=".".join(relative.parts),
                layer=LAYERS.get(name, "unassigned"),
                path=path,
                imports=tuple(sorted(set(_imports(path)))),
            )
        )
    return found


def _package_module(imported: str) -> str | None:
    """``store`` for ``punk_records.store.x``; None outside the package."""
    parts = imported.split(".")
    if parts[0] != "punk_records":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def violations(found: Sequence[Module]) -> list[str]:
    """Every import that crosses a layer the wrong way, as readable lines."""
    problems = []
    for module in found:
        if module.layer == "unassigned":
            problems.append(f"{module.name}: no layer; add it to local/layout.py LAYERS")
            continue
        for imported in module.imports:
            target = _package_module(imported)
            if target is not None:
                layer = LAYERS.get(target, "unassigned")
                if layer not in ALLOWED[module.layer]:
                    problems.append(f"{module.name} ({module.layer}) imports {imported} ({layer})")
                continue
            if imported.split(".")[0] in OUTSIDE:
                problems.append(f"{module.name} imports {imported}, which is not in the layer")
            for reserved, owner in RESERVED.items():
                if (imported + ".").startswith(reserved + ".") and module.layer != owner:
                    problems.append(
                        f"{module.name} ({module.layer}) imports {imported}; only the {owner} "
                        "layer may"
                    )
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Print each module's layer and imports (``--quiet``: only problems); 1 on a violation."""
    parser = argparse.ArgumentParser(prog="python -m local.layout", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="print only violations")
    args = parser.parse_args(argv)
    found = modules()
    if not args.quiet:
        for module in found:
            ours = [i for i in module.imports if _package_module(i) is not None]
            print(f"{module.name:<24} {module.layer:<8} {', '.join(ours) or '-'}")
    problems = violations(found)
    for problem in problems:
        print(f"layout violation: {problem}", file=sys.stderr)
    if not problems:
        print(f"layout ok: {len(found)} modules, no import against the layers", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
