"""hiermae's import graph: no cycles, and every import goes one way down the layers.

The graph is read with `ast` from the source files, module-level and function-level imports alike (an import
inside a function is still a dependency; only its timing differs). It covers the `hiermae` package with the
folders setup.py maps into it (`backbones/` as `hiermae.backbones`, `downstream/` as `hiermae.downstream`), the
command-line tools (`tools/*.py`) and the comparison harness (`experiments/`). The implicit import of a parent
package (`hiermae/__init__.py` runs before any `hiermae.x`) is not an edge: it is how Python loads packages, not a
dependency a module chose.
"""

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {  # module prefix -> folder; tools/ holds scripts, named tools.<file> here
    "hiermae": "hiermae",
    "hiermae.backbones": "backbones",
    "hiermae.downstream": "downstream",
    "tools": "tools",
    "experiments": "experiments",
}
IMPORTABLE_ROOTS = ("hiermae", "experiments")  # an import under these names must name a module that exists

# Lowest first. A module may import modules of its own layer or of layers below it, never above. An entry is a
# module name, or `package.*` for a package and everything in it; the longest matching entry decides.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation (leaves: import nothing of the project)", (
        "hiermae.registry", "hiermae.seeding", "hiermae.units", "hiermae.plans", "hiermae.flop_recorder",
        "hiermae.sync_counter", "hiermae.atomic_files", "hiermae.cli_options", "hiermae.dependencies",
        "hiermae.resources",
    )),
    ("sparse ops and masks", ("hiermae.sparse.*", "hiermae.masks", "hiermae.input_checks")),
    ("backbones", ("hiermae.backbones.*", "hiermae.encoders", "hiermae.equivalence")),
    # collate.py's MaskPlanner is how the pretrainer draws and plans masks itself, so it sits with the pretrainer
    ("pretrainer", ("hiermae.pretrainer", "hiermae.decoder", "hiermae.targets", "hiermae.losses", "hiermae.collate")),
    ("runtime", (
        "hiermae", "hiermae.training", "hiermae.amp", "hiermae.config_check", "hiermae.hooks", "hiermae.visualization",
        "hiermae.checkpoint", "hiermae.checkpoint_keys", "hiermae.safe_checkpoint", "hiermae.literal_config",
        "hiermae.resume", "hiermae.datasets", "hiermae.preprocess", "hiermae.sampling", "hiermae.file_list",
        "hiermae.images", "hiermae.shards", "hiermae.flops",
    )),
    ("downstream", ("hiermae.downstream.*",)),
    ("tools", ("tools.*",)),
    ("comparison harness", ("experiments.*", "tools.compare")),
)  # fmt: skip
FOUNDATION = LAYERS[0][0]


@dataclass(frozen=True)
class Import:
    """One import statement's edge: `source` imports `target` (a project module) at `where` (file:line)."""

    source: str
    target: str
    where: str


def find_modules(root: Path, sources: dict[str, str]) -> dict[str, Path]:
    """Every module name of the project and its file (`pkg/__init__.py` is the module `pkg`)."""
    modules = {}
    for prefix, folder in sources.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = [part for part in path.relative_to(root / folder).with_suffix("").parts if part != "__init__"]
            modules[".".join([prefix, *parts])] = path
    return modules


def imported_names(path: Path, module: str) -> list[tuple[str, str | None, int]]:
    """(module named, name imported from it or None, line) for every import statement anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = (module if path.name == "__init__.py" else module.rpartition(".")[0]).split(".")
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: `from . import x`, `from ..pkg import x`
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            found += [(base, alias.name, node.lineno) for alias in node.names]
    return found


def import_graph(modules: dict[str, Path], root: Path) -> tuple[list[Import], list[str]]:
    """The project's import edges, and the imports of project names that match no module (stale after a move)."""
    edges, unknown = [], []
    for source, path in modules.items():
        for base, name, line in imported_names(path, source):
            where = f"{path.relative_to(root)}:{line}"
            if name is not None and f"{base}.{name}" in modules:  # `from package import submodule`
                target = f"{base}.{name}"
            elif base in modules:
                target = base
            else:
                if base.split(".")[0] in IMPORTABLE_ROOTS:
                    unknown.append(f"{where} imports {base}, which does not exist")
                continue
            if target != source:
                edges.append(Import(source, target, where))
    return edges, unknown


