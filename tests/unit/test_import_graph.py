"""No import cycle in src/hrwsi: a reader can follow a flow from the entry points down."""

import ast
import subprocess
import sys
from pathlib import Path

import hrwsi

PACKAGE = Path(hrwsi.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def import_graph() -> dict[str, set[str]]:
    """Every hrwsi module -> the hrwsi modules it imports, at top level or inside functions."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        tree = ast.parse(path.read_text())
        type_only = {id(n) for block in ast.walk(tree) if _is_type_checking_block(block)
                     for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue  # `if TYPE_CHECKING:` imports exist for type hints only, never at run time
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                candidates = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            targets.update(c for c in candidates if c in modules and c != name)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_services_modules_never_load_the_configuration_files_models():
    # The services (hrwsi.app and what it runs) read their configuration from the database; the configuration file's
    # models (hrwsi.configuration) load pydantic: 9 MB more of each service process's RSS and 0.15 s at its start, which
    # a constant imported from there by the catalogue source had cost every service since 2026-12-07 (found by a
    # bisection of the bench's peak RSS). The CLI too: `hrwsi up` and `hrwsi orchestrator` run the services in its
    # process, and it had imported them at its start for `hrwsi config` alone.
    modules = ["hrwsi.cli", "hrwsi.app", "hrwsi.harvester", "hrwsi.orchestrator", "hrwsi.launcher", "hrwsi.harvest.catalogue",
               "hrwsi.harvest.landing", "hrwsi.harvest.sources", "hrwsi.backends.nomad.backend", "hrwsi.backends.local"]
    script = f"import sys\nfor m in {modules!r}: __import__(m)\nprint(sorted(m for m in sys.modules if m == 'pydantic' " \
             "or m == 'hrwsi.configuration'))"
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", loaded
