"""The floor plan holds: no import cycles, input_pipeline stands alone, no two modules
share a name, no module hides a package attribute, no dead code."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("groupvit_jax", "input_pipeline", "experiments")


def _modules() -> dict[str, Path]:
    mods = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports, at any depth of its code."""
    def resolve(target):
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target or None

    edges = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for target in targets:
                resolved = resolve(target)
                # A module importing its own package's __init__ is not an edge back.
                if resolved and resolved != name and not name.startswith(resolved + "."):
                    found.add(resolved)
        edges[name] = found
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules_or_packages():
    edges = _imports(_modules())
    assert _cycles(edges) == []
    top = {}
    for a, targets in edges.items():
        for b in targets:
            top.setdefault(a.split(".")[0], set()).add(b.split(".")[0])
    assert _cycles(top) == []


def test_input_pipeline_never_imports_the_model_package():
    edges = _imports(_modules())
    leaks = {m: sorted(t for t in targets if not t.startswith("input_pipeline"))
             for m, targets in edges.items() if m.startswith("input_pipeline")}
    assert {m: t for m, t in leaks.items() if t} == {}


def test_module_names_are_unique_and_hide_no_package_attribute():
    mods = _modules()
    stems = {}
    for name, path in mods.items():
        if name.split(".")[0] != "experiments" and path.stem not in ("__init__", "__main__"):
            stems.setdefault(path.stem, []).append(name)
    assert {stem: names for stem, names in stems.items() if len(names) > 1} == {}
    import groupvit_jax
    for attribute in groupvit_jax.__all__:
        assert f"groupvit_jax.{attribute}" not in mods, attribute


def test_no_dead_code():
    """vulture finds no unused definition; the names used only from outside Python
    (flax's setup, TensorFlow's option attributes, ...) are listed in the whitelist."""
    done = subprocess.run(
        [sys.executable, "-m", "vulture", *PACKAGES, "configs", "tests",
         "tests/vulture_whitelist.py", "--min-confidence", "60"],
        cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
