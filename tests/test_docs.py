"""The README and docs/ say true things about the code.

- Every ```python block of README.md and docs/*.md runs, in a temporary
  folder, with the repository on sys.path and no network. The blocks of one
  file run in order in one namespace and one folder, so a block may use what
  an earlier block of the same file defined or wrote. Test ids are file:line
  of the block's opening fence.
- Every relative link (and image) points to an existing file, and a
  ``#anchor`` into a Markdown file names one of its headings.
- The code column of the README's equation table quotes lines that exist,
  word for word, in ``sparse_autoencoder.cost_and_grad``.
- The README stays short and keeps the test command of ``.ci/run``.
"""

from __future__ import annotations

import inspect
import re
import socket
import sys
import time
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

README = ROOT / "README.md"
DOC_FILES = [README] + sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 210
SNIPPET_SECONDS = 30          # a generous bound: the snippets are meant to take a few seconds
TEST_COMMAND = "python -m pip install -r requirements-test.txt && python -m pytest"


def relative(path):
    return path.relative_to(ROOT).as_posix()


# ---------------------------------------------------------------------------
# Reading Markdown
# ---------------------------------------------------------------------------

FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")


def fenced_blocks(path):
    """[(language, line number of the opening fence, code)] of a Markdown file."""
    blocks, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, language = match.groups()
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            line = lines[i]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            i += 1
        if i == len(lines):
            raise AssertionError(f"{relative(path)}:{start}: a code fence that is never closed")
        blocks.append((language.lower(), start, "\n".join(body) + "\n"))
        i += 1
    return blocks


def prose(path):
    """The file's text without fenced code blocks and inline code spans."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^\s*(```+|~~~+).*?^\s*\1\s*$", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def heading_anchors(path):
    """GitHub's anchors of the file's headings (lower case, punctuation dropped, - for spaces)."""
    anchors, seen = set(), {}
    for line in prose_lines_with_code_spans(path):
        match = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        text = match.group(2).lower()
        slug = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
        slug = slug.replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def prose_lines_with_code_spans(path):
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^\s*(```+|~~~+).*?^\s*\1\s*$", "", text, flags=re.M | re.S)
    return text.splitlines()


LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def links(path):
    return LINK.findall(prose(path))


# ---------------------------------------------------------------------------
# Every ```python block runs
# ---------------------------------------------------------------------------

PYTHON_BLOCKS = [(path, line, code) for path in DOC_FILES
                 for language, line, code in fenced_blocks(path) if language in ("python", "py")]


class _FileState:
    """The namespace and folder shared by the blocks of one Markdown file, run in order."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.namespace = {"__name__": "__docs__"}
        self.done = 0                       # blocks of this file run so far


_STATES = {}


def _blocks_of(path):
    return [(line, code) for p, line, code in PYTHON_BLOCKS if p == path]


def _run_block(state, path, line, code):
    # Pad with blank lines so that a traceback names the line of the Markdown file.
    compiled = compile("\n" * line + code, str(path), "exec")
    exec(compiled, state.namespace)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("tests/test_docs.py: the docs' snippets must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize(
    "path, line, code", PYTHON_BLOCKS,
    ids=[f"{relative(path)}:{line}" for path, line, _ in PYTHON_BLOCKS])
def test_python_snippet_runs(path, line, code, tmp_path_factory, monkeypatch, no_network):
    blocks = _blocks_of(path)
    index = [block_line for block_line, _ in blocks].index(line)
    state = _STATES.get(path)
    if state is None or state.done > index:           # first block, or run out of order (-k)
        state = _STATES[path] = _FileState(tmp_path_factory.mktemp(path.stem))
    monkeypatch.chdir(state.workdir)
    monkeypatch.setattr(sys, "argv", [str(path)])
    while state.done < index:                            # earlier blocks this one builds on
        earlier_line, earlier_code = blocks[state.done]
        try:
            _run_block(state, path, earlier_line, earlier_code)
        except Exception as exc:                         # noqa: BLE001
            pytest.fail(f"the earlier block at {relative(path)}:{earlier_line}, which this one "
                        f"builds on, failed: {type(exc).__name__}: {exc}")
        state.done += 1
    start = time.perf_counter()
    _run_block(state, path, line, code)
    state.done += 1
    seconds = time.perf_counter() - start
    assert seconds < SNIPPET_SECONDS, (
        f"{relative(path)}:{line} took {seconds:.1f} s; the docs' snippets should take seconds")


