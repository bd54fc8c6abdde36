"""Pose-graph files (g2o and TORO) read into fglang's data layout.

:func:`read_pose_graph` turns a file into ``(data, init)``, two dicts of
plain lists ready for ``model.fit(data, init=init)`` (or for JSON, see
:func:`to_json`). What the file says becomes:

**2-D graphs** (g2o ``VERTEX_SE2``/``EDGE_SE2``, TORO ``VERTEX2``/``EDGE2``)
give the data of ``examples/pose_graph_2d.fg`` and ``examples/m3500.fg``:
``N`` poses, ``M`` edges, ``src[M]``, ``dst[M]``, ``z[M, 3]`` (dx, dy,
dtheta: pose ``dst`` seen from pose ``src``) and ``sd[M, 3]``, the per-axis
standard deviations ``1 / sqrt(diagonal of the information matrix)``; ``init``
is ``{"pose": [N, 3]}`` (x, y, theta). The 2-D models take per-axis sds
only, so an edge whose information matrix has a non-zero off-diagonal entry
is an error (dropping the correlation would change the cost). Each edge
line ends with the upper triangle of its 3x3 information matrix, ``I11 I12
I13 I22 I23 I33``: in g2o files and, here, in TORO 2-D files too (the
original TORO writes ``I11 I12 I22 I33 I13 I23``; this reader takes g2o's
order for both).

**3-D graphs** (g2o ``VERTEX_SE3:QUAT``/``EDGE_SE3:QUAT``, TORO
``VERTEX3``/``EDGE3``) give ``N``, ``M``, ``src``, ``dst``, ``z[M, 7]`` as
``[x, y, z, qx, qy, qz, qw]`` (g2o's order; TORO's roll, pitch, yaw, with
``R = Rz(yaw) Ry(pitch) Rx(roll)``, are converted to that quaternion) and
``info[M, 6, 6]``, each edge's full information matrix expanded from the 21
upper-triangle entries of the file (axes x y z rx ry rz in g2o, x y z roll
pitch yaw in TORO, as the files define them); ``init`` is ``{"pose": [N,
7]}``. Quaternions are normalized and given with ``qw >= 0``. These are
the data of ``examples/pose_graph_3d.fg`` (``z`` as ``pose3`` data, ``info``
the precision of the tangent vector ``log(between(...))``, and ``origin``,
the initial guess's pose 0, where the model's anchor holds pose 0): fglang's pose3
tangent is translation first, ``[vx, vy, vz, wx, wy, wz]``, the files' own
order, so no permutation is needed; TORO's roll, pitch, yaw axes agree with
the rotation vector's ``wx, wy, wz`` to first order (small errors), which
is the sense in which its information applies.

Conventions:

- Vertex ids may be any integers, in any order, with gaps: they are
  renumbered 0..N-1 in file order (the order of the ``VERTEX`` lines; in a
  file without vertices, the order in which edges first name them). Pose 0,
  the one the models anchor, is the file's first vertex. ``order="id"``
  numbers them in increasing id order instead.
- The vertices give the initial guess. A file with no vertex lines (as
  ``sphere2500.toro``) gets one by chaining the odometry: pose 0 at the
  origin, then pose k+1 = pose k composed with the edge k -> k+1 (or the
  inverse of an edge k+1 -> k); a missing link is an error.
- ``FIX id`` lines (g2o's gauge hint) are checked (the vertex must exist)
  but are not data: the models fix the gauge with their own prior on pose
  0, and a warning says so when a ``FIX`` names another pose.
  ``PARAMS_*`` lines are skipped; a leading line of one or two integers
  (a vertex/edge count header some writers put first) is skipped, with a
  warning when it disagrees with the file. Lines starting with ``#`` are
  comments. Any other tag is skipped with one warning per tag.
- The format comes from ``format=`` ("g2o" or "toro"), else from the file
  extension (``.g2o``, ``.graph``: g2o; ``.toro``: TORO), else from the
  first pose-graph tag. A tag of the other format is an error that says so.

Every mistake in the file is an :class:`~fglang.errors.FgError` located at
the file, line and column of the bad token (too few or too many numbers, a
token that is not a finite number or an integer id, a vertex defined twice,
an edge to an undefined vertex, an information matrix that is not positive
definite, 2-D and 3-D lines mixed, an empty file, a file that is not UTF-8
text); a whole file's mistakes are reported together.

This module needs numpy only (no JAX), so converting a file is quick.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fglang.compiler.ast import Span
from fglang.errors import Diagnostic, FgError
from fglang.io.pose_algebra import canonical, compose2, compose3, euler_to_quaternion, inverse2, inverse3

__all__ = [
    "FORMATS",
    "read_pose_graph",
    "parse_pose_graph",
    "format_of",
    "euler_to_quaternion",
    "to_json",
]

FORMATS = ("g2o", "toro")
EXTENSIONS = {".g2o": "g2o", ".graph": "g2o", ".toro": "toro"}
MAX_ERRORS = 20
"""Stop collecting after this many mistakes (a binary file would give thousands)."""


@dataclass(frozen=True)
class _Tag:
    format: str
    kind: str  # "vertex" | "edge"
    dim: int  # 2 | 3
    fields: tuple[str, ...]  # names of the numbers after the ids


_INFO2 = ("I11", "I12", "I13", "I22", "I23", "I33")
_INFO3 = tuple(f"I{r}{c}" for r in range(1, 7) for c in range(r, 7))
_SE2 = ("x", "y", "theta")
_DSE2 = ("dx", "dy", "dtheta")
_RPY = ("x", "y", "z", "roll", "pitch", "yaw")
_QUAT = ("x", "y", "z", "qx", "qy", "qz", "qw")

TAGS: dict[str, _Tag] = {
    "VERTEX_SE2": _Tag("g2o", "vertex", 2, _SE2),
    "EDGE_SE2": _Tag("g2o", "edge", 2, _DSE2 + _INFO2),
    "VERTEX_SE3:QUAT": _Tag("g2o", "vertex", 3, _QUAT),
    "EDGE_SE3:QUAT": _Tag("g2o", "edge", 3, _QUAT + _INFO3),
    "VERTEX2": _Tag("toro", "vertex", 2, _SE2),
    "EDGE2": _Tag("toro", "edge", 2, _DSE2 + _INFO2),
    "VERTEX": _Tag("toro", "vertex", 2, _SE2),  # TORO's older spelling of VERTEX2
    "EDGE": _Tag("toro", "edge", 2, _DSE2 + _INFO2),
    "VERTEX3": _Tag("toro", "vertex", 3, _RPY),
    "EDGE3": _Tag("toro", "edge", 3, _RPY + _INFO3),
}
_FORMAT_NAME = {"g2o": "g2o", "toro": "TORO"}

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_TOKEN = re.compile(r"\S+")
_Pos = tuple[int, int, int]  # a token's line, column and end column (a Span is made only for an error)


@dataclass
class _Vertex:
    vid: int
    values: list[float]
    line: int
    id_span: _Pos
    value_spans: list[_Pos]


@dataclass
class _Edge:
    src: int
    dst: int
    meas: list[float]
    info: list[float]
    line: int
    src_span: _Pos
    dst_span: _Pos
    meas_spans: list[_Pos]
    info_spans: list[_Pos]


class _Parser:
    def __init__(self, text: str, source: str, format: str | None, why: str) -> None:
        self.text = text
        self.source = source
        self.format = format
        self.why = why
        self.dim: int | None = None
        self.dim_line = 0
        self.diags: list[Diagnostic] = []
        self.dropped = 0
        self.vertices: dict[int, _Vertex] = {}
        self.edges: list[_Edge] = []
        self.fixed: list[tuple[int, _Pos]] = []
        self.unknown: dict[str, list[int]] = {}
        self.header: tuple[list[int], int] | None = None
        self.seen_pose_line = False
        self.reported_format = False
        self.reported_dim = False

    # -- diagnostics ---------------------------------------------------------

    def error(self, message: str, span: Span | _Pos | None, hint: str | None = None) -> None:
        if isinstance(span, tuple):
            span = Span(self.source, span[0], span[1], span[0], span[2])
        if len(self.diags) < MAX_ERRORS:
            self.diags.append(Diagnostic(message, span, hint))
        else:
            self.dropped += 1

    def fail(self) -> None:
        if not self.diags:
            return
        diags = sorted(self.diags, key=lambda d: (d.span.line, d.span.col) if d.span else (0, 0))
        if self.dropped:  # said under the last one shown, where a reader stops
            note = f"{self.dropped} more mistake(s) not shown; fix these first"
            last = diags[-1]
            diags[-1] = dataclasses.replace(last, hint=f"{last.hint}\n  {note}" if last.hint else note)
        raise FgError(diags, {self.source: self.text})

    # -- tokens --------------------------------------------------------------

    def integer(self, tok: str, span: _Pos, what: str) -> int | None:
        if _INT.fullmatch(tok):
            return int(tok)
        self.error(f"expected an integer {what}, got {tok!r}", span)
        return None

    def number(self, tok: str, span: _Pos, what: str) -> float | None:
        if _FLOAT.fullmatch(tok):
            v = float(tok)
            if math.isfinite(v):
                return v
            self.error(f"{what} must be a finite number, got {tok!r} (too large for a float)", span)
            return None
        self.error(f"expected a number for {what}, got {tok!r}", span)
        return None

    # -- lines ---------------------------------------------------------------

    def run(self) -> None:
        for lineno, line in enumerate(self.text.splitlines(), start=1):
            toks = [(m.group(), (lineno, m.start() + 1, m.end() + 1)) for m in _TOKEN.finditer(line)]
            if not toks or toks[0][0].startswith("#"):
                continue
            tag, tag_span = toks[0]
            if tag in TAGS:
                self.pose_line(TAGS[tag], tag, toks, lineno)
            elif tag == "FIX":
                for tok, sp in toks[1:]:
                    vid = self.integer(tok, sp, "vertex id after FIX")
                    if vid is not None:
                        self.fixed.append((vid, sp))
            elif tag.startswith("PARAMS_"):
                continue
            elif not self.seen_pose_line and self.header is None and len(toks) <= 2 and all(
                _INT.fullmatch(t) for t, _ in toks
            ):
                self.header = ([int(t) for t, _ in toks], lineno)
            else:
                self.unknown.setdefault(tag, []).append(lineno)

    def pose_line(self, tag: _Tag, name: str, toks: list[tuple[str, _Pos]], lineno: int) -> None:
        tag_span = toks[0][1]
        if self.format is None:
            self.format, self.why = tag.format, f"from its first tag {name!r}, line {lineno}"
        elif tag.format != self.format:
            if not self.reported_format:  # once: every line of the file would say it
                self.reported_format = True
                other = tag.format
                self.error(
                    f"{name!r} is a {_FORMAT_NAME[other]} tag, but {self.source} is read as "
                    f"{_FORMAT_NAME[self.format]} ({self.why})",
                    tag_span,
                    f"read it as {_FORMAT_NAME[other]}: format={other!r} in Python, --format {other} "
                    "on the command line",
                )
            return
        if self.dim is None:
            self.dim, self.dim_line = tag.dim, lineno
        elif tag.dim != self.dim:
            if not self.reported_dim:
                self.reported_dim = True
                self.error(
                    f"{name!r} is a {tag.dim}-D line, but this file's first pose line (line {self.dim_line}) "
                    f"is {self.dim}-D; a file holds one kind of graph",
                    tag_span,
                )
            return
        self.seen_pose_line = True
        ids = ("id",) if tag.kind == "vertex" else ("i", "j")
        n_ids = len(ids)
        names = ids + tag.fields
        want, have = len(names), len(toks) - 1
        if have != want:
            if tag.kind == "edge" and tag.dim == 3:
                layout = " ".join(names[:-21]) + " and the 21 information entries I11 I12 ... I66"
            else:
                layout = " ".join(names)
            if have < want:
                last = toks[-1][1]
                self.error(
                    f"{name} needs {want} numbers ({layout}), got {have}: {names[have]} and on are missing",
                    (lineno, last[2], last[2] + 1),
                )
            else:
                first, last = toks[1 + want][1], toks[-1][1]
                self.error(f"{name} takes {want} numbers ({layout}), got {have}",
                           (lineno, first[1], last[2]))  # fmt: skip
            return
        errors_before = len(self.diags)
        id_vals = [self.integer(t, sp, "vertex id") for t, sp in toks[1 : 1 + n_ids]]
        values = [self.number(t, sp, f) for (t, sp), f in zip(toks[1 + n_ids :], tag.fields)]
        if len(self.diags) != errors_before:
            return
        if tag.kind == "vertex":
            vid, id_span = id_vals[0], toks[1][1]
            if vid in self.vertices:
                self.error(f"vertex {vid} is defined twice (first at line {self.vertices[vid].line})", id_span)
                return
            self.vertices[vid] = _Vertex(vid, values, lineno, id_span, [sp for _, sp in toks[2:]])
        else:
            k = len(tag.fields) - (6 if tag.dim == 2 else 21)
            spans = [sp for _, sp in toks[3:]]
            self.edges.append(
                _Edge(id_vals[0], id_vals[1], values[:k], values[k:], lineno, toks[1][1], toks[2][1],
                      spans[:k], spans[k:])  # fmt: skip
            )


# ----------------------------------------------------------------------------
# Assembly: ids, poses, information.


def _pose7(p: _Parser, values: list[float], spans: list[_Pos]) -> list[float]:
    """A 3-D pose of the file as [x y z qx qy qz qw]."""
    if p.format == "toro":
        return values[:3] + euler_to_quaternion(*values[3:6])
    if math.sqrt(sum(c * c for c in values[3:7])) < 1e-12:
        first, last = spans[3], spans[6]
        p.error("the quaternion (qx qy qz qw) is zero; it must be a rotation",
                (first[0], first[1], last[2]))  # fmt: skip
        return values[:3] + [0.0, 0.0, 0.0, 1.0]
    return values[:3] + canonical(values[3:7])


def _upper_to_matrix(upper: np.ndarray, n: int) -> np.ndarray:
    """[M, n(n+1)/2] row-major upper triangles -> [M, n, n] symmetric matrices."""
    r, c = np.triu_indices(n)
    out = np.zeros((upper.shape[0], n, n))
    out[:, r, c] = upper
    out[:, c, r] = upper
    return out


def _assemble(p: _Parser, order: str) -> tuple[dict[str, Any], dict[str, Any]]:
    dim = p.dim
    if p.vertices:
        ids = list(p.vertices)
    else:
        ids = list(dict.fromkeys(v for e in p.edges for v in (e.src, e.dst)))
    if order == "id":
        ids.sort()
    index = {vid: k for k, vid in enumerate(ids)}
    vertex_tag = next(n for n, t in TAGS.items() if t.format == p.format and t.dim == dim and t.kind == "vertex")

    for e in p.edges:
        for vid, sp in ((e.src, e.src_span), (e.dst, e.dst_span)):
            if vid not in index:
                p.error(f"edge {e.src}->{e.dst} refers to undefined vertex {vid} (no {vertex_tag} line declares it)",
                        sp)  # fmt: skip
    for vid, sp in p.fixed:
        if vid not in index:
            p.error(f"FIX names undefined vertex {vid}", sp)

    n_info = 3 if dim == 2 else 6
    upper = np.array([e.info for e in p.edges], dtype=np.float64).reshape(len(p.edges), n_info * (n_info + 1) // 2)
    info = _upper_to_matrix(upper, n_info)
    min_eig = np.linalg.eigvalsh(info)[:, 0] if len(p.edges) else np.zeros(0)
    for k in np.flatnonzero(~(min_eig > 0.0)):
        e = p.edges[k]
        first, last = e.info_spans[0], e.info_spans[-1]
        p.error(
            f"edge {e.src}->{e.dst}: its information matrix is not positive definite "
            f"(smallest eigenvalue {min_eig[k]:.6g})",
            (e.line, first[1], last[2]),
            "the last numbers of an edge line are the upper triangle of the information matrix "
            f"({' '.join(_INFO2) if dim == 2 else 'I11 I12 ... I16 I22 ... I66'}), row by row",
        )
    if dim == 2:
        off = (1, 2, 4)  # I12 I13 I23 in the upper triangle
        for k, e in enumerate(p.edges):
            bad = [j for j in off if e.info[j] != 0.0]
            if bad and min_eig[k] > 0.0:
                p.error(
                    f"edge {e.src}->{e.dst} has a non-diagonal information matrix "
                    f"({', '.join(f'{_INFO2[j]}={e.info[j]:g}' for j in bad)}): the 2-D models take per-axis "
                    "standard deviations (data sd[M]: real[3]), which cannot hold a correlation",
                    e.info_spans[bad[0]],
                    "dropping the off-diagonal entries would change the cost; a model that takes the full "
                    "information matrix is needed for this file",
                )
    p.fail()

    meas = [e.meas if dim == 2 else _pose7(p, e.meas, e.meas_spans) for e in p.edges]
    if p.vertices:  # the initial guess
        if dim == 2:
            poses = [p.vertices[v].values for v in ids]
        else:
            poses = [_pose7(p, p.vertices[v].values, p.vertices[v].value_spans) for v in ids]
    else:
        p.fail()
        poses = _chain(p, ids, index, meas)
    p.fail()

    data: dict[str, Any] = {
        "N": len(ids),
        "M": len(p.edges),
        "src": [index[e.src] for e in p.edges],
        "dst": [index[e.dst] for e in p.edges],
        "z": meas,
    }
    if dim == 2:
        data["sd"] = [[1.0 / math.sqrt(e.info[j]) for j in (0, 3, 5)] for e in p.edges]
    else:
        data["info"] = info.tolist()
        # where examples/pose_graph_3d.fg's anchor holds pose 0: the initial guess's pose 0
        data["origin"] = list(poses[0]) if poses else [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    _warn(p, ids, index)
    return data, {"pose": poses}


def _chain(p: _Parser, ids: list[int], index: dict[int, int], meas: list[list[float]]) -> list[list[float]]:
    """Initial poses from the odometry: pose 0 at the origin, then edge k -> k+1."""
    compose: Callable = compose2 if p.dim == 2 else compose3
    inverse: Callable = inverse2 if p.dim == 2 else inverse3
    forward: dict[int, list[float]] = {}
    backward: dict[int, list[float]] = {}
    for e, z in zip(p.edges, meas):
        a, b = index[e.src], index[e.dst]
        if b == a + 1:
            forward.setdefault(a, z)
        elif a == b + 1:
            backward.setdefault(b, z)
    pose = [0.0, 0.0, 0.0] if p.dim == 2 else [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    poses = [pose]
    for k in range(len(ids) - 1):
        if k in forward:
            d = forward[k]
        elif k in backward:
            d = inverse(backward[k])
        else:
            p.error(
                f"the file has no vertex lines, so the initial guess chains the odometry, but no edge joins "
                f"vertex {ids[k]} (pose {k}) to vertex {ids[k + 1]} (pose {k + 1})",
                Span(p.source, 0, 0, 0, 0),
                "add vertex lines with an initial guess, or an odometry edge between consecutive poses",
            )
            return []
        pose = compose(pose, d)
        poses.append(pose)
    return poses


def _warn(p: _Parser, ids: list[int], index: dict[int, int]) -> None:
    for tag, lines in p.unknown.items():
        more = f" and {len(lines) - 1} more line(s)" if len(lines) > 1 else ""
        warnings.warn(
            f"{p.source}:{lines[0]}: skipped unknown tag {tag!r}{more} "
            f"(this reader knows {', '.join(n for n, t in TAGS.items() if t.format == p.format)}, FIX)",
            stacklevel=4,
        )
    others = sorted({index[v] for v, _ in p.fixed} - {0})
    if others:
        warnings.warn(
            f"{p.source}: FIX names pose(s) {', '.join(map(str, others[:5]))}{' ...' if len(others) > 5 else ''}; "
            "FIX lines are not data: the models fix the gauge with a prior on pose 0 only",
            stacklevel=4,
        )
    if p.header is not None:
        counts, line = p.header
        have = [len(ids), len(p.edges)]
        if counts not in (have, have[::-1], have[:1], have[1:]):
            warnings.warn(
                f"{p.source}:{line}: the count line says {' '.join(map(str, counts))}, "
                f"but the file has {have[0]} vertices and {have[1]} edges",
                stacklevel=4,
            )


# ----------------------------------------------------------------------------
# Entry points.


def format_of(path: str | Path) -> str | None:
    """The format a file's extension implies (``.g2o``, ``.graph``: g2o; ``.toro``: toro), else None."""
    return EXTENSIONS.get(Path(path).suffix.lower())


