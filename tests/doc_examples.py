"""The fenced code examples of Markdown pages: found with their markers, and run.

A block is a fenced ``python`` block or a shell one (``bash``, ``sh``, ``shell``;
``console``, whose commands are its ``$ `` lines). An HTML comment right before a
block marks it: ``<!-- skip: reason -->`` skips it with that reason; ``<!-- setup: code
-->`` runs ``code``, in the block's language, first (not shown on the page).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from contextlib import chdir
from dataclasses import dataclass
from pathlib import Path

import pytest

from .in_process import run_in_process

LANGUAGES = {"python": "python", "bash": "shell", "sh": "shell", "shell": "shell", "console": "shell"}
FENCE = re.compile(r"^```(" + "|".join(LANGUAGES) + r")[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
MARKER = re.compile(r"<!--\s*(skip|setup):\s*((?:(?!-->).)*?)\s*-->\s*\Z", re.S)
IMPORT = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_][\w]*)", re.M)
ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
CONTROL = {"&&", "||", "|", "|&", ";", ";;", "&", "(", ")"}
BEFORE_COMMAND = {"if", "then", "else", "elif", "do", "while", "until", "!", "time", "{", "}", "done", "fi", "esac"}
PROMPT = re.compile(r"^\$ ?", re.M)
SHELL_TIMEOUT = 300  # seconds a shell block may run
TAIL = 4000  # characters of a failed block's output in the failure message
SHELL_SYNTAX = set("|&;<>$`\\(){}*?~")  # beyond plain words: the block needs bash


@dataclass(frozen=True)
class Block:
    """One fenced block: its page, the line of its opening fence, its language
    (``"python"`` or ``"shell"``), its code, and the marker before it (``"skip"``,
    ``"setup"`` or None) with the marker's argument."""

    page: Path
    line: int
    language: str
    code: str
    marker: str | None = None
    argument: str | None = None


def blocks(page: Path) -> list[Block]:
    """The blocks of ``page``, in order.

    Parameters
    ----------
    page : Path

    Returns
    -------
    list of Block
    """
    text = page.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        before = MARKER.search(text[: m.start()])
        kind, arg = (before.group(1), before.group(2)) if before else (None, None)
        code = _console_commands(m.group(2)) if m.group(1) == "console" else m.group(2)
        out.append(Block(page, text.count("\n", 0, m.start()) + 1, LANGUAGES[m.group(1)], code, kind, arg))
    return out


def _console_commands(text: str) -> str:
    """The commands of a ``console`` block: its ``$ `` lines (and the lines a trailing
    backslash continues them on), the output lines left blank so that line numbers
    stay those of the page."""
    out, continued = [], False
    for line in text.splitlines():
        if continued or PROMPT.match(line):
            command = line if continued else PROMPT.sub("", line, count=1)
            out.append(command)
            continued = command.endswith("\\")
        else:
            out.append("")
    return "\n".join(out) + "\n"


def missing_module(code: str) -> str | None:
    """The first module ``code`` imports that is not installed, or None."""
    for name in IMPORT.findall(code):
        if importlib.util.find_spec(name) is None:
            return name
    return None


@functools.cache
def _shell_words() -> frozenset:
    """Bash's builtins and keywords: commands that need nothing on the PATH."""
    done = subprocess.run(["bash", "-c", "compgen -b; compgen -k"], capture_output=True, text=True, check=True)
    return frozenset(done.stdout.split())


def commands(code: str) -> list[str]:
    """The names of the commands a shell block runs: the first word of each simple
    command (after variable assignments), not counting the variables of ``for`` and
    ``case``, nor substitutions.

    Parameters
    ----------
    code : str

    Returns
    -------
    list of str
    """
    # A ";" opens every line, so that a comment, which shlex reads up to and including
    # the newline, still ends the command before it.
    lexer = shlex.shlex(code.replace("\\\n", " ").replace("\n", "\n;"), posix=True, punctuation_chars=True)
    names, expect, skip_to_end = [], True, False
    for token in lexer:
        if token in CONTROL:
            expect, skip_to_end = True, skip_to_end and token not in (";", "&&", "||")
        elif skip_to_end or not expect or ASSIGNMENT.match(token) or token in BEFORE_COMMAND:
            continue
        elif token in ("for", "case", "select"):
            skip_to_end = True
        else:
            if token not in _shell_words():
                names.append(token)
            expect = False
    return names


def missing_command(code: str, path: str) -> str | None:
    """The first command of ``code`` found neither among bash's builtins nor on
    ``path`` (a PATH string), or None; names with a ``/`` are files the block may
    make, and are not looked for."""
    for name in commands(code):
        if "/" not in name and not name.startswith("$") and shutil.which(name, path=path) is None:
            return name
    return None


def skip_reason(block: Block, path: str) -> str | None:
    """Why ``block`` cannot run here (its skip marker, a module not installed, a
    command not on ``path``), or None."""
    if block.marker == "skip":
        return block.argument
    if block.language == "python":
        missing = missing_module(block.code)
        return f"needs {missing}, not installed" if missing else None
    missing = missing_command(block.code, path)
    return f"needs the command {missing}, not on the PATH" if missing else None


