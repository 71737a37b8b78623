"""The coder's static code policy: what it refuses, what it lets through."""

from __future__ import annotations

import pytest
from django.conf import settings

from agents.policy import (
    CodeInvalid,
    CodeTooLarge,
    Violation,
    check_code,
    check_coder_code,
)

MODULES = ("socket", "subprocess", "ctypes", "http.client")
CALLS = ("os.system", "os.fork", "os.exec*", "subprocess.Popen", "eval", "exec")


def check(code: str) -> list[Violation]:
    return check_code(code, deny_modules=MODULES, deny_calls=CALLS)


def details(code: str) -> set[tuple[str, str]]:
    return {(v.rule, v.detail) for v in check(code)}


def test_plain_code_has_no_violations():
    code = "import math, os.path\nfrom json import dumps\nprint(dumps(math.pi), os.path.sep)"
    assert check(code) == []


@pytest.mark.parametrize(
    ("code", "module"),
    [
        ("import socket", "socket"),
        ("import socket as s", "socket"),
        ("import ctypes.util", "ctypes.util"),
        ("from subprocess import run", "subprocess"),
        ("from http import client", "http.client"),
        ("import http.client", "http.client"),
        ("def f():\n    import socket", "socket"),
        ("__import__('socket')", "socket"),
        ("import importlib\nimportlib.import_module('ctypes')", "ctypes"),
        ("from importlib import import_module as im\nim('subprocess')", "subprocess"),
    ],
)
def test_denied_module_is_found_however_it_is_imported(code, module):
    assert ("module", module) in details(code)


def test_a_denied_module_does_not_deny_its_parent_or_a_namesake():
    assert check("import http, urllib.parse\nimport socketserver") == []


def test_violation_names_the_line():
    assert check("x = 1\n\nimport socket\n") == [Violation("module", "socket", 3)]


@pytest.mark.parametrize(
    ("code", "call"),
    [
        ("import os\nos.system('ls')", "os.system"),
        ("import os as o\no.fork()", "os.fork"),
        ("from os import system\nsystem('ls')", "os.system"),
        ("from os import system as run\nrun('ls')", "os.system"),
        ("from os import *\nsystem('ls')", "os.system"),
        ("import os\nos.execv('/bin/sh', [])", "os.execv"),
        ("import os\nf = os.execlp\nf('sh')", "os.execlp"),
        ("eval('1 + 1')", "eval"),
        ("import builtins\nbuiltins.exec('x = 1')", "exec"),
        ("run = eval", "eval"),
    ],
)
def test_denied_call_is_found_through_aliases(code, call):
    assert ("call", call) in details(code)


def test_similar_names_are_not_denied_calls():
    code = "import os\nos.getcwd()\nresult.eval()\nmy.exec = 1\nevaluate = 2\nprint(evaluate)"
    assert check(code) == []


def test_import_by_computed_name_is_a_violation():
    found = check("name = 'sock' + 'et'\n__import__(name)")
    assert [v.rule for v in found] == ["dynamic_import"]
    assert found[0].line == 2


def test_syntax_error_is_invalid_code_not_a_violation():
    with pytest.raises(CodeInvalid) as exc:
        check("def f(:\n    pass")
    assert exc.value.code == "invalid_code"
    assert exc.value.status == 400
    assert exc.value.details["line"] == 1


@pytest.mark.parametrize(
    "code", ["print(1)\x00", "print('\ud800')", "(" * 1000 + ")" * 1000]
)
def test_code_that_cannot_be_parsed_is_invalid(code):
    with pytest.raises(CodeInvalid):
        check(code)


def test_code_over_the_limit_is_too_large():
    with pytest.raises(CodeTooLarge) as exc:
        check_code("#" * 101, deny_modules=(), deny_calls=(), max_chars=100)
    assert (exc.value.code, exc.value.status) == ("code_too_large", 400)
    assert check_code("#" * 100, deny_modules=(), deny_calls=(), max_chars=100) == []


def test_the_settings_deny_the_sandbox_escapes_by_default():
    assert settings.AGENT_CODER_MAX_CODE_CHARS == 100_000
    code = (
        "import ctypes, socket, subprocess, multiprocessing, pty\n"
        "import os\nos.system('id'); os.fork(); os.execv('/bin/sh', [])\n"
        "eval('1'); exec('1')\n"
    )
    found = {(v.rule, v.detail) for v in check_coder_code(code)}
    assert {d for r, d in found if r == "module"} == {
        "ctypes",
        "socket",
        "subprocess",
        "multiprocessing",
        "pty",
    }
    assert {d for r, d in found if r == "call"} == {
        "os.system",
        "os.fork",
        "os.execv",
        "eval",
        "exec",
    }
    assert check_coder_code("import math, statistics\nprint(math.tau)") == []