def layer_of(module: str) -> int | None:
    """Index in `LAYERS` of the longest entry matching `module`, or None when no entry does."""
    best, best_length = None, -1
    for index, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            package = entry.removesuffix(".*")
            matches = module == package or (entry.endswith(".*") and module.startswith(package + "."))
            if matches and len(package) > best_length:
                best, best_length = index, len(package)
    return best


def upward_imports(edges: list[Import]) -> list[str]:
    """Edges that go up the layer order, and any project import made by a foundation module, in words."""
    problems = []
    for edge in edges:
        source, target = layer_of(edge.source), layer_of(edge.target)
        if source is None or target is None:
            continue  # test_every_module_has_a_layer names these
        if target > source or source == 0:
            problems.append(
                f"{edge.where}: {edge.source} ({LAYERS[source][0]}) imports {edge.target} ({LAYERS[target][0]})"
            )
    return problems


def cycles(edges: list[Import]) -> list[list[str]]:
    """One cycle (its first module repeated at the end) per strongly connected group of modules (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = set(stack[stack.index(node) :])
            del stack[stack.index(node) :]
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [cycle_through(min(group), group, graph) for group in groups]


def cycle_through(start: str, group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest import path from `start` back to itself inside `group` (breadth-first)."""
    parent: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(graph[node] & group):
            if successor == start:
                path = [node]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if successor not in parent:
                parent[successor] = node
                queue.append(successor)
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")


@pytest.fixture(scope="module")
def project() -> tuple[dict[str, Path], list[Import], list[str]]:
    modules = find_modules(ROOT, SOURCES)
    return modules, *import_graph(modules, ROOT)


def test_every_module_has_a_layer(project):
    modules, _, _ = project
    missing = [name for name in modules if layer_of(name) is None]
    assert not missing, f"modules in no layer (add each to LAYERS in {Path(__file__).name}): {missing}"


def test_every_project_import_names_a_module_that_exists(project):
    _, _, unknown = project
    assert not unknown, "\n".join(unknown)


def test_imports_go_down_the_layers(project):
    _, edges, _ = project
    problems = upward_imports(edges)
    order = " → ".join(name for name, _ in LAYERS)
    assert not problems, f"imports against the layer order ({order}):\n" + "\n".join(problems)


def test_no_import_cycles(project):
    _, edges, _ = project
    found = cycles(edges)
    assert not found, "import cycles:\n" + "\n".join(" → ".join(cycle) for cycle in found)


def test_the_walk_finds_function_level_and_relative_imports_cycles_and_upward_edges(tmp_path):
    """The checks above on a small made-up tree, so a walk that missed a kind of import would fail here."""
    (tmp_path / "hiermae" / "sparse").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "sparse/__init__.py": "from . import conv\n",
        "sparse/conv.py": "def count():\n    from hiermae.flops import total\n    return total\n",
        "flops.py": "from hiermae.sparse import conv\nfrom hiermae.gone import thing\n",
        "registry.py": "import hiermae.masks\n",
        "masks.py": "",
    }
    for name, text in files.items():
        (tmp_path / "hiermae" / name).write_text(text)
    edges, unknown = import_graph(find_modules(tmp_path, {"hiermae": "hiermae"}), tmp_path)
    assert {(e.source, e.target) for e in edges} == {
        ("hiermae.sparse", "hiermae.sparse.conv"),
        ("hiermae.sparse.conv", "hiermae.flops"),
        ("hiermae.flops", "hiermae.sparse.conv"),
        ("hiermae.registry", "hiermae.masks"),
    }
    assert unknown == ["hiermae/flops.py:2 imports hiermae.gone, which does not exist"]
    assert cycles(edges) == [["hiermae.flops", "hiermae.sparse.conv", "hiermae.flops"]]
    assert sorted(upward_imports(edges)) == [
        f"hiermae/registry.py:1: hiermae.registry ({FOUNDATION}) imports hiermae.masks (sparse ops and masks)",
        "hiermae/sparse/conv.py:2: hiermae.sparse.conv (sparse ops and masks) imports hiermae.flops (runtime)",
    ]
