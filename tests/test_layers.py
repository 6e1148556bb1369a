"""The package's layers point down: no module imports one of a higher layer, and no import cycle exists.

Every import counts, at module level or inside a function (ast, not a runtime trace).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "dermsynth"

LAYERS = (
    # the base: they import no other layer
    ("_version", "errors", "schema", "storage", "distributed", "checkpoint", "augment", "figures", "tables",
     "model_card"),
    ("data",),
    ("models",),
    ("config",),
    ("training",),
    ("generate",),
    ("metrics", "evaluation"),
    ("study",),  # the pipeline, its config, its folder's layout and the report
    ("api",),
    ("cli", "__main__", "__init__"),  # the package root re-exports the public API
)
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _module(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


def _imports() -> dict[str, set[str]]:
    """Each dermsynth module -> the dermsynth modules it imports: ``from dermsynth.data import folder`` is an
    edge to dermsynth.data.folder, ``from dermsynth.data import CLASSES`` one to the package dermsynth.data
    (whose __init__ runs first: a cycle through it fails at import time)."""
    modules = {_module(path) for path in PACKAGE.rglob("*.py")}
    out: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found = out.setdefault(_module(path), set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dermsynth"):
                for alias in node.names:  # a module imported from a package, or a name from a module
                    name = f"{node.module}.{alias.name}"
                    found.add(name if name in modules else node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("dermsynth"))
    return out


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_top_level_module_has_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
            if (p.suffix == ".py" or (p / "__init__.py").is_file())}
    assert tops == set(RANK), f"give each module a layer: {sorted(tops ^ set(RANK))}"


def test_no_module_imports_a_higher_layer():
    upward = [f"{module} imports {target}" for module, targets in _imports().items() for target in targets
              if RANK[_layer(target)] > RANK[_layer(module)]]
    assert not upward, "\n".join(sorted(upward))


def test_no_import_cycle():
    imports = _imports()
    graph = {m: {t for t in targets if t in imports and t != m} for m, targets in imports.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_lines_fit_120_columns():
    """No line of code, tests or benchmarks is wider than 120 columns (the width the code is written to)."""
    root = Path(__file__).resolve().parents[1]
    long = [f"{path.relative_to(root)}:{n}" for folder in ("src", "tests", "benchmarks")
            for path in sorted((root / folder).rglob("*.py"))
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if len(line) > 120]
    assert not long, long


def test_the_study_names_its_folder_s_paths_in_one_place():
    """The pipeline and the report read every study-folder path from study/layout.py's StudyLayout, which takes
    the file names inside run and result folders from the modules that write them: no file name is typed twice."""
    import re

    named = re.compile(r'"[\w./-]+\.(json|png|pt|html|md|csv|yaml|started)"')
    for name in ("pipeline.py", "report.py"):
        text = (PACKAGE / "study" / name).read_text(encoding="utf-8")
        assert not named.findall(text), f"study/{name} types a file name; name it in study/layout.py"
    layout = (PACKAGE / "study" / "layout.py").read_text(encoding="utf-8")
    for written_elsewhere in ("generator.pt", "classifier.pt", "run.json", "split.json", "table3.json",
                              "evaluation.json", "utility.json", "grid.png"):
        assert f'"{written_elsewhere}"' not in layout, written_elsewhere
