"""The code's layers: model -> generate -> explain -> backends -> text layer -> tools and the app, never upwards.

Read from the source (every import, also inside functions; not those only for type checkers), so a new import that
goes the wrong way, or closes a cycle, fails here with the line that does it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Each module's layer (the longest matching prefix decides). A module imports only from its own layer or below.
LAYERS = {
    # leaves: settings and helpers that need nothing of the project
    "gpt2_core.config": 0, "gpt2_core.devices": 0, "gpt2_core.quantize": 0, "gpt2_core.generate.settings": 0,
    "gpt2_core.generate.detokenize": 0, "gpt2_core.remote.logprobs": 0,
    "gpt2_core.threads": 0,  # work on a thread that ends (no OpenMP pool left behind)
    "gpt2_core.cache": 0, "gpt2_core.int8_kernel": 0,  # the user's cache folder; the int8 kernel built into it
    "gpt2_core.checkpoint": 1, "gpt2_core.memory": 1, "gpt2_core.backend": 1,  # files, memory, the backend seam
    "gpt2_core.precision": 1,  # which precision a model gets
    "gpt2_core.model": 2,
    "gpt2_core.generate": 3,  # sampling, the engine, decode strategies
    "gpt2_core.explain": 4,  # scoring, distributions, attention
    "gpt2_core.local": 5, "gpt2_core.remote.client": 5,  # the two token backends (and the server's client)
    "gpt2_core.zerogpu": 5,  # the local backend on a GPU lent per call
    "gpt2_core.lm": 6,  # the text layer
    "gpt2_core.remote": 7,  # the text layer over a server
    "gpt2_core.train": 8, "gpt2_core.scale": 8, "gpt2_core.bert": 8, "gpt2_core.testing": 8,  # beside the engine
    "gpt2_core.cli": 9, "gpt2_core": 9, "gpt2_core.__main__": 9,
    "demo": 10,  # the page
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        found = LAYERS.get(".".join(parts[:n]))
        if found is not None:
            return found
    raise AssertionError(f"{module} has no layer in tests/test_layers.py: give it one")


def type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in ast.walk(node):
                if hasattr(inner, "lineno"):
                    lines.add(inner.lineno)
    return lines


def project_imports() -> dict[str, list[tuple[str, int]]]:
    """module -> the project modules it imports, with the line of each import."""
    found = {}
    for path in sorted([*ROOT.joinpath("gpt2_core").rglob("*.py"), *ROOT.joinpath("demo").rglob("*.py")]):
        tree = ast.parse(path.read_text(), filename=str(path))
        skip = type_checking_lines(tree)
        imports = []
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imports.append((node.module, node.lineno))
                imports += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]  # a submodule, if it is one
            elif isinstance(node, ast.Import):
                imports += [(a.name, node.lineno) for a in node.names]
        modules = {module_name(p) for p in [path]}
        found[modules.pop()] = [(m, line) for m, line in imports if m.split(".")[0] in ("gpt2_core", "demo")]
    return {m: [(t, line) for t, line in imports if t in found] for m, imports in found.items()}


def test_no_module_imports_from_a_layer_above_its_own():
    wrong = [f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)}) at line {line}"
             for m, imports in project_imports().items() for t, line in imports if layer(t) > layer(m)]
    assert not wrong, "\n".join(wrong)


def test_there_is_no_import_cycle():
    graph = {m: sorted({t for t, _ in imports if t != m}) for m, imports in project_imports().items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        for target in graph.get(module, []):
            if not target.startswith(module + "."):  # a package's __init__ importing its own modules is no cycle
                visit(target, path + [module])
        done.add(module)

    for module in graph:
        visit(module, [])


def test_the_engine_never_imports_bert_the_fixtures_or_the_page():
    engine_side = [m for m in project_imports() if layer(m) <= LAYERS["gpt2_core.lm"]]
    imports = project_imports()
    wrong = [f"{m} imports {t}" for m in engine_side for t, _ in imports[m]
             if t.startswith(("gpt2_core.bert", "gpt2_core.testing", "demo"))]
    assert not wrong and len(engine_side) > 20, wrong


def test_the_page_never_touches_tensors():
    """demo/ shows what gpt2_core computes; it imports no torch (the attention maps come as plain numbers)."""
    torch_users = []
    for path in sorted(ROOT.joinpath("demo").rglob("*.py")):
        tree = ast.parse(path.read_text())
        skip = type_checking_lines(tree)
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "torch" for n in names) and node.lineno not in skip:
                torch_users.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not torch_users, torch_users
