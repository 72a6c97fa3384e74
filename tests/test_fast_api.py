"""The API's fast paths give the answers of the slow ones: POST /v1/score (per record, NumPy) against the
frame path, and the lookup's JSON written from the row against the pydantic model."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
from test_api import Api, api, records, store_url  # noqa: F401  (shared fixtures)

from api.answers import student_risk, student_risk_json
from api.models import ScoreResponse
from risk_model.config import ScoringConfig
from risk_model.registry import Registry
from risk_model.schema import validate
from risk_model.score import describer, probabilities


def awkward(api: Api, n: int) -> list[dict]:  # noqa: F811
    """Intake records as a client may send them: unknown numbers, unseen categories, numbers for categories."""
    c, rng = api.world.config.dataset, random.Random(5)
    out = []
    for i, r in enumerate(records(api.world, n)):
        for col in c.numeric_features:
            if rng.random() < 0.2:
                r[col] = None
        for col in c.categorical:
            roll = rng.random()
            r[col] = None if roll < 0.1 else "never seen" if roll < 0.2 else 7 if roll < 0.3 else r[col]
        if i % 20 == 0:
            r.update({col: None for col in c.features})
        out.append(r)
    return out


def test_score_endpoint_equals_the_frame_path(api):  # noqa: F811
    c = api.world.config.dataset
    bundle = Registry(api.settings.registry_dir).load(contract=c)
    recs = awkward(api, 200)
    # the frame path, as the API ran it before: the dumped records (numbers sent for categories become text)
    dumped = [{k: (str(v) if k in c.categorical and isinstance(v, int) else v) for k, v in r.items()} for r in recs]
    frame = validate(pd.DataFrame(dumped), c, stage="score", source="request")
    p, factor_lists = probabilities(bundle, frame, c, ScoringConfig(), factors=True, progress=lambda m: None)
    for with_factors in (True, False):
        r = api.post("/v1/score", params={"factors": str(with_factors).lower()}, json={"records": recs})
        assert r.status_code == 200, r.text
        body = r.json()
        # written without the models: the very document the response model describes, field for field
        assert ScoreResponse.model_validate(body).model_dump(mode="json") == body
        got = np.array([x["probability"] for x in body["results"]])
        assert np.max(np.abs(got - np.round(p, 6))) <= 1e-9
        assert [x["student_id"] for x in body["results"]] == frame[c.id_column].tolist()
        if with_factors:
            describe = describer(bundle)
            assert [[f["label"] for f in x["factors"]] for x in body["results"]] == [
                [describe(f) for f in row] for row in factor_lists
            ]
        else:
            assert all(x["factors"] == [] for x in body["results"])
        assert any("never seen in training" in w for w in body["warnings"])


def test_score_endpoint_keeps_the_contract_messages(api):  # noqa: F811
    recs = records(api.world, 3)
    recs[1]["student_id"] = "   "
    recs[2]["cohort"] = "20\t25"
    r = api.post("/v1/score", json={"records": recs})
    assert r.status_code == 422
    msg = r.json()["detail"][0]["msg"]
    assert msg.startswith("request: 2 problems; nothing was written.")
    assert "column 'student_id' is empty at row 1. Every row needs a student_id." in msg
    assert "cannot name a cohort" in msg


def test_lookup_json_equals_the_pydantic_answer(api):  # noqa: F811
    sid = api.world.scores.student_id.iloc[0]
    r = api.get(f"/v1/students/{sid}/risk")
    assert r.status_code == 200
    row = {**api.world.scores.iloc[0].to_dict()}
    row["scored_at"] = pd.Timestamp(row["scored_at"]).to_pydatetime()
    labels = {"prior_gpa": "Prior GPA"}
    for factors in (row["factors"], [{"feature": "prior_gpa", "direction": "raises"}], []):
        one = {**row, "factors": factors}
        assert json.loads(student_risk_json(sid, one, labels)) == json.loads(
            student_risk(sid, one, labels).model_dump_json()
        )
    assert set(r.json()) == set(json.loads(student_risk_json(sid, row, labels)))
