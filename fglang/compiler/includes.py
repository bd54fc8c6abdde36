"""``include``: a model file and the files it includes, as one list of declarations.

Includes are expanded depth first and in place, before checking, so a name
declared in an included file is visible after the include as if written
there; cycles and unreadable files are reported at the include line.
"""

from __future__ import annotations

from pathlib import Path

from fglang.compiler import ast as A
from fglang.compiler.parse import parse
from fglang.errors import Diagnostic, DiagnosticSink, FgError
from fglang.source import read_source


def load_program(path: str | Path) -> tuple[list[A.Decl], A.Program, dict[str, str], DiagnosticSink]:
    """Read a file and its includes (depth first, in place)."""
    path = Path(path)
    sources: dict[str, str] = {}
    sink = DiagnosticSink()
    try:
        text = read_source(path)
    except OSError as err:
        raise FgError([_nowhere(f"cannot read model file: {err.strerror}", str(path))]) from None
    return expand(text, str(path), path.parent, sources, sink, stack=())


def _nowhere(message: str, file: str) -> Diagnostic:
    return Diagnostic(message, A.Span(file, 0, 0, 0, 0))


def expand(text: str, file: str, base: Path | None, sources: dict[str, str], sink: DiagnosticSink, stack: tuple = ()):
    """Parse ``text`` and splice in its includes (``base`` is where they are looked
    up; None for a model given as a string, which may not include)."""
    sources[file] = text
    prog = parse(text, file)
    decls: list[A.Decl] = []
    for d in prog.decls:
        if not isinstance(d, A.IncludeDecl):
            decls.append(d)
            continue
        if base is None:
            sink.error("'include' needs a model loaded from a file (fglang.load), not a string", d.span)
            continue
        if "\0" in d.path:
            sink.error("an include path cannot contain a NUL character (\\0)", d.span, "write the file's name")
            continue
        target = (base / d.path).resolve()
        key = str(base / d.path)
        if str(target) in stack or str(target) == str(Path(file).resolve()):
            chain = " -> ".join([Path(s).name for s in stack] + [Path(file).name, Path(key).name])
            sink.error(f"include cycle: {chain}", d.span)
            continue
        try:
            sub_text = read_source(target, key)
        except OSError:
            sink.error(f"cannot read included file '{d.path}' (looked in {base})", d.span)
            continue
        except FgError as err:  # not UTF-8: reported in the included file, where the byte is
            sink.items.extend(err.diagnostics)
            sources.update(err.sources)
            continue
        try:
            sub, _, _, _ = expand(sub_text, key, Path(key).parent, sources, sink, stack + (str(Path(file).resolve()),))
        except FgError as err:
            sink.items.extend(err.diagnostics)
            sources.update(err.sources)
            continue
        decls.extend(sub)
    return decls, prog, sources, sink
