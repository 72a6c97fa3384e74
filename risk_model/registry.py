"""Model versions on disk, one directory each, and an atomic champion pointer per prediction point.

    <root>/<point>/versions/<version>/model.txt       LightGBM's own text format (never pickle)
                                      metadata.json   contract, levels, calibrator, metrics, versions
                                      reference.parquet  training sample for drift reports
                                      model_card.md
    <root>/<point>/champion.json                      {"version": ...}, replaced atomically

A version is written into a temporary directory, every file and the directory fsynced, and
renamed into place (the parent fsynced after), so a crash never leaves half a model; the champion
pointer is swapped with `os.replace`. `metadata.json` records the sha256 of `model.txt` and
`reference.parquet`, and `load` checks them before LightGBM reads the model: LightGBM aborts the
whole process (SIGABRT) on a damaged text model instead of raising.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np
import pandas as pd

from risk_model.calibration import WORDS, Calibrator
from risk_model.config import Config, DatasetContract
from risk_model.evaluate import mean_over_cohorts
from risk_model.labels import display_name
from risk_model.linear import LinearPart
from risk_model.private import private_dir

if TYPE_CHECKING:
    from risk_model.train import TrainResult

LIBRARIES = ("lightgbm", "scikit-learn", "pandas", "numpy")
CHECKSUMMED = ("model.txt", "reference.parquet")


class RegistryError(RuntimeError):
    """A model that is missing or does not fit the data it is asked to score."""


@dataclass
class Bundle:
    """A loaded model version: what scoring and reports need."""

    version: str
    path: Path
    booster: lgb.Booster
    calibrator: Calibrator
    metadata: dict

    @property
    def features(self) -> list[str]:
        return self.metadata["features"]

    @property
    def levels(self) -> dict[str, list[str]]:
        return self.metadata["category_levels"]

    @property
    def fill(self) -> dict[str, float]:
        return self.metadata.get("missing_fill", {})  # versions saved before it existed: none

    @property
    def mix(self) -> dict[str, dict[str, float]]:
        return self.metadata.get("category_mix", {})  # versions saved before it: an unknown category as missing

    @property
    def linear(self) -> tuple[LinearPart | None, float]:
        """The linear part blended with LightGBM and LightGBM's weight; (None, 1.0) for trees alone."""
        lin = self.metadata.get("linear")
        return (LinearPart.from_dict(lin), float(lin["blend"])) if lin else (None, 1.0)

    def reference(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "reference.parquet")

    def model_card(self) -> str:
        return (self.path / "model_card.md").read_text()


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=_json_default, allow_nan=True))


