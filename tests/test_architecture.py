"""The package's import graph follows the pipeline: read from the source with ``ast`` (nothing is
imported), so a circle, an import that runs up the pipeline or a private name taken from another
package fails here before it can hide behind a function-local import."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "ecsfm"
#: The pipeline, lowest layer first; ``sim`` and ``io`` are independent packages of one level.
LAYERS = {"_atomic": 0, "sim": 1, "io": 1, "data": 2, "fm": 3, "posterior": 4, "workflows": 5, "studies": 6,
          "cli": 7, "__main__": 8}
#: The root package holds the version, the lowest fact of all (it also re-exports ``sim``).
ROOT_LAYER = 0
#: The seed notebook's import paths, kept as thin re-exports of the layer above (DESIGN.md): the
#: only imports allowed to run up the pipeline, and nothing inside ecsfm may import through them.
SEED_SHIMS = {"ecsfm.fm.posterior", "ecsfm.fm.eval_classical"}
#: Size limits (lines): a module, and a function unless a comment in it says why it is "longer than
#: 80 lines" (splitting would make it harder to read).
MODULE_MAX, FUNCTION_MAX = 550, 80


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = (path, ast.parse(path.read_text(encoding="utf-8")))
    return out


MODULES = _modules()


def _resolve(target: str) -> str | None:
    """The module file an import names (a package import names its ``__init__``)."""
    while target and target not in MODULES:
        target = target.rsplit(".", 1)[0] if "." in target else ""
    return target or None


def _imports(name: str, path: Path, tree: ast.Module):
    """(target module, imported names) of every ``ecsfm`` import in a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "ecsfm":
                submodules = [a.name for a in node.names if f"{target}.{a.name}" in MODULES]
                for name_ in submodules:  # ``from .. import sim`` imports the module, not its parent
                    yield f"{target}.{name_}", []
                rest = [a.name for a in node.names if a.name not in submodules]
                if rest:
                    yield target, rest
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "ecsfm":
                    yield a.name, []


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[1]] if "." in module else ROOT_LAYER


GRAPH = {name: {r for t, _ in _imports(name, path, tree) if (r := _resolve(t)) and r != name}
         for name, (path, tree) in MODULES.items()}


def test_every_package_has_a_layer():
    tops = {name.split(".")[1] for name in MODULES if "." in name}
    assert tops <= set(LAYERS), f"packages without a layer: {sorted(tops - set(LAYERS))}"


def test_no_import_runs_up_the_pipeline():
    up = [f"{m} -> {t}" for m, ts in GRAPH.items() for t in ts
          if m not in SEED_SHIMS and _layer(t) > _layer(m) and m != "ecsfm"]
    assert not up, "imports that run up the pipeline:\n" + "\n".join(up)


def test_nothing_imports_through_the_seed_shims():
    through = [f"{m} -> {t}" for m, ts in GRAPH.items() for t in ts if t in SEED_SHIMS]
    assert not through, "\n".join(through)


def test_no_import_circle():
    # Tarjan's strongly connected components over module -> module edges; a package's __init__
    # re-exporting its own modules is not a circle between modules.
    graph = {m: {t for t in ts if not (m == t.rsplit(".", 1)[0] or (MODULES[m][0].name == "__init__.py"
                                                                    and t.startswith(m + ".")))}
             for m, ts in GRAPH.items()}
    index, low, stack, on, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_no_private_name_crosses_a_package():
    taken = []
    for name, (path, tree) in MODULES.items():
        mine = name.split(".")[:2]
        for target, names in _imports(name, path, tree):
            for alias in names:
                if alias.startswith("_") and not alias.startswith("__") and target.split(".")[:2] != mine:
                    taken.append(f"{name} takes {alias} from {target}")
            # a private module of another package is private too
            if any(p.startswith("_") and not p.startswith("__") for p in target.split(".")[2:]) \
                    and target.split(".")[:2] != mine:
                taken.append(f"{name} imports the private module {target}")
    assert not taken, "\n".join(taken)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_and_functions_stay_short(name):
    path, tree = MODULES[name]
    n_lines = path.read_text(encoding="utf-8").count("\n")
    assert n_lines <= MODULE_MAX, f"{name}: {n_lines} lines (split it by concept)"
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno
            source = ast.get_source_segment(path.read_text(encoding="utf-8"), node) or ""
            assert length <= FUNCTION_MAX or "longer than 80 lines" in source.lower(), \
                f"{name}.{node.name}: {length} lines, and no comment says why it is not split"


def test_the_architecture_test_sees_a_circle_and_an_upward_import():
    # The checks above must be able to fail: a planted edge from data up to posterior is both.
    assert _layer("ecsfm.posterior.infer") > _layer("ecsfm.data._core")
    assert _resolve("ecsfm.posterior.infer") == "ecsfm.posterior.infer"
    planted = {**GRAPH, "ecsfm.data._core": GRAPH["ecsfm.data._core"] | {"ecsfm.posterior.infer"}}
    reach, todo = set(), ["ecsfm.posterior.infer"]
    while todo:
        m = todo.pop()
        for t in planted.get(m, ()):
            if t not in reach:
                reach.add(t)
                todo.append(t)
    assert "ecsfm.data._core" in reach  # posterior.infer reaches data._core: with the plant, a circle
