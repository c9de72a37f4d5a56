"""The package's floor plan, read from the code's own imports: what installs, which way imports run, no circles.

Layers, lowest first: the core (`ember/*.py`, `ember/ops`) <- plugins, data modules, callbacks <- the
commands (`ember.cli`, `ember.bench`). A module imports from its own layer or below, never above; within
the middle layer plugins and data modules stay apart and neither imports a callback. An import inside a
function is allowed only to defer a heavy or optional third-party dependency, with a comment saying why.
"""

import ast
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
MAPPING = {"ember": "ember", "ember.plugins": "plugins", "ember.data_modules": "data_modules",
           "ember.callbacks": "callbacks", "ember.configs": "configs"}
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 50


def _modules() -> dict[str, Path]:
    """{dotted module name: file} of every module the package installs."""
    out = {}
    for name, folder in MAPPING.items():
        for file in (ROOT / folder).rglob("*.py"):
            parts = file.relative_to(ROOT / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            out[".".join((name, *parts))] = file
    return out


MODULES = _modules()


def _layer(module: str) -> str:
    for prefix in ("ember.cli", "ember.bench", "ember.plugins", "ember.data_modules", "ember.callbacks"):
        if module == prefix or module.startswith(prefix + "."):
            return prefix.split(".")[1]
    return "core"


RANK = {"core": 0, "plugins": 1, "data_modules": 1, "callbacks": 1, "cli": 2, "bench": 2}
APART = {("plugins", "callbacks"), ("plugins", "data_modules"), ("data_modules", "plugins"),
         ("data_modules", "callbacks")}


def _imports(module: str) -> list[tuple[str, ast.AST, bool]]:
    """(imported Ember module, node, inside a function) for every import of an Ember module in `module`."""
    tree = ast.parse(MODULES[module].read_text())
    out = []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((alias.name, child, in_function) for alias in child.names if alias.name in MODULES)
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "ember":
                for alias in child.names:
                    target = f"{child.module}.{alias.name}"
                    out.append((target if target in MODULES else child.module, child, in_function))
            visit(child, inner)

    visit(tree, False)
    return out


def test_every_package_folder_is_installed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {name for name, file in MODULES.items() if file.name == "__init__.py"}
    found |= {f"ember.configs.{d.name}" for d in (ROOT / "configs").iterdir() if d.is_dir() and d.name != "__pycache__"}
    assert found == listed


def test_plugin_folders_install_under_ember():
    import ember.callbacks
    import ember.data_modules
    import ember.plugins

    assert Path(ember.plugins.__file__).parent == ROOT / "plugins"
    assert Path(ember.data_modules.__file__).parent == ROOT / "data_modules"
    assert Path(ember.callbacks.__file__).parent == ROOT / "callbacks"


def test_imports_run_one_way():
    wrong = []
    for module in MODULES:
        here = _layer(module)
        for target, node, _ in _imports(module):
            there = _layer(target)
            if RANK[there] > RANK[here] or (here, there) in APART:
                wrong.append(f"{MODULES[module].relative_to(ROOT)}:{node.lineno} ({here}) imports {target} ({there})")
    assert not wrong, "imports that run up or across the layers:\n" + "\n".join(wrong)


def test_no_import_circle():
    graph = {m: {t for t, _, _ in _imports(m) if t != m} for m in MODULES}
    circles, index, low, stack, on_stack = [], {}, {}, [], set()

    def strongly_connected(v):  # Tarjan: every circle is a strongly connected set of two or more modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongly_connected(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for v in graph:
        if v not in index:
            strongly_connected(v)
    assert not circles, f"import circles: {circles}"


def test_imports_inside_functions_only_defer_a_dependency_and_say_why():
    wrong = []
    for file in MODULES.values():
        lines = file.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if not isinstance(inner, (ast.Import, ast.ImportFrom)):
                    continue
                names = [inner.module or ""] if isinstance(inner, ast.ImportFrom) else [a.name for a in inner.names]
                said = "#" in lines[inner.lineno - 1] or lines[inner.lineno - 2].strip().startswith("#")
                if any(n.split(".")[0] == "ember" for n in names) or not said:
                    wrong.append(f"{file.relative_to(ROOT)}:{inner.lineno}: {lines[inner.lineno - 1].strip()}")
    assert not wrong, "imports inside functions (Ember's own, or without a comment saying why):\n" + "\n".join(wrong)


@pytest.mark.parametrize("limit", ["file", "function"])
def test_files_and_functions_stay_short(limit):
    long = []
    for file in sorted(set(MODULES.values())):
        source = file.read_text()
        if limit == "file" and len(source.splitlines()) > MAX_FILE_LINES:
            long.append(f"{file.relative_to(ROOT)}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)) if limit == "function" else ():
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long.append(f"{file.relative_to(ROOT)}:{node.lineno} {node.name}: {size} lines")
    assert not long, f"over {MAX_FILE_LINES} lines a file or {MAX_FUNCTION_LINES} a function:\n" + "\n".join(long)
