"""The champion models the API serves, swapped in without a restart.

Each prediction point's `champion.json` is stat-ed at most every `ttl` seconds (a cheap
syscall); a changed pointer loads the new bundle, once: one that fails to load (a damaged
model.txt is refused before LightGBM, which would abort the process, reads it) is logged,
remembered with its reason for /ready, and leaves the old one serving. Metadata of any version (labels of stored scores) is cached for good:
versions never change.
"""

import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import lightgbm as lgb
from pydantic import ConfigDict, Field, TypeAdapter, create_model

from risk_model.config import DatasetContract
from risk_model.features import lightgbm_names
from risk_model.registry import Bundle, Registry, RegistryError

log = logging.getLogger(__name__)


def natural_key(value: str) -> tuple:
    """2019 < 2020 and 2013B < 2013J < 2014B: digits compare as numbers."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.findall(r"\d+|\D+", value))


def point_key(point: str) -> int:
    """Later prediction points sort higher: day30 > day0 > default."""
    digits = re.findall(r"\d+", point)
    return int(digits[-1]) if digits else -1


class Champions:
    """The champion bundle of each prediction point, reloaded when its pointer file changes."""

    def __init__(self, registry: Registry, ttl: float) -> None:
        self.registry, self.ttl = registry, ttl
        self._lock = threading.Lock()
        self._bundles: dict[str, tuple[tuple, Bundle]] = {}
        self._checked: dict[str, float] = {}
        self._points: tuple[float, list[str]] = (-math.inf, [])
        self._metadata: dict[tuple[str, str], dict] = {}
        self._derived: dict[tuple[str, str], Any] = {}
        self._failed: dict[str, tuple[tuple, str | None, str]] = {}  # point -> (pointer, version, reason)
        self._versions: dict[tuple[str, str], Bundle | None] = {}  # older versions that scored stored students

    def points(self) -> list[str]:
        """Points with a champion, latest first."""
        checked, points = self._points
        if time.monotonic() - checked >= self.ttl:
            root = self.registry.root
            found = [p for p in self.registry.points() if (root / p / "champion.json").exists()]
            points = sorted(found, key=lambda p: (point_key(p), p), reverse=True)
            self._points = (time.monotonic(), points)
        return points

    def latest_point(self) -> str | None:
        points = self.points()
        return points[0] if points else None

    def _signature(self, point: str) -> tuple | None:
        try:
            st = os.stat(self.registry.root / point / "champion.json")
        except OSError:
            return None
        return st.st_mtime_ns, st.st_ino, st.st_size

    def get(self, point: str) -> Bundle | None:
        """The point's champion; a changed pointer loads the new one (the old one serves if that fails)."""
        if time.monotonic() - self._checked.get(point, -math.inf) < self.ttl:
            entry = self._bundles.get(point)
            return entry[1] if entry else None
        with self._lock:
            entry = self._bundles.get(point)
            sig = self._signature(point)
            self._checked[point] = time.monotonic()
            failed = self._failed.get(point)
            if sig is not None and (entry is None or entry[0] != sig) and (failed is None or failed[0] != sig):
                self._load(point, sig, entry)  # once per pointer change: a failed one is not retried
            entry = self._bundles.get(point)
            return entry[1] if entry else None

    def _load(self, point: str, sig: tuple, entry: tuple[tuple, Bundle] | None) -> None:
        version = None
        try:
            version = self.registry.champion(point)
            if entry is not None and entry[1].version == version:
                bundle = entry[1]
            else:
                bundle = self.registry.load(version, point=point)  # refuses damaged files before LightGBM reads them
                check_features(bundle)
        except LOAD_ERRORS as exc:
            reason = f"{type(exc).__name__}: {exc}"[:300]
            self._failed[point] = (sig, version, reason)
            serving = f"still serving {entry[1].version}" if entry else "no model serves this point"
            log.error("Point %s: champion %s could not be loaded (%s); %s", point, version, reason, serving)
            return
        self._failed.pop(point, None)
        if entry is None or entry[1].version != bundle.version:
            log.info("Point %s: champion model is now %s", point, bundle.version)
        self._bundles[point] = (sig, bundle)

    def load_all(self) -> dict[str, str]:
        """Load every point's champion (the app's start-up); return point -> version loaded."""
        for point in self.points():
            self.get(point)
        return self.loaded()

    def loaded(self) -> dict[str, str]:
        """Point -> version of each champion loaded (as of the last check)."""
        return {p: b.version for p, (_, b) in self._bundles.items()}

    def failure(self, point: str) -> tuple[str | None, str] | None:
        """(version, reason) if the point's current champion pointer names a model that did not load."""
        failed = self._failed.get(point)
        return (failed[1], failed[2]) if failed else None

    def version(self, point: str, version: str) -> Bundle | None:
        """The model `version` of `point`: the champion when it is that one, else loaded from the registry
        once and kept (the last `KEEP_VERSIONS`); None when it cannot be loaded (deleted, damaged). What
        explains a stored student on first read (`api.lookups.explained`)."""
        entry = self._bundles.get(point)
        if entry is not None and entry[1].version == version:
            return entry[1]
        key = (point, version)
        with self._lock:
            if key not in self._versions:
                bundle: Bundle | None = None
                try:
                    loaded = self.registry.load(version, point=point)
                    check_features(loaded)
                    bundle = loaded
                except LOAD_ERRORS as exc:
                    log.error("Point %s: model %s could not be loaded (%s)", point, version, type(exc).__name__)
                while len(self._versions) >= KEEP_VERSIONS:
                    self._versions.pop(next(iter(self._versions)))
                self._versions[key] = bundle
            return self._versions[key]

    def metadata(self, point: str, version: str) -> dict:
        """A version's metadata.json (cached: versions never change); {} if it is gone."""
        key = (point, version)
        if key not in self._metadata:
            path = self.registry.root / point / "versions" / version / "metadata.json"
            try:
                self._metadata[key] = json.loads(path.read_text())
            except (OSError, ValueError):
                self._metadata[key] = {}  # a deleted version stays deleted
        return self._metadata[key]

    def derived(self, bundle: Bundle, what: str, build: Callable[[Bundle], Any]) -> Any:
        """Something built once per model version (its contract, its record validator)."""
        key = (bundle.version, what)
        if key not in self._derived:
            self._derived[key] = build(bundle)
        return self._derived[key]


