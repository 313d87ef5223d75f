"""Import arrows in `src/hybridbatch` point down, and nothing imports itself round a circle.

The layers, lowest first (a module may import from its own layer's other folders and from any layer below,
never from a layer above):

    0  io, paths, exit_codes, hardware     (top-level modules: files, folders, exit codes, the machine)
    1  data
    2  batching / models / losses
    3  retrieval
    4  training / evaluation / integrations
    5  experiments
    6  cli

Every import counts, also those inside functions and under `if TYPE_CHECKING:` (a type-only import is still
an arrow a reader follows). Besides the order: no cycle between folders (e.g. batching -> models ->
batching) and no cycle between modules (e.g. batching/plan.py <-> batching/samplers.py). A new folder or
top-level module must be given a layer here before it can be imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "hybridbatch"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE
LAYERS = {
    "io": 0, "paths": 0, "exit_codes": 0, "hardware": 0,
    "data": 1,
    "batching": 2, "models": 2, "losses": 2,
    "retrieval": 3,
    "training": 4, "evaluation": 4, "integrations": 4,
    "experiments": 5,
    "cli": 6,
}

# Module cycles inside experiments/ found when this test was written, in files being reorganized by others
# (issue 20); this list may only shrink: a cycle fixed must be removed from it, a new one fails.
KNOWN_MODULE_CYCLES: list[list[str]] = []  # none left (grid <-> grid_baselines and the report trio were broken)

Graph = dict[str, dict[str, int]]  # module -> {imported module: first line}


def module_names(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """{dotted module name: file} of every module of the package at `root` (a package is its __init__)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _targets(node: ast.AST, module: str, is_package: bool, known: set[str], package: str) -> list[str]:
    """The modules of `package` an import statement loads (a name imported from a package that is one of its
    submodules counts as that submodule)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == package]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:  # relative: from the package holding `module`
        base = module.split(".")
        base = base[:len(base) - node.level + (1 if is_package else 0)]
        source = ".".join([*base, *([node.module] if node.module else [])])
    else:
        source = node.module or ""
    if source.split(".")[0] != package:
        return []
    out = []
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        out.append(sub if sub in known else source)
    return out


def import_graph(root: Path, package: str = PACKAGE) -> Graph:
    """Every import between the package's modules, wherever it stands in the file."""
    names = module_names(root, package)
    known = set(names)
    graph: Graph = {}
    for module, path in names.items():
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            for target in _targets(node, module, path.name == "__init__.py", known, package):
                if target != module:
                    edges.setdefault(target, node.lineno)
        graph[module] = edges
    return graph


def unit(module: str) -> str | None:
    """The folder or top-level module a module belongs to (`hybridbatch.data.parallel` -> `data`); None for
    the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def layer_problems(graph: Graph, layers: dict[str, int] = LAYERS) -> list[str]:
    """One line per import that points up the order, and per module whose folder has no layer."""
    problems = []
    for module, edges in sorted(graph.items()):
        here = unit(module)
        if here is None:
            continue
        if here not in layers:
            problems.append(f"{module}: '{here}' has no layer in tests/test_layers.py")
            continue
        for target, line in sorted(edges.items()):
            there = unit(target)
            if there is None or there not in layers:
                problems.append(f"{module}:{line} imports {target}, which has no layer")
            elif layers[there] > layers[here]:
                problems.append(f"{module}:{line} imports {target}: {here} (layer {layers[here]}) -> "
                                f"{there} (layer {layers[there]}) points up")
    return problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted: every cycle lies in
    one of them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def module_cycles(graph: Graph) -> list[list[str]]:
    return cycles({module: set(targets) for module, targets in graph.items()})


def unit_cycles(graph: Graph) -> list[list[str]]:
    units: dict[str, set[str]] = {}
    for module, targets in graph.items():
        here = unit(module)
        if here is None:
            continue
        units.setdefault(here, set()).update(
            there for there in map(unit, targets) if there is not None and there != here)
    return cycles(units)


# --------------------------------------------------------------------------------------------- the tree
def test_no_import_points_up_the_layers():
    graph = import_graph(SRC)
    assert len(graph) > 50  # the whole package was read
    assert layer_problems(graph) == []


def test_no_cycle_between_folders():
    assert unit_cycles(import_graph(SRC)) == []


def test_no_cycle_between_modules():
    assert module_cycles(import_graph(SRC)) == KNOWN_MODULE_CYCLES


# --------------------------------------------------------------------------------------------- the checker
def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / PACKAGE


def test_the_checker_finds_upward_imports_in_functions_and_type_checking_blocks(tmp_path):
    root = _write(tmp_path, {
        "__init__.py": "",
        "io.py": "",
        "data/__init__.py": "",
        "data/rows.py": "from hybridbatch.io import atomic_write\n",  # down: fine
        "data/late.py": "def f():\n    from hybridbatch.training import run\n",  # up, inside a function
        "data/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                         "    from hybridbatch.experiments.grid import Grid\n",  # up, type-only
        "models/__init__.py": "",
        "models/enc.py": "import hybridbatch.cli\n",  # up, plain import
        "training/__init__.py": "",
        "training/run.py": "from ..data import rows\n",  # down, relative
        "experiments/__init__.py": "",
        "experiments/grid.py": "",
        "cli.py": "",
        "newthing/__init__.py": "",  # a folder with no layer
    })
    problems = layer_problems(import_graph(root))
    assert [p.split(" ")[0] for p in problems] == [
        "hybridbatch.data.late:2", "hybridbatch.data.typed:3", "hybridbatch.models.enc:1",
        "hybridbatch.newthing:"]
    assert "data (layer 1) -> training (layer 4) points up" in problems[0]
    assert import_graph(root)["hybridbatch.training.run"] == {"hybridbatch.data.rows": 1}


def test_the_checker_finds_cycles_between_modules_and_folders(tmp_path):
    root = _write(tmp_path, {
        "__init__.py": "",
        "batching/__init__.py": "",
        "batching/plan.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                            "    from hybridbatch.batching.samplers import Sampler\n",
        "batching/samplers.py": "from hybridbatch.batching.plan import Plan\nimport hybridbatch.models.enc\n",
        "models/__init__.py": "",
        "models/enc.py": "def f():\n    from hybridbatch.batching import plan\n",
    })
    graph = import_graph(root)
    assert layer_problems(graph) == []  # batching and models share a layer: only the cycles are wrong
    assert module_cycles(graph) == [["hybridbatch.batching.plan", "hybridbatch.batching.samplers",
                                     "hybridbatch.models.enc"]]
    assert unit_cycles(graph) == [["batching", "models"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
