"""The package's layers import downward only (issue 12).

``span`` < ``errors`` < ``compiler`` (and ``grammar``) < ``runtime`` < ``viz``
< the API and CLI. A compiler that imported a backend could not be checked
or bound without it; ``fglang check`` must stay free of JAX (it alone takes
about a second to import). Read from the source with ``ast``, so a lazy
import inside a function counts as much as one at the top of a file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import fglang

ROOT = Path(fglang.__file__).parent


def _modules(sub: str = "") -> list[Path]:
    return sorted((ROOT / sub).rglob("*.py"))


def _imported(node: ast.AST) -> list[str]:
    """Module names an import statement brings in (``from a import b`` is ``a`` and ``a.b``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return []


def _all_imports(path: Path) -> set[str]:
    return {m for node in ast.walk(ast.parse(path.read_text())) for m in _imported(node)}


def _import_time_imports(path: Path) -> set[str]:
    """Imports that run when the module is imported: module level, outside ``if TYPE_CHECKING``."""
    out: set[str] = set()
    stack = list(ast.parse(path.read_text()).body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.If | ast.Try | ast.With):
            for part in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(node, part, []))
            continue
        if isinstance(node, ast.ExceptHandler):
            stack.extend(node.body)
            continue
        out.update(_imported(node))
    return out


def _under(names: set[str], *packages: str) -> set[str]:
    return {n for n in names if any(n == p or n.startswith(p + ".") for p in packages)}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT.parent))


@pytest.mark.parametrize("path", _modules("compiler"), ids=_rel)
def test_the_compiler_imports_no_backend_and_no_viz(path):
    assert not _under(_all_imports(path), "fglang.runtime", "fglang.viz")


# Known, and the one left: `Posterior.plot()` (public API) calls the plotting
# layer lazily. It goes when posterior.py stops reaching up (issue 12); no
# other module may join it.
@pytest.mark.parametrize("path", _modules("runtime"), ids=_rel)
def test_the_runtime_imports_no_viz(path):
    assert not _under(_all_imports(path), "fglang.viz")


def test_errors_import_only_the_span():
    assert _under(_all_imports(ROOT / "errors.py"), "fglang") == {"fglang.span", "fglang.span.Span"}


@pytest.mark.parametrize("path", _modules("compiler") + _modules("grammar"), ids=_rel)
def test_only_the_jax_lowering_imports_jax_when_imported(path):
    # the JAX meaning of the built-ins (and of the group ones, of Stan's math library, and of scan[...])
    if path.name in ("lower_jax.py", "lie_jax.py", "scan_jax.py", "member_axis_jax.py", "stanlib_jax.py"):
        return
    assert not _under(_import_time_imports(path), "jax", "numpyro")


def test_the_scan_sees_imports():
    """The checks above would pass vacuously if the scan found nothing."""
    assert "jax" in _import_time_imports(ROOT / "compiler" / "lower_jax.py")
    assert "fglang.compiler.lower_jax.member_function" in _all_imports(ROOT / "compiler" / "bind.py")


def test_binding_does_not_run_the_checker(monkeypatch):
    """The IR stands alone: binding (once per batch in a batched fit) never checks the model again."""
    from fglang.compiler import check

    src = (
        "model m\ndata N: int\ndata D: int\ndata K: int\ndata X[N, D]: real\ndata y[N]: real\nvar w: real[K]\n"
        "let mu = X @ w\nfactor lik: y ~ normal(mu, 1)\n"
    )
    model = fglang.compile(src, "m.fg")

    def refuse(*args, **kwargs):
        raise AssertionError("the checker ran while binding")

    monkeypatch.setattr(check.Checker, "run", refuse)
    monkeypatch.setattr(check, "check_decls", refuse)
    for n in (3, 5):
        bound = model.bind({"N": n, "D": 2, "K": 2, "X": np.ones((n, 2)), "y": np.zeros(n)})
        assert bound.derived["mu"].shape == (n,)
    with pytest.raises(fglang.FgError, match="inner dimensions differ"):
        model.bind({"N": 3, "D": 2, "K": 3, "X": np.ones((3, 2)), "y": np.zeros(3)})
