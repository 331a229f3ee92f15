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

# Lowest first: each library layer is one subpackage. A module may import modules of its own layer or of layers below
# it, never above. An entry is a module name, or `package.*` for a package and everything in it; the longest
# matching entry decides.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("utils (foundation leaves: import nothing of the project)", ("hiermae.utils.*",)),
    ("masking", ("hiermae.masking.*",)),
    ("sparse", ("hiermae.sparse.*",)),
    ("backbones", ("hiermae.backbones.*",)),
    ("data", ("hiermae.data.*",)),
    ("model", ("hiermae.model.*",)),
    ("checkpoints", ("hiermae.checkpoints.*",)),
    ("engine", ("hiermae.engine.*",)),
    ("public API", ("hiermae",)),
    ("downstream", ("hiermae.downstream.*",)),
    ("tools", ("tools.*",)),
    ("comparison harness", ("experiments.*", "tools.compare")),
)
# Layers reached only through their package's `__init__`: another layer writes `from hiermae.data import X`, never
# `from hiermae.data.datasets import X`, and the `__init__` exports exactly what other layers use. downstream/ is
# the exception: each of its modules is an entry point with optional dependencies of its own (mmdet, mmseg,
# pycocotools), so its `__init__` imports nothing and the tools name the module they run.
INTERFACE_PACKAGES = (
    "hiermae.utils", "hiermae.masking", "hiermae.sparse", "hiermae.backbones", "hiermae.data", "hiermae.model",
    "hiermae.checkpoints", "hiermae.engine",
)
MAX_TOP_LEVEL_MODULES = 8  # modules directly in hiermae/
MAX_PACKAGE_MODULES = 12  # modules in one subpackage, its __init__ not counted
FOUNDATION = LAYERS[0][0]


@dataclass(frozen=True)
class Import:
    """One import statement's edge: `source` imports `target` (a project module) at `where` (file:line).

    `name` is the name taken from `target` by `from target import name` (None for `import target` and for
    `from package import submodule`).
    """

    source: str
    target: str
    where: str
    name: str | None = None


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
            taken = None
            if name is not None and f"{base}.{name}" in modules:  # `from package import submodule`
                target = f"{base}.{name}"
            elif base in modules:
                target, taken = base, name
            else:
                if base.split(".")[0] in IMPORTABLE_ROOTS:
                    unknown.append(f"{where} imports {base}, which does not exist")
                continue
            if target != source:
                edges.append(Import(source, target, where, taken))
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
        gathers_own_module = edge.source in INTERFACE_PACKAGES and edge.target.startswith(edge.source + ".")
        if target > source or (source == 0 and not gathers_own_module):
            problems.append(
                f"{edge.where}: {edge.source} ({LAYERS[source][0]}) imports {edge.target} ({LAYERS[target][0]})"
            )
    return problems


def interface_of(module: str) -> str | None:
    """The interface package `module` belongs to (itself included), or None."""
    matches = (package for package in INTERFACE_PACKAGES if module == package or module.startswith(package + "."))
    return next(matches, None)


def interface_bypasses(edges: list[Import]) -> list[str]:
    """Imports from another layer that reach past an interface package's `__init__` into one of its modules."""
    problems = []
    for edge in edges:
        package = interface_of(edge.target)
        if package and edge.target != package and layer_of(edge.source) != layer_of(edge.target):
            problems.append(f"{edge.where}: {edge.source} imports {edge.target}; import it from {package}")
    return problems


def exported_names(init: Path) -> set[str]:
    """The names in a package `__init__`'s `__all__` (read with ast; empty when it has none)."""
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return {element.value for element in node.value.elts}
    return set()


def interface_mismatches(modules: dict[str, Path], edges: list[Import]) -> list[str]:
    """For each interface package: names in `__all__` no other layer imports, and names imported but not listed."""
    problems = []
    for package in INTERFACE_PACKAGES:
        used = {
            edge.name for edge in edges
            if edge.target == package and edge.name and layer_of(edge.source) != layer_of(package)
        }
        exported = exported_names(modules[package])
        if exported - used:
            problems.append(f"{package}.__all__ lists names no other layer imports: {sorted(exported - used)}")
        if used - exported:
            problems.append(f"{package}: other layers import names missing from __all__: {sorted(used - exported)}")
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