def test_every_doc_file_has_been_read():
    assert README.exists()
    assert len(DOC_FILES) > 1, "no docs/*.md found"
    assert PYTHON_BLOCKS, "no ```python blocks found"


# ---------------------------------------------------------------------------
# Links
# ---------------------------------------------------------------------------

LINKS = [(path, target) for path in DOC_FILES for target in links(path)
         if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]          # http:, https:, mailto:


@pytest.mark.parametrize("path, target", LINKS,
                         ids=[f"{relative(path)}->{target}" for path, target in LINKS])
def test_relative_link_points_to_an_existing_file(path, target):
    file_part, _, anchor = target.partition("#")
    linked = (path.parent / file_part).resolve() if file_part else path
    assert linked.exists(), f"{relative(path)}: link to {target}: no such file"
    if anchor and linked.suffix == ".md":
        assert anchor in heading_anchors(linked), (
            f"{relative(path)}: link to {target}: no heading with that anchor in "
            f"{relative(linked)} (anchors: {sorted(heading_anchors(linked))})")


def test_links_were_found():
    assert any(path == README for path, _ in LINKS)
    assert any(path != README for path, _ in LINKS)


def test_readme_links_every_doc():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(README)}
    missing = [relative(p) for p in DOC_FILES[1:] if p.resolve() not in linked]
    assert not missing, f"README.md does not link to {missing} (its map of docs/)"


# ---------------------------------------------------------------------------
# The README's equation table quotes the code
# ---------------------------------------------------------------------------


