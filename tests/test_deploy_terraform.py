"""deploy/terraform without terraform (it does not install here): the checks
that need no HCL parser. Every var.X used is declared, every module argument is
a variable of that module, the cloud-init template gets what it names, and the
bootstrap script reads only the environment main.tf gives it."""

from __future__ import annotations

import re
from pathlib import Path

TF = Path(__file__).resolve().parents[1] / "deploy" / "terraform"


def _declared(directory: Path) -> set[str]:
    text = "".join(p.read_text() for p in directory.glob("*.tf"))
    return set(re.findall(r'^variable "([a-z0-9_]+)"', text, re.M))


def _block(text: str, start: str) -> str:
    """The body of the block that opens at `start` (braces counted)."""
    i = text.index(start)
    depth, j = 0, text.index("{", i)
    for k in range(j, len(text)):
        depth += {"{": 1, "}": -1}.get(text[k], 0)
        if depth == 0:
            return text[j + 1 : k]
    raise AssertionError(f"unclosed block {start}")


def test_every_variable_used_is_declared_in_its_module():
    for directory in [TF, *sorted((TF / "modules").iterdir())]:
        text = "".join(p.read_text() for p in directory.glob("*.tf"))
        used = set(re.findall(r"\bvar\.([a-z0-9_]+)", text))
        assert used, directory
        assert used <= _declared(directory), (directory, used - _declared(directory))


def test_module_arguments_are_the_modules_variables():
    main = (TF / "main.tf").read_text()
    for name, source in re.findall(r'module "([a-z_]+)" \{\s+source = "([^"]+)"', main):
        body = _block(main, f'module "{name}"')
        args = set(re.findall(r"^  ([a-z_]+) +=", body, re.M)) - {"source", "count"}
        assert args == _declared(TF / source), name


def test_the_cloud_init_template_and_bootstrap_get_what_they_read():
    main = (TF / "main.tf").read_text()
    template = (TF / "cloud-init.yaml.tftpl").read_text()
    given = set(re.findall(r"^    ([a-z_0-9]+) += ", _block(main, '.tftpl", {'), re.M))
    assert set(re.findall(r"\$\{([a-z_0-9]+)\}", template)) == given
    env = set(re.findall(r"^      ([A-Z_]+) += ", _block(main, "environment ="), re.M))
    script = (TF / "bootstrap.sh").read_text()
    read = set(re.findall(r"\$\{?([A-Z][A-Z_]*)\b", script)) | set(
        re.findall(r'os\.environ\["([A-Z_]+)"\]', script)
    )
    assert read - {"KUBECONFIG"} == env
    assert (TF.parent / "k8s" / "deploy.sh").is_file()
