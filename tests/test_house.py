"""House rules checked on the source text alone: public functions and methods carry full type hints.

Pure AST (no package module is imported), so it is fast and runs before anything heavy. A function counts as fully
annotated when its return and every parameter (except a method's self/cls) are annotated; public means its name does not
start with `_` (nested functions included). `python tests/test_house.py` prints the coverage of the whole package.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "arastory"

# The whole package is fully annotated: every part of it is checked (a module or package added later is too).
FULLY_ANNOTATED = ["."]


def _is_staticmethod(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in func.decorator_list)


def _missing(func: ast.FunctionDef | ast.AsyncFunctionDef, is_method: bool) -> list[str]:
    """Names of the parameters (and `return`) of one function that lack an annotation."""
    args = func.args
    positional = args.posonlyargs + args.args
    if is_method and positional and not _is_staticmethod(func):
        positional = positional[1:]  # self or cls
    params = positional + args.kwonlyargs + [a for a in (args.vararg, args.kwarg) if a is not None]
    missing = [p.arg for p in params if p.annotation is None]
    return missing + (["return"] if func.returns is None else [])


def public_functions(source: str) -> list[tuple[int, str, list[str]]]:
    """(line, qualified name, missing annotations) of every public function and method in a module's source."""
    found: list[tuple[int, str, list[str]]] = []

    def visit(node: ast.AST, prefix: str, in_class: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                if not child.name.startswith("_"):
                    found.append((child.lineno, prefix + child.name, _missing(child, in_class)))
                visit(child, f"{prefix}{child.name}.", False)
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.", True)
            else:
                visit(child, prefix, in_class)

    visit(ast.parse(source), "", False)
    return found


def _files(entry: str) -> list[Path]:
    path = PACKAGE / entry
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


def unannotated(entries: list[str]) -> list[str]:
    """`file:line name (missing: ...)` for each public function under the given entries that lacks an annotation."""
    problems = []
    for entry in entries:
        for file in _files(entry):
            for line, name, missing in public_functions(file.read_text(encoding="utf-8")):
                if missing:
                    rel = file.relative_to(PACKAGE.parent)
                    problems.append(f"{rel}:{line} {name} (missing: {', '.join(missing)})")
    return problems


def test_fully_annotated_parts_stay_annotated() -> None:
    for entry in FULLY_ANNOTATED:
        assert (PACKAGE / entry).exists(), f"allowlisted path arastory/{entry} does not exist"
    problems = unannotated(FULLY_ANNOTATED)
    assert not problems, "public functions without full type hints:\n" + "\n".join(problems)


def _imports_for_type_checking_only(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for node in tree.body
    )


def test_type_checking_imports_come_with_postponed_annotations() -> None:
    """Names imported under `if TYPE_CHECKING:` do not exist at run time: annotations that use them must not be
    evaluated on import (`from __future__ import annotations`), or importing the module is a NameError."""
    missing = []
    for file in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        postponed = any(
            isinstance(node, ast.ImportFrom)
            and node.module == "__future__"
            and "annotations" in {a.name for a in node.names}
            for node in tree.body
        )
        if _imports_for_type_checking_only(tree) and not postponed:
            missing.append(str(file.relative_to(PACKAGE.parent)))
    assert not missing, "if TYPE_CHECKING: without `from __future__ import annotations` in: " + ", ".join(missing)


def test_checker_finds_each_missing_annotation() -> None:
    source = (
        "def ok(a: int, *args: str, b: int = 1, **kw: float) -> None: ...\n"
        "def no_return(a: int): ...\n"
        "def _private(a): ...\n"
        "class C:\n"
        "    def method(self, x) -> int: ...\n"
        "    @staticmethod\n"
        "    def static(y: int, *rest) -> int: ...\n"
        "    def outer(self) -> None:\n"
        "        def inner(z: int): ...\n"
    )
    missing = {name: gaps for _, name, gaps in public_functions(source)}
    assert missing == {
        "ok": [],
        "no_return": ["return"],
        "C.method": ["x"],
        "C.static": ["rest"],
        "C.outer": [],
        "C.outer.inner": ["return"],
    }


def coverage() -> None:
    """Print, per top-level part of the package and in total, how many public functions have a return / full hints."""
    rows: dict[str, list[int]] = {}
    for file in sorted(PACKAGE.rglob("*.py")):
        rel = file.relative_to(PACKAGE)
        part = rel.parts[0] if len(rel.parts) > 1 else "(top-level modules)"
        for _, _, missing in public_functions(file.read_text(encoding="utf-8")):
            counts = rows.setdefault(part, [0, 0, 0])
            counts[0] += 1
            counts[1] += "return" not in missing
            counts[2] += not missing
    total = [sum(c[i] for c in rows.values()) for i in range(3)]
    print(f"{'part':22} {'public':>6} {'return':>7} {'full':>7}")
    for part, (n, ret, full) in [*sorted(rows.items()), ("TOTAL", total)]:
        print(f"{part:22} {n:6d} {ret / n:7.1%} {full / n:7.1%}  ({full}/{n} fully annotated)")


if __name__ == "__main__":
    coverage()
    sys.exit(0)
