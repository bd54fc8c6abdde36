"""ArviZ's InferenceData layout in NetCDF, written and read with h5netcdf alone.

Why: ``import arviz`` costs ~3.5 s CPU (it imports matplotlib, scipy.stats
and all its plots), ``import xarray`` ~0.9 s (pandas), ``import h5netcdf``
~0.2 s: written through ArviZ, ``fglang fit -o post.nc`` spent longer writing
the file (3.0 s) than the whole warm NUTS fit before it, and ``fglang
summary post.nc`` as long reading it. The file is the one ``az.from_dict(...)
.to_netcdf(engine="h5netcdf")`` writes (one NetCDF group per InferenceData
group, ``chain`` and ``draw`` coordinates, ``<name>_dim_<i>`` dimensions,
gzip on every variable, booleans as int8 marked ``dtype: bool``, floats with
a NaN fill value, as xarray encodes them), so ArviZ and xarray read it as
their own; ``Posterior.to_arviz`` builds its InferenceData from the same
`Group`s (`to_xarray`). The tests compare all three with ArviZ's own
conversion.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

DRAW_DIMS = ("chain", "draw")
GZIP_LEVEL = 4  # xarray's zlib default, which ArviZ asks for


class Group(NamedTuple):
    """One InferenceData group: its variables (name -> (dims, values)), the
    coordinates of its dimensions (name -> values) and its attributes."""

    variables: dict[str, tuple[tuple[str, ...], np.ndarray]]
    coords: dict[str, np.ndarray]
    attrs: dict[str, Any]

    def values(self, name: str) -> np.ndarray:
        return self.variables[name][1]


def _attrs() -> dict[str, Any]:
    """The attributes ArviZ's ``make_attrs`` gives each group it converts."""
    attrs = {"created_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    try:
        attrs["arviz_version"] = metadata.version("arviz")
    except metadata.PackageNotFoundError:
        pass
    return attrs


def draws_group(values: Mapping[str, Any]) -> Group:
    """A group of draws (``posterior``, ``sample_stats``): each value
    ``[chain, draw, *shape]`` (ArviZ's reading of fewer axes: one is the
    draws of one chain, none one draw of one chain)."""
    return _group(values, DRAW_DIMS)


def data_group(values: Mapping[str, Any]) -> Group:
    """A group of values with no chain or draw (``observed_data``,
    ``constant_data``); a scalar is stored as one element, as ArviZ stores it."""
    return _group(values, ())


def arrays_group(values: Mapping[str, tuple[tuple[str, ...], Any]], attrs: Mapping[str, Any]) -> Group:
    """A group of fglang's own (``gaussian_marginals``): named dims, no coordinates."""
    return Group({k: (tuple(d), np.asarray(v)) for k, (d, v) in values.items()}, {}, dict(attrs))


def _group(values: Mapping[str, Any], lead: tuple[str, ...]) -> Group:
    variables, coords = {}, {}
    for name, value in values.items():
        a = np.asarray(value)
        if lead:
            a = a.reshape(1, 1) if a.ndim == 0 else a[None, :] if a.ndim == 1 else a
        elif a.ndim == 0:
            a = a.reshape(1)
        dims = lead + tuple(f"{name}_dim_{i}" for i in range(a.ndim - len(lead)))
        for d, n in zip(dims, a.shape, strict=True):
            coords.setdefault(d, np.arange(n))
        variables[name] = (dims, a)
    return Group(variables, coords, _attrs())


def to_xarray(group: Group):
    """The group as the ``xarray.Dataset`` ArviZ holds (for ``to_arviz``)."""
    import xarray as xr

    coords = {d: xr.IndexVariable((d,), c) for d, c in group.coords.items()}
    arrays = {k: xr.DataArray(v, dims=d, coords={c: coords[c] for c in d if c in coords})
              for k, (d, v) in group.variables.items()}
    return xr.Dataset(arrays, attrs=dict(group.attrs))


def _write_variable(g, name: str, dims: tuple[str, ...], a: np.ndarray) -> None:
    attrs: dict[str, Any] = {}
    fill = None
    if a.dtype == bool:
        a, attrs["dtype"] = a.astype(np.int8), "bool"
    elif a.dtype.kind in "fc":
        fill = np.nan
    compress = {"compression": "gzip", "compression_opts": GZIP_LEVEL} if a.ndim and a.size else {}  # as xarray
    v = g.create_variable(name, dims, data=a, fillvalue=fill, **compress)
    v.attrs.update(attrs)


def write_groups(path: str | Path, groups: Mapping[str, Group]) -> None:
    """Write ``groups`` (in the order given) as ``InferenceData.to_netcdf(engine=
    "h5netcdf")`` lays them out. Callers write to a temporary path
    (`io.atomic.write_atomic`)."""
    import h5netcdf

    with h5netcdf.File(path, mode="w") as f:
        for name, group in groups.items():
            g = f.create_group(name)
            sizes: dict[str, int] = {}
            for dims, a in group.variables.values():
                sizes.update(zip(dims, a.shape, strict=True))
            g.dimensions = sizes
            for d, c in group.coords.items():
                _write_variable(g, d, (d,), np.asarray(c))
            for k, (dims, a) in group.variables.items():
                _write_variable(g, k, dims, a)
            g.attrs.update(group.attrs)


def _decoded(v) -> np.ndarray:
    a = np.asarray(v[...])
    if v.attrs.get("dtype") == "bool":
        a = a.astype(bool)
    return a


def read_groups(path: str | Path) -> dict[str, Group]:
    """Every group of a NetCDF file, read into memory, as ``arviz.from_netcdf``
    reads them: a variable named as a dimension is its coordinate, the rest
    are the group's variables."""
    import h5netcdf

    out = {}
    with h5netcdf.File(path, mode="r") as f:
        for name, g in f.groups.items():
            dims = set(g.dimensions)
            variables, coords = {}, {}
            for k, v in g.variables.items():
                if k in dims:
                    coords[k] = _decoded(v)
                else:
                    variables[k] = (tuple(v.dimensions), _decoded(v))
            attrs = {k: (a.item() if isinstance(a, np.generic) else a) for k, a in g.attrs.items()}
            out[name] = Group(variables, coords, attrs)
    return out
