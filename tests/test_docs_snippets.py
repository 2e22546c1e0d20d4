"""Every Python snippet of the README, the getting-started page and the user guide
runs, each document's snippets in order in one namespace, like a notebook.

What counts as a snippet (the extraction is explicit, and ``test_extraction_*``
fails on anything it does not know):

- Markdown (``README.md``): fenced blocks, ```` ```python ```` and ```` ```bash ````
  (fences may be indented, as in lists).
- reStructuredText: ``.. code-block:: LANG`` (or ``code``/``sourcecode``)
  directives, and ``::`` literal blocks. A literal block is Python console
  (doctest) when it starts with ``>>>``, Python when it parses as Python, and
  text otherwise.

Languages: ``python`` is executed; ``pycon`` is run as a doctest (outputs
compared); shell blocks (``bash``, ``sh``, ``shell``, ``console``) are not
executed but must not parse as Python (a Python snippet mislabelled as shell
would escape the test); ``text`` is left alone. Any other language fails.

Each document is one test; each runnable block is a subtest named
``path:line`` (the first line of its code), and its tracebacks point into the
document. Two kinds of blocks run differently, and say so:

- a block that asks for ``device="cuda"`` runs where ``torch.cuda.is_available()``
  and is reported as a skipped subtest elsewhere;
- a block whose first line is ``# NAME.py: torchrun ...`` is written to
  ``NAME.py`` and launched by torchrun, with two processes (the dev machine has
  two cores) rather than the number in the comment.

The snippets run in a fresh temporary directory (files they write go there),
with one torch thread.
"""

import copy
import doctest
import io
import os
import re
import subprocess
import sys
import textwrap
import tokenize
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification, make_friedman1

from sk_slim import (
    GNvproClassifier,
    GNvproRegressor,
    SlimTrainClassifier,
    SlimTrainRegressor,
)

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [
    "README.md",
    "docs/index.rst",
    "docs/getting_started.rst",
    "docs/user_guide.rst",
]

PYTHON, PYCON = "python", "pycon"
SHELL = {"bash", "sh", "shell", "console"}
TEXT = {"text"}
KNOWN = {PYTHON, PYCON} | SHELL | TEXT
ALIASES = {"python3": PYTHON, "py": PYTHON, "default": PYTHON}

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
DIRECTIVE = re.compile(
    r"^(?P<indent>[ \t]*)\.\.[ \t]+(?P<name>code-block|code|sourcecode)::"
    r"(?P<arg>.*)$"
)
CUDA = re.compile(r"""device\s*=\s*["']cuda""")
TORCHRUN = re.compile(r"^#\s*(?P<script>[\w.-]+\.py):\s*torchrun\b")
TORCHRUN_PROCESSES = 2
TORCHRUN_TIMEOUT = 300  # seconds


@dataclass(frozen=True)
class Block:
    """One code block: where it is, its language, its dedented code."""

    path: str  # relative to the repository root
    line: int  # 1-based line of the code's first line in the document
    lang: str
    code: str
    source: str  # "fence", "directive" or "literal"

    @property
    def id(self):
        return f"{self.path}:{self.line} {self.lang}"


def _indent(line):
    return len(line) - len(line.lstrip())


def _language(info):
    words = info.strip().split()
    lang = words[0].lower() if words else ""
    return ALIASES.get(lang, lang)


