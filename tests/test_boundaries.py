"""The tree's boundaries: the core loads no edge (discord.py, aiohttp, pydantic-settings, the
settings, the Discord-facing package, the demo harness), and every import is declared."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "shardmon"

#: The core, as STYLE.md and the README name it: keys, models, store, rules, stats, journal,
#: collector, leader, alerts, the sampler, and what they stand on.
CORE = [
    "shardmon",
    "shardmon.alerts",
    "shardmon.collector",
    "shardmon.config",
    "shardmon.connection",
    "shardmon.failures",
    "shardmon.incidents",
    "shardmon.journal",
    "shardmon.judge",
    "shardmon.keys",
    "shardmon.leader",
    "shardmon.models",
    "shardmon.monitor",
    "shardmon.render",
    "shardmon.rules",
    "shardmon.sampler",
    "shardmon.sinks",
    "shardmon.states",
    "shardmon.stats",
    "shardmon.store",
    "shardmon.tasks",
]
#: What the core must not load: the edges' libraries and shardmon's own edges.
EDGES = ("discord", "aiohttp", "pydantic_settings", "cogs", "shardmon.settings",
         "shardmon.discordpy", "shardmon.demo", "shardmon.api", "shardmon.cli",
         "shardmon.web")  # fmt: skip


def _is_edge(module: str) -> bool:
    return any(module == edge or module.startswith(f"{edge}.") for edge in EDGES)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth of the file (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def _core_files() -> dict[str, Path]:
    files = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {
        name: path
        for name, path in files.items()
        if any(name == core or name.startswith(f"{core}.") for core in CORE[1:]) or name == CORE[0]
    }


@pytest.mark.parametrize("module", sorted(_core_files()))
def test_no_core_module_imports_an_edge(module: str) -> None:
    """Walks each core module's own imports, the lazy ones inside functions too (those of
    `shardmon/__init__.py` excepted: they are the lazy names it hands out on demand)."""
    path = _core_files()[module]
    imported = _imports(path)
    if module == "shardmon":
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    assert not {name for name in imported if _is_edge(name)}


def test_importing_the_core_loads_no_edge() -> None:
    """What `import` really loads, transitively: each core module in a fresh interpreter."""
    script = (
        "import importlib, json, sys\n"
        f"loaded = {{}}\nfor name in {CORE!r}:\n"
        "    before = set(sys.modules)\n"
        "    importlib.import_module(name)\n"
        "    loaded[name] = sorted(set(sys.modules) - before)\n"
        "print(json.dumps(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded: dict[str, list[str]] = json.loads(done.stdout)
    edges = {name: [m for m in modules if _is_edge(m)] for name, modules in loaded.items()}
    assert edges == {name: [] for name in CORE}


def test_import_shardmon_is_cheap_and_its_seed_names_load_on_use() -> None:
    """`python -X importtime -c "import shardmon"` shows none of the edges; the seed helpers
    still come from `shardmon` (then settings load, as they must)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import shardmon"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()]
    assert "shardmon" in imported
    assert not [name for name in imported if _is_edge(name.strip()) or name == "redis"]
    script = (
        "import shardmon, sys; shardmon.log_bot_restart; print('shardmon.settings' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "True"
    assert sorted(__import__("shardmon").__all__) == sorted(__import__("shardmon")._HOMES)


def test_every_third_party_import_is_a_declared_dependency() -> None:
    """The package imports only what pyproject.toml declares (the demo extra for fakeredis,
    the charts extra for matplotlib)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {
        spec.split("[")[0].split(">")[0].split("=")[0].strip().lower().replace("-", "_")
        for spec in [
            *project["dependencies"],
            *project["optional-dependencies"]["demo"],
            *project["optional-dependencies"]["charts"],
        ]
    }
    distribution = {"discord": "discord.py", "redis": "redis", "aiohttp": "aiohttp",
                    "dotenv": "python-dotenv"}  # fmt: skip
    stdlib = set(sys.stdlib_module_names)
    used: set[str] = set()
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "cogs").rglob("*.py")]:
        for name in _imports(path):
            top = name.split(".")[0]
            if top not in stdlib and top not in {"shardmon", "cogs"}:
                used.add(distribution.get(top, top).lower().replace("-", "_").replace(".", "_"))
    declared = {name.replace(".", "_") for name in declared}
    assert used <= declared, f"imported but not declared: {sorted(used - declared)}"