def _cells(row):
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def equation_table_code():
    """(row text, code span) for every code span in the code column of the README's
    tables under "The equations beside the code"."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## The equations beside the code\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, "README.md: no section '## The equations beside the code'"
    quoted, lines = [], section.group(1).splitlines()
    for i, line in enumerate(lines[:-1]):
        if not (line.startswith("|") and re.match(r"^\|[\s:|-]+\|$", lines[i + 1].strip())):
            continue
        header = _cells(line)
        columns = [c for c, name in enumerate(header) if name.lower().startswith("code")]
        assert len(columns) == 1, f"README.md: expected one 'code' column in {line!r}"
        for row in lines[i + 2:]:
            if not row.startswith("|"):
                break
            cell = _cells(row)[columns[0]]
            quoted += [(row, span.replace("\\|", "|")) for span in re.findall(r"`([^`]+)`", cell)]
    return quoted


def test_equation_table_quotes_cost_and_grad_word_for_word():
    import sparse_autoencoder

    source = inspect.getsource(sparse_autoencoder.cost_and_grad)
    quoted = equation_table_code()
    assert len(quoted) >= 15, f"README.md: only {len(quoted)} code cells found in the equation table"
    missing = [code for _, code in quoted if code not in source]
    assert not missing, (
        "README.md's equation table quotes lines that are not in "
        f"sparse_autoencoder.cost_and_grad: {missing}")


# ---------------------------------------------------------------------------
# The README itself
# ---------------------------------------------------------------------------


def test_readme_is_short():
    n_lines = len(README.read_text(encoding="utf-8").splitlines())
    assert n_lines <= MAX_README_LINES, f"README.md has {n_lines} lines, at most {MAX_README_LINES}"


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert TEST_COMMAND in ci.splitlines()
    assert TEST_COMMAND in [line.strip() for line in README.read_text(encoding="utf-8").splitlines()]


def test_quick_start_begins_with_the_gradient_check():
    text = README.read_text(encoding="utf-8")
    quick_start = text.split("## Quick start", 1)[1]
    first_command = next(code for language, _, code in fenced_blocks(README)
                         if language in ("bash", "sh", "shell") and code.strip() in quick_start)
    assert first_command.strip() == "python gradcheck.py"


# ---------------------------------------------------------------------------
# The pasted gradient check is a real run of the command
# ---------------------------------------------------------------------------


def _normalized(text):
    """Lines with every number replaced by # and runs of spaces by one (digits vary by machine)."""
    text = re.sub(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", text)
    return [re.sub(r"\s+", " ", line).strip() for line in text.strip().splitlines()]


def _pasted(doc, command):
    """The ```text block that follows "A real run of `command`" in doc."""
    found = re.search(r"A real run of `" + re.escape(command) + r"`[^\n]*\n\n```text\n(.*?)\n```", doc, re.S)
    assert found, f"docs/gradcheck.md: no pasted run of `{command}` found"
    return found.group(1)


@pytest.mark.parametrize("argv", [[], ["--all"]], ids=["python gradcheck.py", "--all"])
def test_pasted_gradient_check_is_what_the_command_prints(capsys, argv):
    import gradcheck

    doc = (ROOT / "docs" / "gradcheck.md").read_text(encoding="utf-8")
    pasted = _pasted(doc, " ".join(["python gradcheck.py", *argv]))
    status = gradcheck.main(argv)
    printed = capsys.readouterr().out
    assert status == 0
    assert _normalized(pasted) == _normalized(printed), (
        "docs/gradcheck.md's pasted run differs from what the command prints now: "
        "paste a fresh run")
    if not argv:
        last_line = printed.strip().splitlines()[-1]
        readme = README.read_text(encoding="utf-8")
        assert f"`{last_line}`" in readme, (
            f"README.md's quick start should quote the last line of the check, `{last_line}`")
        quick_start = readme.split("## Quick start", 1)[1]
        table = next(code for language, _, code in fenced_blocks(README)
                     if language == "text" and code.strip() in quick_start)
        section = printed.split("\n\n")
        shown = next(part for part in section if part.startswith(table.splitlines()[0]))
        assert _normalized(table) == _normalized(shown), (
            "README.md's quick start shows a table that differs from the command's")


def test_pasted_cost_check_is_what_the_command_prints(capsys, monkeypatch, tmp_path):
    """docs/gradcheck.md's --cost example: tests/test_gradcheck.py's consistent missing-1/m
    function, saved as my_autoencoder.py, run as the doc says."""
    import gradcheck

    source = (ROOT / "tests" / "test_gradcheck.py").read_text(encoding="utf-8")
    function = source[source.index("def _without_one_over_m"):
                      source.index("def _with_the_recon_part_and_its_gradient")]
    (tmp_path / "my_autoencoder.py").write_text(
        "import numpy as np\nimport sparse_autoencoder as sae\n\n\n"
        + function.replace("_without_one_over_m", "cost_and_grad"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert gradcheck.main(["--cost", "my_autoencoder.py:cost_and_grad"]) == 1
    captured = capsys.readouterr()
    doc = (ROOT / "docs" / "gradcheck.md").read_text(encoding="utf-8")
    section = doc.split("**It checks J too.**", 1)[1]
    stdout_block, stderr_block = re.findall(r"```text\n(.*?)\n```", section, re.S)[:2]
    printed = captured.out[captured.out.index("my_autoencoder.py:cost_and_grad"):]
    assert _normalized(stdout_block) == _normalized(printed)
    assert _normalized(stderr_block) == _normalized(captured.err)


def test_pasted_exercise_run_is_what_the_command_prints_to_the_line_number(capsys):
    """docs/gradcheck.md's run of the bare exercise, compared exactly (the blank's line number
    in exercise.py included: the numbers are not normalized away here)."""
    import gradcheck

    doc = (ROOT / "docs" / "gradcheck.md").read_text(encoding="utf-8")
    section = doc.split("Before any blank is written", 1)[1]
    stdout_block, stderr_block = re.findall(r"```text\n(.*?)\n```", section, re.S)[:2]
    assert gradcheck.main(["--cost", "exercise.py:cost_and_grad"]) == 1
    captured = capsys.readouterr()
    printed = captured.out[captured.out.index("exercise.py:cost_and_grad\n"):].strip()
    assert stdout_block.strip() == printed
    assert stderr_block.strip() == captured.err.strip()
