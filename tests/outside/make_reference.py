"""Write the outside models' data and reference summaries from posteriordb.

    python tests/outside/make_reference.py PATH/TO/posteriordb[.git] [NAME ...]

For each model of ``MODELS`` (fglang file -> posteriordb posterior), reads the
posterior's data (``posterior_database/data/data/*.json.zip``) and its
reference draws (``posterior_database/reference_posteriors/draws/draws/
*.json.zip``: 10 chains x 1000 thinned Stan draws) from the repository with
``git show``, and writes next to this file

* ``NAME.data.json``: the posterior's data, only the keys the model declares
  (``NAME.data.json.gz`` for the large ones of ``GZIP``);
* ``NAME.reference.json``: per scalar parameter the mean and sd of the
  reference draws (0-based names: Stan's ``beta[1]`` is ``beta[0]``), the
  draw count, and where they came from. The raw draws are not stored.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# fglang model (NAME.fg) -> posteriordb posterior name
MODELS = {
    "eight_schools_noncentered": "eight_schools-eight_schools_noncentered",
    "kidscore_momiq": "kidiq-kidscore_momiq",
    "kidscore_interaction": "kidiq-kidscore_interaction",
    "logearn_height": "earnings-logearn_height",
    "logearn_interaction_z": "earnings-logearn_interaction_z",
    "logmesquite": "mesquite-logmesquite",
    "arK": "arK-arK",
    "nes": "nes1972-nes",
    "blr": "sblrc-blr",
    "low_dim_gauss_mix": "low_dim_gauss_mix-low_dim_gauss_mix",
    "kilpisjarvi": "kilpisjarvi_mod-kilpisjarvi",
    "gp_regr": "gp_pois_regr-gp_regr",
    # written with the recurrence scan[...] (docs/language.md); in recurrences/,
    # out of test_outside_models' sweep (their fits are in test_scan.py)
    "garch11": "garch-garch11",
    "arma11": "arma-arma11",
    "hmm_example": "hmm_example-hmm_example",
    # written with the linear-algebra built-ins; in linalg/ (fitted in test_linalg.py)
    "gp_pois_regr": "gp_pois_regr-gp_pois_regr",
    # round 2 (round2/, fitted in test_outside_round2.py): more of posteriordb's
    # posteriors with reference draws, translated without tuning anything
    "diamonds": "diamonds-diamonds",
    "earn_height": "earnings-earn_height",
    "log10earn_height": "earnings-log10earn_height",
    "logearn_logheight_male": "earnings-logearn_logheight_male",
    "kidscore_mom_work": "kidiq_with_mom_work-kidscore_mom_work",
    "kidscore_interaction_c2": "kidiq_with_mom_work-kidscore_interaction_c2",
    "mesquite": "mesquite-mesquite",
    "logmesquite_logvash": "mesquite-logmesquite_logvash",
    "hmm_drive_0": "bball_drive_event_0-hmm_drive_0",
    "hmm_drive_1": "bball_drive_event_1-hmm_drive_1",
    # round 3 (round3/, fitted in test_outside_round3.py): the rest of posteriordb's
    # reference posteriors that are not ODEs, and two more data sets of earlier models
    "accel_gp": "mcycle_gp-accel_gp",
    "kidscore_momhs": "kidiq-kidscore_momhs",
    "kidscore_momhsiq": "kidiq-kidscore_momhsiq",
    "kidscore_interaction_c": "kidiq_with_mom_work-kidscore_interaction_c",
    "kidscore_interaction_z": "kidiq_with_mom_work-kidscore_interaction_z",
    "logearn_interaction": "earnings-logearn_interaction",
    "logearn_height_male": "earnings-logearn_height_male",
    "logmesquite_logvolume": "mesquite-logmesquite_logvolume",
    "logmesquite_logvas": "mesquite-logmesquite_logvas",
    "blr_sblri": "sblri-blr",
    "nes2000": "nes2000-nes",
}


# models kept in a folder below this one
FOLDER = {"garch11": "recurrences", "arma11": "recurrences", "hmm_example": "recurrences", "gp_pois_regr": "linalg"}
FOLDER.update({name: "round2" for name in list(MODELS)[list(MODELS).index("diamonds"):list(MODELS).index("accel_gp")]})
FOLDER.update({name: "round3" for name in list(MODELS)[list(MODELS).index("accel_gp"):]})

# posteriors whose draws file this checkout lacks (a large file absent from the
# mirror): their mean and sd come from posteriordb's summary statistics of the
# same reference draws instead
FROM_SUMMARIES = {"mcycle_gp-accel_gp"}

# data too large to keep as plain JSON (diamonds: 5000 x 25, 2.3 MB): written
# gzipped as NAME.data.json.gz
GZIP = {"diamonds"}


def _show(repo: Path, path: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{path}"], check=True, capture_output=True).stdout


def _unzip(blob: bytes):
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        return json.loads(z.read(z.namelist()[0]))


def zero_based(name: str) -> str:
    m = re.fullmatch(r"(\w+)\[([\d,\s]+)\]", name)
    if not m:
        return name
    idx = ", ".join(str(int(i) - 1) for i in m.group(2).split(","))
    return f"{m.group(1)}[{idx}]"


def _from_draws(repo: Path, posterior: str) -> tuple[dict, int, str | None]:
    chains = _unzip(_show(repo, f"posterior_database/reference_posteriors/draws/draws/{posterior}.json.zip"))
    params = {}
    for p in chains[0]:
        x = np.concatenate([np.asarray(c[p], dtype=float) for c in chains])
        params[zero_based(p)] = {"mean": float(x.mean()), "sd": float(x.std(ddof=1))}
    return params, int(sum(len(c[next(iter(c))]) for c in chains)), None


def _from_summaries(repo: Path, posterior: str) -> tuple[dict, int, str]:
    """Mean and sd from posteriordb's summary statistics of the same reference
    draws (mean and mean of squares): sd = sqrt(n / (n - 1) (E x^2 - (E x)^2))."""
    base = "posterior_database/reference_posteriors/summary_statistics"
    m = json.loads(_show(repo, f"{base}/mean_value/mean_value/{posterior}.json"))
    m2 = json.loads(_show(repo, f"{base}/mean_squared_value/mean_squared_value/{posterior}.json"))
    n = json.loads(_show(repo, f"{base}/mean_value/info/{posterior}.info.json"))["diagnostics"]["ndraws"]
    assert m["names"] == m2["names"]
    params = {}
    for p, mean, sq in zip(m["names"], m["mean_value"], m2["mean_squared_value"]):
        params[zero_based(p)] = {"mean": float(mean), "sd": float(np.sqrt(n / (n - 1) * (sq - mean**2)))}
    return params, int(n), "summary_statistics (mean_value, mean_squared_value)"


def main(repo: Path, only: list[str] | None = None) -> None:
    import fglang

    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()
    for name, posterior in MODELS.items():
        if only and name not in only:
            continue
        info = json.loads(_show(repo, f"posterior_database/posteriors/{posterior}.json"))
        data = _unzip(_show(repo, f"posterior_database/data/data/{info['data_name']}.json.zip"))
        here = HERE / FOLDER.get(name, "")
        declared = fglang.load(here / f"{name}.fg").ir.data
        data = {k: v for k, v in data.items() if k in declared}
        text = json.dumps(data, separators=(",", ":")) + "\n"
        if name in GZIP:
            (here / f"{name}.data.json.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
        else:
            (here / f"{name}.data.json").write_text(text)
        if posterior in FROM_SUMMARIES:
            params, draws, origin = _from_summaries(repo, posterior)
        else:
            params, draws, origin = _from_draws(repo, posterior)
        ref = {
            "posteriordb": posterior,
            "commit": commit,
            "source": info.get("urls"),
            "draws": draws,
            "params": params,
        }
        if origin:
            ref["from"] = origin
        (here / f"{name}.reference.json").write_text(json.dumps(ref, indent=1) + "\n")
        print(f"{name}: {len(params)} parameters, {ref['draws']} reference draws")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
