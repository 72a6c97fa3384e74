"""The linear part blended with LightGBM: stored as numbers, keeps monotone promises, chosen by CV."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from risk_model.linear import LinearPart


def _data(n: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "missed": rng.poisson(1.0, n).astype(float),
            "clicks": rng.lognormal(4, 1.5, n),
            "score": np.where(rng.random(n) < 0.1, np.nan, rng.normal(60, 15, n)),
            "course": pd.Categorical(rng.choice(["A", "B", "C"], n), categories=["A", "B", "C"]),
        }
    )
    z = 0.8 * X.missed - 0.5 * np.log(X.clicks) - 0.03 * X.score.fillna(40) + (X.course == "C") + 2
    return X, (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)


def test_round_trips_through_json_and_predicts_the_same() -> None:
    X, y = _data()
    part = LinearPart.fit(X, y, ["missed", "clicks", "score"], ["course"])
    again = LinearPart.from_dict(json.loads(json.dumps(part.to_dict())))
    np.testing.assert_allclose(again.logit(X), part.logit(X))
    assert part.numeric["clicks"]["asinh"] and not part.numeric["score"]["asinh"]
    # it learned the planted directions
    assert part.numeric["missed"]["coef"] > 0 and part.numeric["clicks"]["coef"] < 0


def test_monotone_feature_with_the_wrong_slope_is_left_out() -> None:
    X, y = _data()
    part = LinearPart.fit(X, y, ["missed", "clicks", "score"], ["course"], monotone={"missed": -1})
    assert "missed" not in part.numeric and "clicks" in part.numeric
    more = X.assign(missed=X.missed + 3)
    assert (part.logit(more) == part.logit(X)).all()


def test_unknown_category_and_missing_value_score_as_typical() -> None:
    X, y = _data()
    part = LinearPart.fit(X, y, ["missed", "clicks", "score"], ["course"])
    row = X.iloc[[0]].copy()
    row["course"] = pd.Categorical([None], categories=["A", "B", "C"])
    row["score"] = np.nan
    assert np.isfinite(part.logit(row)).all()


def test_a_category_never_seen_reads_as_the_training_mix_and_a_rare_one_as_itself() -> None:
    """The course is never missing in training: a new course adds the share-weighted mean of the courses' terms
    (0 as a contribution), on the frame and the record path alike. "D" was seen 5 times, below `min_count`:
    it keeps the 0 it was fitted with. A column sometimes missing in training reads an unknown value as 0."""
    X, y = _data()
    X["course"] = pd.Categorical(np.where(np.arange(len(X)) < 5, "D", X.course.astype(str)))
    X["track"] = pd.Categorical(np.where(np.arange(len(X)) % 3, "x", None))
    part = LinearPart.fit(X, y, ["missed"], ["course", "track"])
    assert part.mixed == ["course"] and part.categorical["course"]["D"] == 0.0
    shares = X.course.value_counts(normalize=True)
    mix = sum(shares[level] * part.categorical["course"].get(level, 0.0) for level in shares.index)
    assert abs(part.centre["course"] - mix) < 1e-12
    new = {"missed": [1.0, 1.0, 1.0], "course": ["E", None, "D"], "track": ["y", "y", "x"]}
    terms, _ = part.contributions(new)
    assert np.allclose(terms["course"], [0.0, 0.0, -part.centre["course"]])
    assert np.allclose(terms["track"], -part.centre["track"] + np.array([0, 0, part.categorical["track"]["x"]]))
    frame = pd.DataFrame(new).astype({"course": "category", "track": "category"})
    assert np.allclose(part.logit(frame), part.logit(new, 3))
    again = LinearPart.from_dict(json.loads(json.dumps(part.to_dict())))
    assert np.allclose(again.logit(new, 3), part.logit(new, 3))


def test_a_blended_model_scores_the_same_after_saving(small_demo, demo_config, tmp_path, monkeypatch) -> None:
    """The registry keeps the linear part: scoring a loaded version gives the trained model's probabilities."""
    from risk_model import train as train_module
    from risk_model.features import build_features
    from risk_model.registry import Registry
    from risk_model.schema import validate
    from risk_model.score import probabilities
    from tests.conftest import tiny

    demo_config = tiny(demo_config)  # any blended model will do
    monkeypatch.setattr(train_module, "BLENDS", (0.5,))
    history = small_demo.history[small_demo.history.cohort.isin(["2019", "2020"])]
    df = validate(history, demo_config.dataset, stage="train")
    result = train_module.train(df, demo_config, progress=lambda _: None)
    assert result.model.linear is not None and result.summary["family"].startswith("lightgbm+logistic")
    registry = Registry(tmp_path)
    bundle = registry.load(registry.save(result, demo_config), contract=demo_config.dataset)
    intake = validate(small_demo.intake, demo_config.dataset, stage="score")
    p, _ = probabilities(bundle, intake, demo_config.dataset, demo_config.scoring, factors=False)
    expected = result.model.predict(build_features(intake, demo_config.dataset, result.model.levels))
    np.testing.assert_allclose(p, expected)