def markdown_blocks(text, path="<md>"):
    """The fenced code blocks of a Markdown document."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, indent = match["fence"], match["indent"]
        start = i + 1
        end = start
        while end < len(lines):
            close = FENCE.match(lines[end])
            if (
                close
                and close["fence"][0] == fence[0]
                and len(close["fence"]) >= len(fence)
                and not close["info"].strip()
            ):
                break
            end += 1
        else:
            raise ValueError(f"{path}:{i + 1}: unclosed code fence")
        body = [
            line[len(indent) :] if line.startswith(indent) else line.lstrip()
            for line in lines[start:end]
        ]
        code = "\n".join(body) + "\n"
        blocks.append(Block(path, start + 1, _language(match["info"]), code, "fence"))
        i = end + 1
    return blocks


def _indented_body(lines, start, base):
    """From ``start`` (after the block's introduction): skip option lines and
    blank lines, then take every line indented deeper than ``base`` (and the
    blank lines between them). Returns (first line index, lines)."""
    i = start
    while (
        i < len(lines)
        and lines[i].strip().startswith(":")
        and (_indent(lines[i]) > base)
    ):
        i += 1  # directive options (:caption:, :linenos:, ...)
    while i < len(lines) and not lines[i].strip():
        i += 1
    first = i
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
        i += 1
    body = lines[first:i]
    while body and not body[-1].strip():
        body.pop()
    return first, body


def _literal_language(code):
    if code.lstrip().startswith(">>>"):
        return PYCON
    try:
        compile(code, "<literal>", "exec")
    except SyntaxError:
        return "text"
    return PYTHON


def rst_blocks(text, path="<rst>"):
    """The code-block directives and ``::`` literal blocks of a reST document."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        line = lines[i]
        directive = DIRECTIVE.match(line)
        literal = (
            not directive
            and line.rstrip().endswith("::")
            and not line.lstrip().startswith("..")
        )
        if not (directive or literal):
            i += 1
            continue
        first, body = _indented_body(lines, i + 1, _indent(line))
        if not body:
            if directive:
                raise ValueError(f"{path}:{i + 1}: code block without code")
            i += 1  # "::" ending a line that introduces no block
            continue
        code = textwrap.dedent("\n".join(body)) + "\n"
        if directive:
            lang, source = _language(directive["arg"]), "directive"
        else:
            lang, source = _literal_language(code), "literal"
        blocks.append(Block(path, first + 1, lang, code, source))
        i = first + len(body)
    return blocks


def document_blocks(path):
    text = (ROOT / path).read_text(encoding="utf-8")
    if path.endswith(".md"):
        return markdown_blocks(text, path)
    return rst_blocks(text, path)


# -- the extraction ------------------------------------------------------------


def test_extraction_reads_markdown_fences():
    text = textwrap.dedent(
        """\
        # Title

        ```python
        x = 1

        y = x + 1
        ```

        - a list item:

          ```bash
          make test
          ```

        ````text
        ```python
        not a block of its own
        ```
        ````
        """
    )
    blocks = markdown_blocks(text)
    assert [(b.line, b.lang) for b in blocks] == [
        (4, "python"),
        (12, "bash"),
        (16, "text"),
    ]
    assert blocks[0].code == "x = 1\n\ny = x + 1\n"
    assert blocks[1].code == "make test\n"
    assert blocks[2].code.startswith("```python\n")


def test_extraction_reads_rst_blocks():
    text = textwrap.dedent(
        """\
        Title
        =====

        .. code-block:: python
           :caption: a caption

           import math

           x = math.pi

        Text, then a literal block::

            y = 2 * x

        1. A list item with a console session:

           .. code-block:: pycon

              >>> 1 + 1
              2

        A literal block of shell::

           make test

        .. note::

           Not code.
        """
    )
    blocks = rst_blocks(text)
    assert [(b.line, b.lang, b.source) for b in blocks] == [
        (7, "python", "directive"),
        (13, "python", "literal"),
        (19, "pycon", "directive"),
        (24, "text", "literal"),
    ]
    assert blocks[0].code == "import math\n\nx = math.pi\n"
    assert blocks[2].code == ">>> 1 + 1\n2\n"


def test_cuda_blocks_are_recognized():
    assert needs_cuda('model = Est(device="cuda", random_state=0)\n')
    assert needs_cuda("Est(device = 'cuda:1')\n")
    assert not needs_cuda('dist.init_process_group("gloo")  # device="cuda:0"\n')
    assert not needs_cuda('Est(device="auto")\n')


@pytest.mark.parametrize("path", DOCUMENTS)
def test_extraction_finds_every_block(path):
    """Every fence or code-block directive of the document becomes a block, in a
    known language; shell blocks are not Python; there is Python to run."""
    text = (ROOT / path).read_text(encoding="utf-8")
    blocks = document_blocks(path)
    if path.endswith(".md"):
        fences = [line for line in text.splitlines() if FENCE.match(line)]
        assert len(fences) == 2 * len(blocks)
    else:
        directives = [line for line in text.splitlines() if DIRECTIVE.match(line)]
        assert len(directives) == sum(b.source == "directive" for b in blocks)
    for block in blocks:
        assert block.lang in KNOWN, f"{block.id}: unknown language {block.lang!r}"
        if block.lang in SHELL:
            try:
                compile(block.code, block.path, "exec")
            except SyntaxError:
                continue
            pytest.fail(f"{block.id}: a shell block that parses as Python")
    assert any(b.lang in (PYTHON, PYCON) for b in blocks), f"{path}: no Python"


# -- running the documents -----------------------------------------------------


def _run_python(block, namespace):
    # Pad so that line numbers in tracebacks are the document's.
    code = compile("\n" * (block.line - 1) + block.code, str(ROOT / block.path), "exec")
    exec(code, namespace)


def _run_pycon(block, namespace):
    test = doctest.DocTestParser().get_doctest(
        block.code, namespace, block.id, str(ROOT / block.path), block.line - 1
    )
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    report = io.StringIO()
    runner.run(test, out=report.write, clear_globs=False)
    if runner.failures:
        pytest.fail(f"{block.id}: doctest failed\n{report.getvalue()}")


def _run_torchrun(block, script):
    Path(script).write_text(block.code, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={TORCHRUN_PROCESSES}",
        script,
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=TORCHRUN_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{block.id}: torchrun {script} ran past {exc.timeout} s")
    if done.returncode != 0:
        pytest.fail(
            f"{block.id}: torchrun {script} exited with {done.returncode}\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        )


def _without_comments(code):
    tokens = tokenize.generate_tokens(io.StringIO(code).readline)
    return tokenize.untokenize(
        (t.type, t.string) for t in tokens if t.type != tokenize.COMMENT
    )


def needs_cuda(code):
    """Whether the code asks for ``device="cuda"`` (comments aside)."""
    return bool(CUDA.search(_without_comments(code)))


def run_block(block, namespace):
    if block.lang == PYCON:
        _run_pycon(block, namespace)
        return
    if needs_cuda(block.code) and not torch.cuda.is_available():
        pytest.skip(
            f"{block.id}: CUDA-only snippet (device='cuda') and "
            "torch.cuda.is_available() is False"
        )
    torchrun = TORCHRUN.match(block.code)
    if torchrun:
        _run_torchrun(block, torchrun["script"])
    else:
        _run_python(block, namespace)


def test_runner_shares_the_namespace_and_fails_on_errors():
    namespace = {}
    run_block(Block("doc.rst", 3, PYTHON, "x = 40\n", "directive"), namespace)
    run_block(Block("doc.rst", 9, PYCON, ">>> x + 2\n42\n", "directive"), namespace)
    with pytest.raises(ZeroDivisionError) as raised:
        run_block(Block("doc.rst", 20, PYTHON, "x = 1\nx / 0\n", "fence"), namespace)
    # The traceback points at the document's line.
    assert raised.traceback[-1].lineno + 1 == 21
    with pytest.raises(pytest.fail.Exception, match="doctest failed"):
        run_block(Block("doc.rst", 30, PYCON, ">>> x\n2\n", "directive"), namespace)
    cuda = Block("doc.rst", 40, PYTHON, 'y = dict(device="cuda")\n', "directive")
    if torch.cuda.is_available():
        run_block(cuda, namespace)
        assert namespace["y"] == {"device": "cuda"}
    else:
        with pytest.raises(pytest.skip.Exception, match="CUDA-only"):
            run_block(cuda, namespace)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Run in an empty directory, and undo what snippets do to Dask's config."""
    monkeypatch.chdir(tmp_path)
    try:
        import dask
    except ImportError:
        yield tmp_path
        return
    config = dask.config.config
    saved = copy.deepcopy(config)
    yield tmp_path
    for key in set(config) - set(saved):
        del config[key]
    for key, value in saved.items():
        if config.get(key) != value:
            config[key] = value


@pytest.mark.parametrize("path", DOCUMENTS)
def test_document_runs(path, subtests, isolated):
    """The document's Python blocks, in order, in one namespace."""
    blocks = [b for b in document_blocks(path) if b.lang in (PYTHON, PYCON)]
    assert blocks, f"{path}: no Python block to run"
    namespace = {"__name__": "docs_snippets"}
    for block in blocks:
        with subtests.test(msg=block.id):
            run_block(block, namespace)


# -- the ONNX recipe of the user guide, for every estimator --------------------


def _onnx_recipe():
    [recipe] = [
        b
        for b in document_blocks("docs/user_guide.rst")
        if b.lang == PYTHON and "torch.onnx.export(" in b.code
    ]
    return recipe


def _export(module, example, path, dynamic=True):
    """The recipe's export: the batch dimension named dynamic."""
    kwargs = {}
    if dynamic:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, (example,), dynamo=True, verbose=False, **kwargs
        )
    program.save(str(path))


def _small_fit(Estimator, n_classes=None):
    if n_classes:
        X, y = make_classification(
            n_samples=150,
            n_features=5,
            n_informative=3,
            n_classes=n_classes,
            random_state=0,
        )
    else:
        X, y = make_friedman1(n_samples=150, n_features=5, random_state=0)
    params = {"hidden_layer_sizes": (8,), "max_iter": 5, "random_state": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Estimator(**params).fit(X, y), X


def test_onnx_recipe_names_the_batch_dimension():
    code = _onnx_recipe().code
    assert "torch.export.Dim(" in code
    assert "dynamic_shapes=({0: batch},)" in code


@pytest.mark.parametrize(
    ("Estimator", "n_classes"),
    [
        (SlimTrainRegressor, None),
        (GNvproRegressor, None),
        (SlimTrainClassifier, 2),
        (SlimTrainClassifier, 3),
        (GNvproClassifier, 3),
    ],
    ids=[
        "SlimTrainRegressor",
        "GNvproRegressor",
        "SlimTrainClassifier-2",
        "SlimTrainClassifier-3",
        "GNvproClassifier-3",
    ],
)
def test_onnx_recipe_takes_any_batch_size(Estimator, n_classes, tmp_path):
    """Exported on 8 rows as the recipe does, onnxruntime runs 5 rows and 1 row to
    what the estimator predicts: a classifier's logits to its classes and their
    softmax to its probabilities, as the recipe's text says."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model, X = _small_fit(Estimator, n_classes)
    _export(model.to_torch(), torch.as_tensor(X[:8]), tmp_path / "model.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    name = session.get_inputs()[0].name
    for rows in (X[:5], X[8:9]):
        (out,) = session.run(None, {name: rows})
        if hasattr(model, "classes_"):
            np.testing.assert_array_equal(
                model.classes_[out.argmax(axis=1)], model.predict(rows)
            )
            logits = out - out.max(axis=1, keepdims=True)
            proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            np.testing.assert_allclose(
                proba, model.predict_proba(rows), rtol=1e-9, atol=1e-12
            )
        else:
            np.testing.assert_allclose(out, model.predict(rows), rtol=1e-10, atol=1e-10)


def test_onnx_export_without_dynamic_batch_fixes_the_rows(tmp_path):
    """What the recipe's text says: without dynamic_shapes, the 8-row example's
    batch size is baked in and onnxruntime refuses 5 rows."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model, X = _small_fit(SlimTrainRegressor)
    path = tmp_path / "fixed.onnx"
    _export(model.to_torch(), torch.as_tensor(X[:8]), path, dynamic=False)
    session = ort.InferenceSession(str(path))
    with pytest.raises(Exception, match="Got: 5 Expected: 8"):
        session.run(None, {session.get_inputs()[0].name: X[:5]})
