"""The layout's rules, checked on the source: who may import whom, no cycles, sizes.

See README "Layout": kimberly/ is below every app; an app may use another app's
services, selectors, models and constants, never its apis or tasks; users/ and
audit/ sit below memory/; chat/ and agents/ reach memory only through
memory.gateway; and modules stay small enough to read.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPS = (
    "users",
    "audit",
    "memory",
    "chat",
    "agents",
    "billing",
    "privacy",
    "backups",
    "web",
)
# Apps that act for the user on their own: memory only through memory.gateway.
GATEWAY_USERS = ("chat", "agents")
PROJECT = ("kimberly", *APPS)
MAX_MODULE_LINES = 450  # the house limit is "about 400"
MAX_FUNCTION_LINES = 70  # "about 60"


def _modules() -> dict[str, Path]:
    out = {}
    for top in PROJECT:
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            if "migrations" in rel.parts:
                continue
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_test(name: str) -> bool:
    return ".tests" in name or name.endswith(".tests")


def _imports(name: str, *, top_level_only: bool) -> set[str]:
    """First-party modules `name` imports at run time (`from pkg import mod`
    counts as importing pkg.mod; imports under `if TYPE_CHECKING:` don't count)."""
    tree = ast.parse(MODULES[name].read_text())
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for n in ast.walk(block)
    }
    nodes: list[ast.AST] = list(tree.body if top_level_only else ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & MODULES.keys()
            found.update(subs)
            if len(subs) < len(node.names):
                found.add(node.module)
    return {m for m in found if m in MODULES and m != name}


def test_kimberly_imports_no_app():
    offenders = {
        (name, dep)
        for name in MODULES
        if name.split(".")[0] == "kimberly"
        for dep in _imports(name, top_level_only=False)
        if dep.split(".")[0] in APPS
    }
    assert offenders == set()


def test_no_app_imports_another_apps_apis_or_tasks():
    offenders = set()
    for name in MODULES:
        app = name.split(".")[0]
        if app not in APPS or _is_test(name):
            continue
        for dep in _imports(name, top_level_only=False):
            dep_app, *rest = dep.split(".")
            if dep_app in APPS and dep_app != app and rest[:1] in (["apis"], ["tasks"]):
                offenders.add((name, dep))
    assert offenders == set()


def test_users_and_audit_do_not_depend_on_memory():
    offenders = {
        (name, dep)
        for name in MODULES
        if name.split(".")[0] in ("users", "audit") and not _is_test(name)
        for dep in _imports(name, top_level_only=False)
        if dep.split(".")[0] == "memory"
    }
    assert offenders == set()


def test_chat_and_agents_reach_memory_only_through_the_gateway():
    offenders = {
        (name, dep)
        for name in MODULES
        if name.split(".")[0] in GATEWAY_USERS and not _is_test(name)
        for dep in _imports(name, top_level_only=False)
        if dep.split(".")[0] == "memory" and dep != "memory.gateway"
    }
    assert offenders == set()


def test_module_level_imports_have_no_cycles():
    graph = {n: _imports(n, top_level_only=True) for n in MODULES if not _is_test(n)}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_modules_and_functions_stay_small():
    big_modules, big_functions = [], []
    for name, path in MODULES.items():
        if _is_test(name):
            continue
        source = path.read_text()
        if source.count("\n") > MAX_MODULE_LINES:
            big_modules.append(name)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    big_functions.append(f"{name}.{node.name} ({length})")
    assert (big_modules, big_functions) == ([], [])


def test_the_memory_app_registers_its_warm_up():
    from kimberly import hooks
    from memory import embeddings

    assert embeddings.warm_up in hooks._warmups


def test_a_failing_warm_up_is_logged_not_raised(caplog):
    from kimberly import hooks

    def broken() -> None:
        raise RuntimeError("no model here")

    hooks.register_warmup(broken)
    try:
        hooks.run_warmups()
    finally:
        hooks._warmups.remove(broken)
    assert "no model here" in caplog.text