KEEP_VERSIONS = 4
LOAD_ERRORS = (RegistryError, OSError, ValueError, KeyError, TypeError, lgb.basic.LightGBMError)


def check_features(bundle: Bundle) -> None:
    """Refuse a model whose features are not those its metadata.json lists."""
    if list(bundle.booster.feature_name()) != lightgbm_names(list(bundle.features)):
        raise RegistryError(f"model.txt of {bundle.version} has other features than its metadata.json lists.")


def contract_of(bundle: Bundle) -> DatasetContract:
    """The dataset contract the model was trained with, from its metadata."""
    c, md = bundle.metadata["contract"], bundle.metadata
    used = c["numeric_features"] + c["categorical_features"]
    sensitive_features = [f for f in used if f in c["sensitive_columns"]]
    return DatasetContract(
        id_column=c["id_column"],
        cohort_column=c["cohort_column"],
        outcome_column=c["outcome_column"],
        at_risk_values=c["at_risk_values"],
        numeric_features=c["numeric_features"],  # numeric sensitive features stay numeric
        categorical_features=[f for f in c["categorical_features"] if f not in sensitive_features],
        sensitive_columns=c["sensitive_columns"],
        sensitive_as_features=sensitive_features,
        feature_labels=md.get("feature_labels", {}),
    )


def record_validator(bundle: Bundle) -> TypeAdapter:
    """Validates a list of records against the model's contract: id and cohort required, every
    feature present (null when unknown), sensitive columns the model does not use optional."""
    c = contract_of(bundle)
    fields: dict[str, Any] = {
        "f_id": (str, Field(alias=c.id_column, min_length=1, max_length=128)),
        "f_cohort": (str, Field(alias=c.cohort_column, min_length=1, max_length=64)),
    }
    for i, col in enumerate(c.numeric_features):
        fields[f"n{i}"] = (float | None, Field(alias=col, allow_inf_nan=False))
    for i, col in enumerate(c.categorical):
        fields[f"c{i}"] = (str | None, Field(alias=col, max_length=256))
    for i, col in enumerate(s for s in c.sensitive_columns if s not in c.categorical):
        fields[f"s{i}"] = (str | None, Field(None, alias=col, max_length=256))
    # numbers become text for id, cohort and categorical columns, as the CSV reader reads them
    record = create_model("Record", __config__=ConfigDict(extra="forbid", coerce_numbers_to_str=True), **fields)
    return TypeAdapter(list[record])