def _check_args(format: str | None, order: str) -> None:
    if format is not None and format not in FORMATS:
        raise FgError([Diagnostic(f"format must be one of {', '.join(FORMATS)}, got {format!r}", None)])
    if order not in ("file", "id"):
        raise FgError([Diagnostic(f"order must be 'file' or 'id', got {order!r}", None)])


def parse_pose_graph(
    text: str, source: str = "<string>", format: str | None = None, order: str = "file", *, _why: str = ""
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a pose graph from its text; ``source`` names it in errors. See :func:`read_pose_graph`."""
    _check_args(format, order)
    here = Span(source, 0, 0, 0, 0)
    if not text.strip():
        raise FgError([Diagnostic("empty pose-graph file", here)])
    p = _Parser(text, source, format, _why or (f"format={format!r}" if format else ""))
    p.run()
    p.fail()
    if not p.vertices and not p.edges:
        known = ", ".join(TAGS)
        raise FgError([Diagnostic(f"no pose-graph lines (vertices or edges) in {source}", here,
                                  f"this reader knows {known}")])  # fmt: skip
    return _assemble(p, order)


def read_pose_graph(
    path: str | Path, format: str | None = None, order: str = "file"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a g2o or TORO pose-graph file into ``(data, init)``.

    ``data`` is in the layout of the 2-D models (``examples/pose_graph_2d.fg``,
    ``examples/m3500.fg``: ``N M src dst z sd``) or, for a 3-D graph, ``N M
    src dst z[M, 7] info[M, 6, 6] origin[7]`` (``origin``: init's pose 0, the
    anchor of ``examples/pose_graph_3d.fg``); ``init`` is ``{"pose": ...}``, the
    file's vertices (or chained odometry when it has none). ``format`` is
    "g2o" or "toro" (default: from the extension, else the first tag);
    ``order="id"`` numbers vertices by increasing id instead of file order.
    The module docstring says every convention; mistakes raise a located
    :class:`~fglang.errors.FgError`.
    """
    path = Path(path)
    _check_args(format, order)
    why = f"format={format!r}" if format else ""
    if format is None and format_of(path):
        format, why = format_of(path), f"from its extension {path.suffix}"
    if not path.exists():
        raise FgError([Diagnostic(f"pose-graph file not found: {path}", None)])
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise FgError([Diagnostic(f"cannot read pose-graph file: {err.strerror or err}", Span(source, 0, 0, 0, 0))]) \
            from None  # fmt: skip
    text = _decode(raw, source)
    return parse_pose_graph(text, source, format, order, _why=why)


def _decode(raw: bytes, source: str) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
        bad = text.find("\x00")
        if bad < 0:
            return text
        what = "a NUL character"
        line_start = text.rfind("\n", 0, bad) + 1
        lineno, col = text.count("\n", 0, bad) + 1, bad - line_start + 1
    except UnicodeDecodeError as err:
        what = f"the byte 0x{raw[err.start]:02x}, which is not UTF-8"
        text = raw.decode("utf-8", errors="replace")
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        lineno = raw.count(b"\n", 0, err.start) + 1
        col = len(raw[line_start : err.start].decode("utf-8", errors="replace")) + 1
    raise FgError(
        [Diagnostic(f"not a text file: {what} at line {lineno}", Span(source, lineno, col, lineno, col + 1),
                    "a pose-graph file is UTF-8 (or ASCII) text: g2o or TORO lines")],  # fmt: skip
        {source: text.replace("\x00", "\ufffd")},
    )


def to_json(obj: dict[str, Any]) -> str:
    """CmdStan-layout JSON with one top-level key per line; floats exact (Python's repr)."""
    items = [f"  {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in obj.items()]
    return "{\n" + ",\n".join(items) + "\n}\n"
