"""The layers point one way: competition <- pipelines <- {tuning, submissions} <- the command line (kip.py).

Every import in every module (at the top or inside a function) is checked, so an upward or sideways import fails
here rather than in a reviewer's head.
"""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYER = {"competition": 0, "pipelines": 1, "tuning": 2, "submissions": 2, "kip": 3}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(LAYER)


def modules():
    for package in ("competition", "pipelines", "tuning", "submissions"):
        yield from ((package, path) for path in sorted((REPO / package).glob("*.py")))
    yield "kip", REPO / "kip.py"


def test_no_module_imports_a_layer_above_or_beside_its_own():
    wrong = []
    for package, path in modules():
        for other in imported_packages(path) - {package}:
            if LAYER[other] >= LAYER[package]:
                wrong.append(f"{path.relative_to(REPO)} imports {other}")
    assert wrong == []


def test_the_settings_and_search_space_load_without_tensorflow():
    import subprocess
    import sys

    code = ("import sys, tuning.space, pipelines.config, pipelines.runs, competition.registry; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_no_module_is_much_over_250_lines():
    long = [f"{path.relative_to(REPO)}: {n}" for _, path in modules()
            if (n := len(path.read_text().splitlines())) > 260]
    assert long == []
