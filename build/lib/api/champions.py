"""The champion models the API serves, swapped in without a restart.

Each prediction point's `champion.json` is stat-ed at most every `ttl` seconds (a cheap
syscall); a changed pointer loads the new bundle, and a bundle that fails to load leaves
the old one serving. Metadata of any version (labels of stored scores) is cached for good:
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

from pydantic import ConfigDict, Field, TypeAdapter, create_model

from risk_model.config import DatasetContract
from risk_model.registry import Bundle, Registry

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
        entry = self._bundles.get(point)
        if entry is not None and time.monotonic() - self._checked.get(point, -math.inf) < self.ttl:
            return entry[1]
        with self._lock:
            entry = self._bundles.get(point)
            sig = self._signature(point)
            if sig is None:
                self._checked[point] = time.monotonic()
                return entry[1] if entry else None
            if entry is None or entry[0] != sig:
                try:
                    version = self.registry.champion(point)
                    bundle = (
                        entry[1] if entry and entry[1].version == version else self.registry.load(version, point=point)
                    )
                except Exception:
                    log.exception("Could not load the champion of point %s; keeping the one loaded", point)
                    return entry[1] if entry else None
                if entry is None or entry[1].version != bundle.version:
                    log.info("Point %s: champion model is now %s", point, bundle.version)
                entry = (sig, bundle)
                self._bundles[point] = entry
            self._checked[point] = time.monotonic()
            return entry[1]

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


def contract_of(bundle: Bundle) -> DatasetContract:
    """The dataset contract the model was trained with, from its metadata."""
    c, md = bundle.metadata["contract"], bundle.metadata
    sensitive_features = [f for f in c["categorical_features"] if f in c["sensitive_columns"]]
    return DatasetContract(
        id_column=c["id_column"],
        cohort_column=c["cohort_column"],
        outcome_column=c["outcome_column"],
        at_risk_values=c["at_risk_values"],
        numeric_features=c["numeric_features"],
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
    record = create_model("Record", __config__=ConfigDict(extra="forbid"), **fields)
    return TypeAdapter(list[record])