def _atomic_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, default=_json_default)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    """Flush a file's or a directory's entries to disk (a rename is durable only once its directory is)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _contract_part(c: DatasetContract) -> dict:
    return {
        "id_column": c.id_column,
        "cohort_column": c.cohort_column,
        "numeric_features": c.numeric_features,
        "categorical_features": c.categorical,
        "sensitive_columns": c.sensitive_columns,
        "outcome_column": c.outcome_column,
        "at_risk_values": c.at_risk_values,
    }


class Registry:
    """Model versions under `root`, grouped by prediction point."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._verified: dict[Path, tuple[int, int]] = {}  # pre-checksum versions that loaded in a subprocess

    def _point(self, point: str) -> Path:
        return self.root / point

    def versions(self, point: str = "default") -> list[str]:
        d = self._point(point) / "versions"
        return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")) if d.exists() else []

    def points(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / "versions").is_dir()) if self.root.exists() else []

    def find(self, fingerprint: str, settings_hash: str, point: str = "default") -> str | None:
        """The version already trained on exactly this data with exactly these settings, if any."""
        for version in self.versions(point):
            try:
                md = json.loads((self._point(point) / "versions" / version / "metadata.json").read_text())
            except (OSError, ValueError):
                continue  # a damaged version is never reused; `load` says what is wrong with it
            if md["data_fingerprint"] == fingerprint and md.get("settings_hash") == settings_hash:
                return version
        return None

    def save(self, result: TrainResult, config: Config, *, point: str = "default") -> str:
        """Write a new version directory atomically and return its version id.

        Training again on the same data with the same settings returns the existing version."""
        digest = settings_hash(config)
        existing = self.find(result.fingerprint, digest, point)
        if existing:
            return existing
        now = datetime.now(UTC)
        version = f"{now:%Y%m%d-%H%M%S}-{result.fingerprint[:8]}"
        versions = self._point(point) / "versions"
        private_dir(versions)  # the runtime folder, when this makes it, is the owner's only
        tmp = Path(tempfile.mkdtemp(dir=versions, prefix=".tmp-"))
        m = result.model
        m.booster.save_model(str(tmp / "model.txt"))
        if result.reference is None:
            raise ValueError("a TrainResult without its reference sample cannot be saved")
        result.reference.to_parquet(tmp / "reference.parquet", index=False)
        metadata = {
            "version": version,
            "point": point,
            "created_at": now.isoformat(),
            "contract": _contract_part(config.dataset),
            "features": list(config.dataset.features),  # as written; LightGBM's own names differ (features.py)
            "category_levels": m.levels,
            "missing_fill": m.fill,
            "category_mix": m.mix,
            "feature_labels": {f: config.dataset.label(f) for f in config.dataset.features},
            "value_labels": config.dataset.value_labels,  # words for coded values: factor texts (score.describer)
            "params": {k: v for k, v in m.params.items()},
            "n_trees": m.n_trees,
            "cv_folds": m.cv_folds,
            "search": m.search,
            "calibrator": {"method": m.calibrator.method, "params": m.calibrator.params},
            "family": m.family,
            "linear": {"blend": m.blend, **m.linear.to_dict()} if m.linear is not None else None,
            "training_cohorts": result.training_cohorts,
            "n_training_rows": int(len(m.oof)),
            "top_k_percent": config.training.top_k_percent,
            "metrics": result.metrics,
            "summary": result.summary,
            "libraries": {lib: pkg_version(lib) for lib in LIBRARIES},
            "data_fingerprint": result.fingerprint,
            "settings_hash": digest,
        }
        metadata["checksums"] = {name: sha256_file(tmp / name) for name in CHECKSUMMED}
        _write_json(tmp / "metadata.json", metadata)
        (tmp / "model_card.md").write_text(model_card(metadata))
        for f in tmp.iterdir():
            _fsync(f)
        _fsync(tmp)
        final = versions / version
        os.rename(tmp, final)
        _fsync(versions)
        return version

    def champion(self, point: str = "default") -> str | None:
        """The champion version of `point`, None when none was promoted; raise if the pointer is damaged."""
        pointer = self._point(point) / "champion.json"
        if not pointer.exists():
            return None
        try:
            version = json.loads(pointer.read_text())["version"]
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(
                f"{pointer}: the champion pointer is damaged ({type(exc).__name__}: {exc}). " + self._fix(point)
            ) from None
        if not isinstance(version, str) or not version:
            raise RegistryError(f"{pointer}: the champion pointer names no version. " + self._fix(point))
        return version

    def _fix(self, point: str, but: str | None = None) -> str:
        """What to do about a damaged or missing model of `point`."""
        others = [v for v in self.versions(point) if v != but]
        promote = (
            f"or promote another version: `student-risk promote VERSION --point {point} --home HOME` "
            f"(versions here: {', '.join(others[-5:])})"
            if others
            else "(no other version to promote)"
        )
        return f"Fix: retrain (`student-risk train HISTORY -c SETTINGS --force`), {promote}."

    def promote(self, version: str, *, point: str = "default", force: bool = False) -> tuple[bool, str]:
        """Make `version` champion if it is at least as good as the current one on the same
        validation cohorts (mean backtest AUC, else CV AUC), or if forced. Returns (promoted, why)."""
        new = self.load(version, point=point).metadata
        try:
            current = self.champion(point)
        except RegistryError:
            if not force:
                raise
            current = None  # a damaged pointer is what a forced promotion repairs
        if current is None or force or current == version:
            why = "forced" if force and current else "no champion yet" if current is None else "already champion"
            _atomic_json(self._point(point) / "champion.json", {"version": version})
            return True, why
        old = self.load(current, point=point).metadata
        kind = "backtest" if new["metrics"]["backtest"] and old["metrics"]["backtest"] else "cv"
        common = sorted(set(new["metrics"][kind]["lightgbm"]) & set(old["metrics"][kind]["lightgbm"]) - {"all"})
        if not common:
            _atomic_json(self._point(point) / "champion.json", {"version": version})
            return True, "no validation cohorts in common with the old champion; newest model promoted"
        new_auc = mean_over_cohorts(new["metrics"][kind]["lightgbm"], "roc_auc", common)
        old_auc = mean_over_cohorts(old["metrics"][kind]["lightgbm"], "roc_auc", common)
        detail = f"{kind} AUC on {', '.join(common)}: new {new_auc:.3f} vs champion {current} {old_auc:.3f}"
        if new_auc + 1e-9 >= old_auc:
            _atomic_json(self._point(point) / "champion.json", {"version": version})
            return True, detail
        return False, detail + " (kept the champion; use --force to promote anyway)"

    def load(
        self, version: str | None = None, *, point: str = "default", contract: DatasetContract | None = None
    ) -> Bundle:
        """Load a version (default: the champion); refuse one that does not fit `contract`."""
        version = version or self.champion(point)
        if version is None:
            raise RegistryError(
                f"No champion model for prediction point {point!r} in {self.root}. Run `student-risk train` first."
            )
        path = self._point(point) / "versions" / version
        if not path.is_dir():
            raise RegistryError(f"Model version {version!r} not found in {path.parent}. " + self._fix(point, version))
        try:
            metadata = json.loads((path / "metadata.json").read_text())
        except FileNotFoundError:
            raise RegistryError(
                f"Model version folder {path} has no metadata.json: the version is incomplete or damaged. "
                + self._fix(point, version)
            ) from None
        except ValueError as exc:
            raise RegistryError(
                f"{path / 'metadata.json'}: damaged, not JSON ({exc}). " + self._fix(point, version)
            ) from None
        trained_with = metadata["libraries"]["lightgbm"].split(".")[0]
        if trained_with != pkg_version("lightgbm").split(".")[0]:
            raise RegistryError(
                f"Model {version} was trained with LightGBM {metadata['libraries']['lightgbm']}, "
                f"this machine has {pkg_version('lightgbm')}: retrain, or install the same major version."
            )
        if contract is not None:
            check_contract(metadata, contract)
        self._verify(path, metadata, point)
        try:
            booster = lgb.Booster(model_file=str(path / "model.txt"))
        except lgb.basic.LightGBMError as exc:
            raise RegistryError(
                f"{path / 'model.txt'}: LightGBM cannot read it ({exc}). " + self._fix(point, version)
            ) from None
        cal = Calibrator(metadata["calibrator"]["method"], metadata["calibrator"]["params"])
        return Bundle(version, path, booster, cal, metadata)

    def _verify(self, path: Path, metadata: dict, point: str) -> None:
        """Refuse a version whose files differ from what was saved, before LightGBM reads them.

        A version saved before checksums existed is loaded once in a subprocess instead: if it is
        damaged, LightGBM aborts that process, not this one."""
        sums = metadata.get("checksums")
        if sums is None:
            self._verify_legacy(path, point)
            return
        for name in CHECKSUMMED:
            f = path / name
            if not f.is_file():
                raise RegistryError(f"{f}: missing from the model version folder. " + self._fix(point, path.name))
            if sha256_file(f) != sums.get(name):
                raise RegistryError(
                    f"{f}: damaged ({f.stat().st_size} bytes; its sha256 differs from the one recorded when the "
                    "version was saved: truncated or changed). " + self._fix(point, path.name)
                )

    def _verify_legacy(self, path: Path, point: str) -> None:
        model = path / "model.txt"
        if not model.is_file():
            raise RegistryError(f"{model}: missing from the model version folder. " + self._fix(point, path.name))
        st = model.stat()
        if self._verified.get(model) == (st.st_size, st.st_mtime_ns):
            return
        check = "import sys, lightgbm; lightgbm.Booster(model_file=sys.argv[1])"
        proc = subprocess.run([sys.executable, "-c", check, str(model)], capture_output=True, timeout=600)
        if proc.returncode != 0:
            raise RegistryError(
                f"{model}: damaged: LightGBM cannot read it (checked in a separate process, exit code "
                f"{proc.returncode}; the version was saved before checksums existed). " + self._fix(point, path.name)
            )
        self._verified[model] = (st.st_size, st.st_mtime_ns)


