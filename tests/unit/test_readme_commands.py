"""Every shell block of README.md is a valid script, and every command in it exists with the
options it is given: `prelabel` sub-commands and their flags (against their own --help),
`make` targets, `python -m` modules. (The commands themselves need a running suite, images or a
GPU; tests/integration/test_readme.py runs README's Python blocks against the real suite.)"""
from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from functools import cache

import pytest

from tests.readme_blocks import README, code_blocks

pytestmark = pytest.mark.timeout(300)

REPO = README.parent
SHELL = ("bash", "sh", "shell", "console")
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def commands(script: str) -> list[list[str]]:
    """The script's commands as argv lists: continuation lines joined, comments and leading
    VAR=value assignments dropped."""
    out = []
    for line in script.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        while argv and _ENV.match(argv[0]):
            argv = argv[1:]
        if argv:
            out.append(argv)
    return out


@cache
def cli_help(path: tuple[str, ...]) -> str:
    done = subprocess.run([sys.executable, "-m", "prelabel.cli", *path, "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"prelabel {' '.join(path)} --help: {done.stderr[-2000:]}"
    return done.stdout


def check_prelabel(args: list[str]) -> None:
    """`prelabel` with a sub-command (nested ones too) that exists, and only flags its help lists."""
    path = [args[0]]
    help_text = cli_help(tuple(path))
    for arg in args[1:]:
        choices = {c for group in re.findall(r"\{([\w,-]+)\}", help_text) for c in group.split(",")}
        if arg.startswith("-") or arg not in choices:
            break
        path.append(arg)
        help_text = cli_help(tuple(path))
    for flag in (a.split("=", 1)[0] for a in args if a.startswith("--")):
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text), \
            f"prelabel {' '.join(path)}: README uses {flag}, which its --help does not list"


def check_command(argv: list[str]) -> None:
    name, args = argv[0], argv[1:]
    if name == "prelabel":
        check_prelabel(args)
    elif name == "make":
        makefile = (REPO / "Makefile").read_text()
        for target in args:
            assert re.search(rf"^{re.escape(target)}:", makefile, re.MULTILINE), f"make {target}: no such target"
    elif name in ("python", "python3") and args[:1] == ["-m"]:
        assert importlib.util.find_spec(args[1]) is not None, f"python -m {args[1]}: no such module"
    else:
        raise AssertionError(f"README runs {name!r}: teach tests/unit/test_readme_commands.py to check it")


SHELL_BLOCKS = [b for b in code_blocks() if b.language in SHELL]


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[f"README.md:{b.line}" for b in SHELL_BLOCKS])
def test_readme_shell_block_parses_and_names_real_commands_and_flags_when_read(block):
    done = subprocess.run(["bash", "-n"], input=block.code, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"README.md:{block.line}: {done.stderr}"
    argv_list = commands(block.code)
    assert argv_list, f"README.md:{block.line}: no command"
    for argv in argv_list:
        check_command(argv)


def test_readme_has_no_unlabelled_command_block_when_read():
    # An unlabelled block would escape both this check and the Python runs; only the
    # layout drawing has no language.
    for block in code_blocks():
        if not block.language:
            assert not re.search(r"^(prelabel|make|python) ", block.code, re.MULTILINE), f"README.md:{block.line}"


def test_readme_command_check_refuses_a_flag_or_target_that_does_not_exist_when_given_one():
    with pytest.raises(AssertionError, match="--no-such-flag"):
        check_command(["prelabel", "annotate", "photos/", "--no-such-flag"])
    with pytest.raises(AssertionError, match="--profile"):
        check_command(["prelabel", "preview", "out/", "--profile", "cpu"])  # a flag of another command
    with pytest.raises(AssertionError, match="no such target"):
        check_command(["make", "no-such-target"])
    assert commands("A=1 prelabel models pull \\\n  --profile cpu  # fetch\n") == [
        ["prelabel", "models", "pull", "--profile", "cpu"]]
