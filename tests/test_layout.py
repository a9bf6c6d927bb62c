"""The project's layout and its import rules (docs/model.md).

* The root holds what the student reads or runs: at most 12 ``.py`` files.
* Imports between the project's modules form no cycle, counting imports
  inside functions too (a lazy import is still a dependency).
* No module takes another's private (underscore) name, neither by
  ``from m import _name`` nor as ``m._name`` on a module it imported.

The imports are read from the source with ``ast``; nothing is imported.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE_FOLDERS = ("saelab", "benchmarks")


def project_files():
    """{module name: path} for every project module (tests excluded)."""
    files = {path.stem: path for path in ROOT.glob("*.py")}
    for folder in CODE_FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files[name] = path
    return files


def resolve(name, modules):
    """The project module that ``import name`` means, or None (a library)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(path, modules):
    """[(imported module, names taken from it)] for every import in the file, at any depth.

    ``from package import module`` counts as importing the module.
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name, modules)
                if target:
                    found.append((target, (), alias.asname or alias.name))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in modules:
                    found.append((submodule, (), alias.asname or alias.name))
                else:
                    target = resolve(node.module, modules)
                    if target:
                        found.append((target, (alias.name,), None))
    return found


def private_attribute_uses(path, module_aliases):
    """[(alias, attribute)] for every ``alias._name`` where alias is an imported project module."""
    uses = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            uses.append((node.value.id, node.attr))
    return uses


def dependency_graph(modules):
    graph = {}
    for name, path in modules.items():
        graph[name] = {target for target, _, _ in imports_of(path, modules) if target != name}
    return graph


def find_cycle(graph):
    """One import cycle as a list of module names, or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, stack)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [])
            if cycle:
                return cycle
    return None


MODULES = project_files()


def test_the_root_holds_at_most_12_python_files():
    root_files = sorted(path.name for path in ROOT.glob("*.py"))
    assert len(root_files) <= 12, root_files


def test_the_package_is_grouped_by_topic():
    listing = sorted(path.name for path in (ROOT / "saelab").iterdir() if not path.name.startswith((".", "__pycache")))
    assert {"checks", "data", "figures", "files", "training"} <= set(listing), listing
    assert all((ROOT / "saelab" / name / "__init__.py").exists()
               for name in listing if (ROOT / "saelab" / name).is_dir())


def test_there_is_no_import_cycle():
    assert find_cycle(dependency_graph(MODULES)) is None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_takes_another_modules_private_names(name):
    path = MODULES[name]
    imports = imports_of(path, MODULES)
    taken = [f"from {target} import {taken}" for target, names, _ in imports
             for taken in names if taken.startswith("_") and target != name]
    aliases = {alias for target, _, alias in imports if alias and target != name}
    taken += [f"{alias}.{attr}" for alias, attr in private_attribute_uses(path, aliases)]
    assert not taken, f"{path.relative_to(ROOT)} takes private names: {taken}"


def test_the_checker_finds_a_cycle_and_a_private_import(tmp_path):
    """The rules above can fail: a made-up pair of modules breaks both."""
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from a import _secret\n    import a\n    return a._other\n")
    modules = {"a": tmp_path / "a.py", "b": tmp_path / "b.py"}
    assert find_cycle(dependency_graph(modules)) in (["a", "b", "a"], ["b", "a", "b"])
    imports = imports_of(modules["b"], modules)
    assert ("a", ("_secret",), None) in imports
    assert private_attribute_uses(modules["b"], {"a"}) == [("a", "_other")]


def test_every_package_module_is_in_both_maps_in_listing_order():
    """saelab/__init__.py's table of contents and docs/model.md list every module of the
    package, in the order ``ls`` lists them (folders and files alphabetically)."""
    package = ROOT / "saelab"
    modules = sorted(path.relative_to(package).as_posix() for path in package.rglob("*.py")
                     if path.name != "__init__.py")
    toc = (package / "__init__.py").read_text()
    model_md = (ROOT / "docs" / "model.md").read_text()
    for module in modules:
        assert f"{module.rsplit('/', 1)[-1]} " in toc, f"saelab/__init__.py does not list {module}"
        assert f"[`{module}`](../saelab/{module})" in model_md, f"docs/model.md does not list {module}"
    in_model_md = [m for m in modules]
    positions = [model_md.index(f"[`{m}`]") for m in in_model_md]
    assert positions == sorted(positions), "docs/model.md: the package's rows are not in listing order"