def settings_hash(config: Config) -> str:
    """SHA-256 of what shapes a model: the dataset contract and the training settings."""
    blob = json.dumps(
        {"dataset": config.dataset.model_dump(), "training": config.training.model_dump()}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def check_contract(metadata: dict, contract: DatasetContract) -> None:
    """Raise if the model's features or their kinds differ from the contract's."""
    trained = metadata["contract"]
    now = _contract_part(contract)
    diffs = []
    for key in ("numeric_features", "categorical_features"):
        if list(trained[key]) != list(now[key]):
            gone = sorted(set(trained[key]) - set(now[key]))
            new = sorted(set(now[key]) - set(trained[key]))
            diffs.append(
                f"{key}: model has {gone or 'same'} the settings lack; settings add {new or 'nothing new'}"
                if gone or new
                else f"{key}: same columns in another order"
            )
    if diffs:
        raise RegistryError(
            f"Model {metadata['version']} was trained on other features than the settings file names ("
            + "; ".join(diffs)
            + "). Retrain with `student-risk train`, or use the settings file the model was trained with."
        )


def model_card(md: dict) -> str:
    """A short Markdown model card: what, on what, how well, and its limits."""
    s = md["summary"]
    bt = md["metrics"]["backtest"].get("lightgbm", {})
    chosen = s.get("calibration") or {"name": md["calibrator"]["method"], "why": "out-of-fold predictions"}
    calibration = f"{WORDS.get(chosen['name'], chosen['name'])}; {chosen['why']}"
    rows = "\n".join(
        f"| {c} | {v['n']} | {v['base_rate']:.2f} | {v['roc_auc']:.3f} | {v['pr_auc']:.3f} | {v['brier']:.3f} "
        f"| {v['recall_top_k']:.2f} | {v.get('ece', float('nan')):.3f} |"
        for c, v in bt.items()
        if c != "all"
    )
    return f"""# Model card: student risk, version {md["version"]}

**What it does.** Estimates each incoming student's probability of an at-risk outcome
({", ".join(md["contract"]["at_risk_values"])}) so advisors can reach out early. It supports
an advisor's judgement; it does not decide anything about a student.

**Trained on** cohorts {", ".join(md["training_cohorts"])} ({md["n_training_rows"]} students),
prediction point `{md["point"]}`. LightGBM, {md["n_trees"]} trees. Probabilities: {calibration}.
Hyperparameters chosen by {md["cv_folds"]}.

**Features:** {", ".join(map(display_name, md["features"]))}.
Sensitive columns kept for fairness checks only (unless listed as features): {", ".join(map(display_name, md["contract"]["sensitive_columns"])) or "none"}.

**How well it generalizes.** {s["headline"]}

| cohort (never trained on) | students | at-risk rate | ROC AUC | PR AUC | Brier | recall in top {md["top_k_percent"]:g}% | calibration error (ECE) |
|---|---|---|---|---|---|---|---|
{rows or "| (single cohort: no forward backtest) | | | | | | | |"}

**Limits.** Performance holds only while new intakes resemble past ones: read the intake drift
report each year, and the outcomes report once real outcomes arrive. Probabilities are
estimates for groups of similar students, not certainties about one person.

Libraries: {", ".join(f"{k} {v}" for k, v in md["libraries"].items())}. Data fingerprint `{md["data_fingerprint"][:16]}`.
"""
