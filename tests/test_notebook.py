"""The notebook runs top to bottom, and the numbers stored in it are the ones it prints.

``notebooks/sparse_autoencoder.ipynb`` is committed with its outputs, so that
GitHub shows them. This module executes a temporary copy of it with nbclient
and the test environment's kernel (the kernelspec its metadata names,
python3 from ipykernel), from the repository's ``notebooks/`` folder, as a
student would (its first cell puts the repository root on sys.path). Then
the text printed by every cell tagged "compare" (J, the gradient check, L0
and normalized MSE: seeded, float64, one BLAS thread, rounded to the digits
that repeat on every machine) must equal what is stored. Timings and
progress lines are printed by other cells and are not compared. When a
change moves those numbers on purpose, store fresh outputs with the command
of the notebook's first cell (EXECUTE below).

Without nbformat, nbclient or ipykernel the module is skipped, saying so
(they are in requirements-test.txt). Without MNIST (``$MNIST_DIR``, else
data/mnist or ../shared/data/mnist from the repository root) the notebook
still runs, its MNIST cells print "skipped", and their comparison is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "sparse_autoencoder.ipynb"
DOC = ROOT / "docs" / "notebook.md"
EXECUTE = "jupyter nbconvert --to notebook --execute --inplace notebooks/sparse_autoencoder.ipynb"
COMPARE, MNIST = "compare", "mnist"                 # cell tags
SKIPPED_MNIST = "skipped: MNIST not found"          # what an MNIST cell prints without the data
CELL_TIMEOUT = 600     # seconds without output before a cell counts as hung (not a speed check)

REASON = ("the notebook test needs nbformat, nbclient and ipykernel "
          "(python -m pip install -r requirements-test.txt)")
nbformat = pytest.importorskip("nbformat", reason=REASON)
nbclient = pytest.importorskip("nbclient", reason=REASON)
pytest.importorskip("ipykernel", reason=REASON)


def tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def stored_cells():
    """The committed notebook's cells (read as plain JSON: collection needs no nbformat)."""
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]


COMPARED = [cell["id"] for cell in stored_cells() if COMPARE in tags(cell)]


def printed(cell):
    """What a code cell showed as text, in order: its streams and the text of its results."""
    parts = []
    for output in cell.get("outputs", []):
        kind = output["output_type"]
        if kind == "stream":
            text = output["text"]
            parts.append(f"[{output['name']}]\n" + ("".join(text) if isinstance(text, list) else text))
        elif kind in ("execute_result", "display_data"):
            text = output.get("data", {}).get("text/plain", "")
            parts.append(f"[{kind}]\n" + ("".join(text) if isinstance(text, list) else text))
        elif kind == "error":
            parts.append(f"[error] {output['ename']}: {output['evalue']}")
    return "\n".join(parts)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """A copy of the notebook, executed top to bottom from notebooks/ (the committed file is not written)."""
    copy = tmp_path_factory.mktemp("notebook") / NOTEBOOK.name
    copy.write_bytes(NOTEBOOK.read_bytes())
    notebook = nbformat.read(copy, as_version=4)
    client = nbclient.NotebookClient(
        notebook, kernel_name=notebook.metadata["kernelspec"]["name"], timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()                       # raises CellExecutionError, naming the cell, on an error
    nbformat.write(notebook, copy)
    return notebook


def test_the_notebook_runs_top_to_bottom(executed):
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    errors = [cell.id for cell in code if any(o.output_type == "error" for o in cell.outputs)]
    assert not errors, f"cells with an error: {errors}"


def test_there_are_numbers_to_compare():
    assert len(COMPARED) >= 4, f"cells tagged {COMPARE!r}: {COMPARED}"


@pytest.mark.parametrize("cell_id", COMPARED)
def test_the_stored_numbers_are_what_the_cell_prints(executed, cell_id):
    stored = next(cell for cell in stored_cells() if cell["id"] == cell_id)
    now = next(cell for cell in executed.cells if cell.id == cell_id)
    if MNIST in tags(stored) and printed(now).startswith(f"[stdout]\n{SKIPPED_MNIST}"):
        pytest.skip("MNIST not found ($MNIST_DIR, data/mnist or ../shared/data/mnist): "
                    "this cell's numbers were not computed")
    assert printed(now) == printed(stored), (
        f"notebooks/sparse_autoencoder.ipynb, cell {cell_id!r}: the stored output is not what the "
        f"cell prints now. If the change is meant, store fresh outputs: {EXECUTE}")


def test_the_notebook_is_stored_executed_with_its_figures():
    cells = stored_cells()
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert [cell["execution_count"] for cell in code] == list(range(1, len(code) + 1)), (
        f"store the outputs of one run from the top: {EXECUTE}")
    assert not [o for cell in code for o in cell["outputs"] if o["output_type"] == "error"]
    images = [o for cell in code for o in cell["outputs"] if "image/png" in o.get("data", {})]
    assert len(images) >= 4, "the figures (PNG) are stored, so that GitHub shows them"


def test_the_first_cell_and_the_docs_name_the_command_that_executes_it():
    first = stored_cells()[0]
    assert first["cell_type"] == "markdown"
    assert EXECUTE in "".join(first["source"])
    assert EXECUTE in DOC.read_text(encoding="utf-8")