def test_other_layers_import_a_package_through_its_init(project):
    _, edges, _ = project
    problems = interface_bypasses(edges)
    assert not problems, "imports past a layer's interface:\n" + "\n".join(problems)


def test_each_init_exports_exactly_what_other_layers_use(project):
    modules, edges, _ = project
    problems = interface_mismatches(modules, edges)
    assert not problems, "\n".join(problems)


def test_the_tree_is_small_enough_to_read():
    """`ls hiermae/` shows the layers: few modules beside the subpackages, none of them a dumping ground."""
    top_level = sorted(path.name for path in (ROOT / "hiermae").glob("*.py"))
    assert len(top_level) <= MAX_TOP_LEVEL_MODULES, top_level
    for package in INTERFACE_PACKAGES:
        folder = find_modules(ROOT, SOURCES)[package].parent
        members = sorted(path.name for path in folder.glob("*.py") if path.name != "__init__.py")
        assert len(members) <= MAX_PACKAGE_MODULES, f"{package}: {len(members)} modules {members}"
        assert ast.get_docstring(ast.parse((folder / "__init__.py").read_text())), f"{package} has no docstring"


def test_the_walk_finds_function_level_and_relative_imports_cycles_and_upward_edges(tmp_path):
    """The checks above on a small made-up tree, so a walk that missed a kind of import would fail here."""
    files = {
        "__init__.py": "",
        "sparse/__init__.py": "from . import conv\n",
        "sparse/conv.py": "def count():\n    from hiermae.model.flops import total\n    return total\n",
        "model/__init__.py": "",
        "model/flops.py": "from hiermae.sparse import conv\nfrom hiermae.gone import thing\n",
        "utils/__init__.py": "",
        "utils/registry.py": "import hiermae.masking.masks\n",
        "masking/__init__.py": "from hiermae.masking.masks import MaskPyramid\n__all__ = ['MaskPyramid']\n",
        "masking/masks.py": "",
    }
    for name, text in files.items():
        (tmp_path / "hiermae" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "hiermae" / name).write_text(text)
    modules = find_modules(tmp_path, {"hiermae": "hiermae"})
    edges, unknown = import_graph(modules, tmp_path)
    assert {(e.source, e.target) for e in edges} == {
        ("hiermae.sparse", "hiermae.sparse.conv"),
        ("hiermae.sparse.conv", "hiermae.model.flops"),
        ("hiermae.model.flops", "hiermae.sparse.conv"),
        ("hiermae.utils.registry", "hiermae.masking.masks"),
        ("hiermae.masking", "hiermae.masking.masks"),
    }
    assert unknown == ["hiermae/model/flops.py:2 imports hiermae.gone, which does not exist"]
    assert cycles(edges) == [["hiermae.model.flops", "hiermae.sparse.conv", "hiermae.model.flops"]]
    assert sorted(upward_imports(edges)) == [
        "hiermae/sparse/conv.py:2: hiermae.sparse.conv (sparse) imports hiermae.model.flops (model)",
        f"hiermae/utils/registry.py:1: hiermae.utils.registry ({FOUNDATION}) imports hiermae.masking.masks (masking)",
    ]
    assert sorted(interface_bypasses(edges)) == [
        "hiermae/model/flops.py:1: hiermae.model.flops imports hiermae.sparse.conv; import it from hiermae.sparse",
        "hiermae/sparse/conv.py:2: hiermae.sparse.conv imports hiermae.model.flops; import it from hiermae.model",
        "hiermae/utils/registry.py:1: hiermae.utils.registry imports hiermae.masking.masks; "
        "import it from hiermae.masking",
    ]
    assert exported_names(modules["hiermae.masking"]) == {"MaskPyramid"}