def page_name(page: Path, root: Path) -> str:
    """``page`` relative to ``root`` when inside it."""
    return str(page.relative_to(root) if page.is_relative_to(root) else page)


def where(block: Block, root: Path) -> str:
    """``page:line`` of ``block``'s opening fence."""
    return f"{page_name(block.page, root)}:{block.line}"


def run_python(block: Block, namespace: dict, root: Path) -> None:
    """Execute ``block`` (after its setup code) in ``namespace``."""
    if block.marker == "setup":
        exec(compile(block.argument, f"{where(block, root)} (setup)", "exec"), namespace)
    exec(compile(block.code, where(block, root), "exec"), namespace)


def command_folder(folder: Path) -> Path:
    """A folder of ``python`` and ``hkmeans`` commands that run this interpreter (and
    so the package the tests import), to put first on a shell block's PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, args in (("python", ""), ("hkmeans", " -m hkmeans")):
        script = folder / name
        script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)}{args} "$@"\n')
        script.chmod(0o755)
    return folder


def run_shell(block: Block, cwd: Path, env: dict, root: Path) -> None:
    """Run ``block`` (after its setup code) with ``bash`` in ``cwd``: every command
    must succeed (``set -euo pipefail``). A failure fails the test with the page and
    line of the failing command and the tail of the block's output.

    Parameters
    ----------
    block : Block
    cwd : Path
    env : dict
        The environment of the shell.
    root : Path
        Pages are named relative to it.
    """
    header = "set -euo pipefail; trap 'echo \"$0:$((LINENO + OFFSET)): exit $?: $BASH_COMMAND\" >&2' ERR\n"
    if block.marker == "setup":
        header += f"{block.argument}\n"
    # Blank lines put the block's first line on its line of the page, so that LINENO and
    # bash's own messages ("PAGE: line N: ...", with the page as $0) give page lines.
    pad = max(0, block.line - header.count("\n"))
    offset = block.line - header.count("\n") - pad
    script = header.replace("OFFSET", str(offset)) + "\n" * pad + block.code
    shell = subprocess.Popen(
        ["bash", "-c", script, page_name(block.page, root)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = shell.communicate(timeout=SHELL_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(shell.pid, signal.SIGKILL)  # the commands it started too
        output, _ = shell.communicate()
        pytest.fail(
            f"{where(block, root)}: still running after {SHELL_TIMEOUT} s; its output ends:\n{output[-TAIL:]}",
            pytrace=False,
        )
    if shell.returncode != 0:
        pytest.fail(
            f"{where(block, root)}: the shell example failed (exit {shell.returncode}); its output ends:\n"
            f"{output[-TAIL:]}",
            pytrace=False,
        )


def _command_lines(block: Block) -> list[tuple[int, str]] | None:
    """The block's lines, continuations (a final backslash) joined, each with the
    page line it starts on; None for a block that ends inside a continuation."""
    lines, text, start = [], "", None
    for i, raw in enumerate(block.code.splitlines()):
        start = block.line + 1 + i if start is None else start
        if raw.rstrip().endswith("\\"):
            text += raw.rstrip()[:-1] + " "
            continue
        lines.append((start, text + raw))
        text, start = "", None
    return None if start is not None else lines


def hkmeans_commands(block: Block) -> list[tuple[int, list[str], str | None]] | None:
    """The page line, arguments and output file of each command of a shell ``block``
    whose commands are all plain ``hkmeans`` command lines (no pipes, variables or
    globs; continuations and one final ``> FILE`` allowed) and that has no setup code;
    None for any other block. Such a block runs in this process
    (:func:`run_commands`): a process of its own adds nothing."""
    lines = _command_lines(block)
    if block.marker is not None or lines is None:
        return None
    commands = []
    for line, text in lines:
        try:
            words = shlex.split(text, comments=True)
        except ValueError:
            return None
        if not words:
            continue
        bare = re.sub(r"'[^']*'|\"[^\"]*\"", "x", text.split("#")[0])  # quoted words are plain
        out = None
        if len(words) > 3 and words[-2] == ">" and bare.count(">") == 1:
            out, words, bare = words[-1], words[:-2], bare.replace(">", " ")
        if words[0] != "hkmeans" or SHELL_SYNTAX & set(bare):
            return None
        commands.append((line, words[1:], out))
    return commands or None


def run_commands(block: Block, commands: list[tuple[int, list[str], str | None]], cwd: Path, root: Path) -> None:
    """Run ``hkmeans`` ``commands`` (from :func:`hkmeans_commands`) in this process, in
    ``cwd``, in order: each must succeed, as under :func:`run_shell`; the output of a
    command with an output file goes there."""
    with chdir(cwd):
        for line, argv, out in commands:
            done = run_in_process(argv)
            if done.returncode != 0:
                output = done.stdout + done.stderr
                pytest.fail(
                    f"{page_name(block.page, root)}:{line}: exit {done.returncode}: hkmeans {shlex.join(argv)}; "
                    f"its output ends:\n{output[-TAIL:]}",
                    pytrace=False,
                )
            if out is not None:
                Path(out).write_text(done.stdout)
