"""The coder's static code policy: denied modules and calls, found in the syntax tree.

Not a security boundary (the sandbox is one): Python can always reach a name by
a road a static check does not follow. It refuses the plain attempts before a
sandbox starts, so they are answered and recorded as violations.

A snippet that does not parse is not a violation: it could never run, so it is
refused as 400 `invalid_code` (CodeInvalid), as is one over the size limit
(400 `code_too_large`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from kimberly.api.errors import ApplicationError

MAX_CODE_CHARS = 100_000
_IMPORT_CALLS = ("__import__", "importlib.import_module", "importlib.__import__")


class CodeInvalid(ApplicationError):
    code = "invalid_code"
    status = 400


class CodeTooLarge(ApplicationError):
    code = "code_too_large"
    status = 400


@dataclass(frozen=True)
class Violation:
    rule: str  # "module" | "call" | "dynamic_import"
    detail: str  # the module or dotted call name, or what was imported
    line: int


def check_code(
    code: str,
    *,
    deny_modules: Iterable[str],
    deny_calls: Iterable[str],
    max_chars: int = MAX_CODE_CHARS,
) -> list[Violation]:
    """The snippet's violations, by line (empty: allowed). Raises CodeTooLarge or
    CodeInvalid for a snippet that is too long or does not parse."""
    if len(code) > max_chars:
        raise CodeTooLarge(
            f"The code is {len(code)} characters; the limit is {max_chars}.",
            details={"size_chars": len(code), "max_chars": max_chars},
        )
    tree = _parse(code)
    checker = _Checker(tuple(deny_modules), tuple(deny_calls))
    checker.bind_imports(tree)
    checker.visit_all(tree)
    return sorted(set(checker.found), key=lambda v: (v.line, v.rule, v.detail))


def check_coder_code(code: str) -> list[Violation]:
    """check_code with the operator's lists and size limit from settings."""
    from django.conf import settings

    return check_code(
        code,
        deny_modules=settings.AGENT_CODER_DENY_MODULES,
        deny_calls=settings.AGENT_CODER_DENY_CALLS,
        max_chars=settings.AGENT_CODER_MAX_CODE_CHARS,
    )


def _parse(code: str) -> ast.Module:
    try:
        code.encode("utf-8")
        return ast.parse(code, filename="<snippet>")
    except SyntaxError as exc:
        raise CodeInvalid(
            f"The code does not parse: {exc.msg} (line {exc.lineno}).",
            details={"line": exc.lineno, "offset": exc.offset, "error": exc.msg},
        ) from None
    except UnicodeEncodeError:
        raise CodeInvalid("The code is not valid UTF-8 text.") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, nesting
        raise CodeInvalid(f"The code cannot be parsed: {exc}.") from None


class _Checker:
    def __init__(self, deny_modules: tuple[str, ...], deny_calls: tuple[str, ...]):
        self.deny_modules, self.deny_calls = deny_modules, deny_calls
        self.aliases: dict[str, str] = {}  # local name -> dotted name it stands for
        self.star_from: list[str] = []  # modules imported with `from m import *`
        self.found: list[Violation] = []

    def bind_imports(self, tree: ast.Module) -> None:
        """Every name an import binds anywhere (flow-insensitive: a name bound by
        an import in one function counts in all of them)."""
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.aliases[alias.asname] = alias.name
                    else:  # `import os.path` binds os
                        top = alias.name.partition(".")[0]
                        self.aliases[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    if alias.name == "*":
                        self.star_from.append(node.module)
                    else:
                        target = f"{node.module}.{alias.name}"
                        self.aliases[alias.asname or alias.name] = target

    def visit_all(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self._module(alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                self._module(node.module, node.lineno)
                for alias in node.names:
                    # `from http import client` imports the module http.client
                    self._module(f"{node.module}.{alias.name}", node.lineno)
                    self._call(f"{node.module}.{alias.name}", node.lineno)
            elif isinstance(node, ast.Call):
                self._import_call(node)
            if isinstance(node, ast.Name | ast.Attribute) and not isinstance(
                getattr(node, "ctx", None), ast.Store | ast.Del
            ):
                for name in self._names(node):
                    self._call(name, node.lineno)

    def _names(self, node: ast.expr) -> list[str]:
        """The dotted names `node` may stand for (several through a star import)."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return []
        rest = ".".join(reversed(parts))
        if node.id in self.aliases:
            bases = [self.aliases[node.id]]
        else:
            bases = [node.id, *(f"{m}.{node.id}" for m in self.star_from)]
        names = [f"{base}.{rest}" if rest else base for base in bases]
        return [name.removeprefix("builtins.") for name in names]

    def _import_call(self, node: ast.Call) -> None:
        if not any(name in _IMPORT_CALLS for name in self._names(node.func)):
            return
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            self._module(first.value, node.lineno)
        else:
            self.found.append(
                Violation("dynamic_import", ast.unparse(node)[:200], node.lineno)
            )

    def _module(self, name: str, line: int) -> None:
        for denied in self.deny_modules:
            if name == denied or name.startswith(f"{denied}."):
                self.found.append(Violation("module", name, line))
                return

    def _call(self, name: str, line: int) -> None:
        if any(fnmatchcase(name, pattern) for pattern in self.deny_calls):
            self.found.append(Violation("call", name, line))
