"""Issue 15: the API is safe to deploy. A damaged champion, an oversized or unauthenticated body,
a model that disagrees with its metadata, a long SQLite write and refused keys each get a
clear answer, and none of them takes the service (or a student id) with it.

Uses the champion, stores and `api` fixture of test_api (SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_api import Api, api, audit_rows, records, store_url  # noqa: F401  (shared fixtures)

from api import deps, keys
from api.app import create_app
from api.limits import too_large_detail
from api.settings import ApiSettings
from risk_model import store
from risk_model.registry import Registry


def start(world, store_url, tmp_path, damage=None, **options) -> tuple[TestClient, dict[str, str], str]:  # noqa: F811
    """A client of a fresh app over a copy of the registry, `damage(version_dir)` applied to its champion
    first; returns the client (not started), a key per scope and the champion version."""
    home = tmp_path / "runtime"
    shutil.copytree(world.registry_dir, home / "models")
    version = Registry(home / "models").champion()
    if damage is not None:
        damage(home / "models" / "default" / "versions" / version)
    store.upgrade(store_url)  # the deploy step; a no-op on the already migrated `store_url` fixture
    engine = store.connect(store_url)
    store.write_scores(engine, world.scores, world.summary)
    made = {s: keys.create_key(engine, name=f"t-{s}", scope=s)[1] for s in keys.SCOPES}
    engine.dispose()
    settings = ApiSettings(
        home=home, store_url=store_url, api_champion_ttl_seconds=0, api_key_cache_seconds=0, **options
    )
    return TestClient(create_app(settings)), made, version


def app_log(caplog) -> str:
    """What the API and the library logged (not the test client's own request lines)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name.split(".")[0] in ("api", "risk_model"))


def truncate(version_dir) -> None:
    model = version_dir / "model.txt"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])


def new_version(registry: Registry, name: str, damage) -> str:
    """A copy of the champion as version `name`, damaged, and made champion by its pointer only
    (`Registry.promote` would load it)."""
    versions = registry.root / "default" / "versions"
    shutil.copytree(versions / registry.champion(), versions / name)
    md = json.loads((versions / name / "metadata.json").read_text())
    (versions / name / "metadata.json").write_text(json.dumps({**md, "version": name}))
    damage(versions / name)
    (registry.root / "default" / "champion.json").write_text(json.dumps({"version": name}))
    return name


# --- 1. a damaged champion cannot take the service down ----------------------------------------


def test_truncated_champion_at_start_keeps_lookups_and_refuses_scoring(world, store_url, tmp_path, caplog):  # noqa: F811
    caplog.set_level(logging.INFO)
    client, key, version = start(world, store_url, tmp_path, damage=truncate)
    with client:  # LightGBM would abort this whole process on the truncated file
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["champions"] == {}
        not_loaded = ready.json()["not_loaded"]
        assert set(not_loaded) == {"default"} and not_loaded["default"]["version"] == version
        # the registry's own check (checksum recorded at save) refuses it before LightGBM reads the file
        assert not_loaded["default"]["reason"].startswith("RegistryError: ")
        assert f"{version}/model.txt: damaged (" in not_loaded["default"]["reason"]
        sid = world.scores.student_id.iloc[0]
        assert client.get(f"/v1/students/{sid}/risk", headers={"X-API-Key": key["read"]}).status_code == 200
        cohort = str(world.scores.cohort.iloc[0])
        assert client.get(f"/v1/cohorts/{cohort}/students", headers={"X-API-Key": key["read"]}).status_code == 200
        r = client.post("/v1/score", headers={"X-API-Key": key["score"]}, json={"records": records(world, 1)})
        assert r.status_code == 503
        assert r.json()["detail"] == (
            f"The champion model of point 'default' ({version}) could not be loaded; "
            "stored scores are still served. Promote a sound version."
        )
    assert f"Point default: champion {version} could not be loaded" in caplog.text
    assert sid not in app_log(caplog)


def test_damaged_new_champion_leaves_the_old_one_serving(api, caplog):  # noqa: F811
    caplog.set_level(logging.ERROR)
    registry = Registry(api.settings.registry_dir)
    old = registry.champion()
    new = new_version(registry, "29991231-235959-damaged0", truncate)
    for _ in range(3):  # the broken pointer is tried once, not on every request
        assert api.get("/v1/model").json()["version"] == old
        assert api.post("/v1/score", json={"records": records(api.world, 1)}).json()["model_version"] == old
    ready = api.client.get("/ready")
    assert ready.status_code == 503 and ready.json()["champions"] == {"default": old}
    assert ready.json()["not_loaded"]["default"]["version"] == new
    assert caplog.text.count(f"champion {new} could not be loaded") == 1
    assert f"still serving {old}" in caplog.text


def test_model_file_that_fails_its_checksum_is_not_loaded(api):  # noqa: F811
    def wrong_checksum(version_dir) -> None:
        md = json.loads((version_dir / "metadata.json").read_text())
        (version_dir / "metadata.json").write_text(json.dumps({**md, "checksums": {"model.txt": "0" * 64}}))

    new = new_version(Registry(api.settings.registry_dir), "29991231-235959-checksum", wrong_checksum)
    reason = api.client.get("/ready").json()["not_loaded"]["default"]["reason"]
    assert reason.startswith("RegistryError: ") and f"{new}/model.txt: damaged (" in reason


# --- 2. body limit, key before body, 422 without the input ----------------------------------------


def _raw_post(
    client: TestClient, path: str, headers: dict[str, str], chunks: int, chunk: bytes
) -> tuple[int, dict, int]:
    """POST a chunked body straight to the ASGI app; returns (status, json body, chunks the app read)."""
    read = 0

    async def call() -> tuple[int, dict]:
        nonlocal read
        sent: list[dict] = []

        async def receive() -> dict:
            nonlocal read
            read += 1
            return {"type": "http.request", "body": chunk, "more_body": read < chunks}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
            "state": {},
        }
        await client.app(scope, receive, send)
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return status, json.loads(body)

    status, body = client.portal.call(call)
    return status, body, read


def test_oversized_body_is_413_before_it_is_read(api):  # noqa: F811
    limit = api.settings.max_body_bytes
    assert limit == api.settings.api_max_records * 8192 + 65536
    big = b"x" * (limit + 1)
    for headers in ({"X-API-Key": api.keys["score"]}, {}):  # with and without a key
        r = api.client.post("/v1/score", content=big, headers={"Content-Type": "application/json", **headers})
        assert r.status_code == 413 and r.json() == {"detail": too_large_detail(limit)}
    # chunked (no Content-Length): counted as it arrives, refused once past the limit
    headers = {"X-API-Key": api.keys["score"], "Content-Type": "application/json"}
    status, body, read = _raw_post(api.client, "/v1/score", headers, chunks=1000, chunk=b" " * 65536)
    assert status == 413 and body == {"detail": too_large_detail(limit)}
    assert read == limit // 65536 + 1  # not one chunk more than the limit needs


def test_key_is_checked_before_the_body_is_read(api):  # noqa: F811
    json_type = {"Content-Type": "application/json"}
    for headers, status in [(json_type, 401), ({**json_type, "X-API-Key": "srk_wrong"}, 401)]:
        got, body, read = _raw_post(api.client, "/v1/score", headers, chunks=50, chunk=b" " * 65536)
        assert (got, read) == (status, 0), body
    got, body, read = _raw_post(
        api.client, "/v1/score", {**json_type, "X-API-Key": api.keys["read"]}, chunks=50, chunk=b" "
    )
    assert (got, read) == (403, 0)
    assert body["detail"] == "This key has scope 'read'; this request needs 'score' (or admin)."


def test_422_names_fields_but_never_echoes_a_value(api):  # noqa: F811
    too_many = records(api.world, 1) * (api.settings.api_max_records + 1)
    sid = too_many[0]["student_id"]
    r = api.post("/v1/score", json={"records": too_many})
    assert r.status_code == 422 and r.json()["detail"] == [
        {
            "loc": ["body", "records"],
            "msg": "List should have at most 1000 items after validation, not 1001",
            "type": "too_long",
        }
    ]
    assert sid not in r.text
    bad = records(api.world, 2)
    bad[1]["prior_gpa"] = "secret-value"
    bad[0]["nickname"] = "secret-extra"
    for body in ({"records": bad}, {"records": "secret-list"}, {"records": [], "secret-key": 1}):
        r = api.post("/v1/score", json=body)
        assert r.status_code == 422
        assert all(set(e) == {"loc", "msg", "type"} for e in r.json()["detail"])
        assert "secret-value" not in r.text and "secret-extra" not in r.text and "secret-list" not in r.text
    headers = {"Content-Type": "application/json", "X-API-Key": api.keys["score"]}
    r = api.post("/v1/score", content=b'{"records": [secret', headers=headers)
    assert r.status_code == 422 and "secret" not in r.text
    assert r.json()["detail"] == [{"loc": ["body", 13], "msg": "JSON decode error", "type": "json_invalid"}]


# --- 3. a model that disagrees with its metadata -------------------------------------------------


def test_metadata_that_does_not_match_the_model_is_503(world, store_url, tmp_path):  # noqa: F811
    def other_features(version_dir) -> None:
        md = json.loads((version_dir / "metadata.json").read_text())
        (version_dir / "metadata.json").write_text(json.dumps({**md, "features": md["features"][::-1]}))

    client, key, version = start(world, store_url, tmp_path, damage=other_features)
    with client:
        r = client.post("/v1/score", headers={"X-API-Key": key["score"]}, json={"records": records(world, 1)})
        assert r.status_code == 503 and "could not be loaded" in r.json()["detail"]
        assert client.get("/ready").json()["not_loaded"]["default"]["reason"] == (
            f"RegistryError: model.txt of {version} has other features than its metadata.json lists."
        )


def test_scoring_error_from_the_model_is_503_and_logged(api, monkeypatch, caplog):  # noqa: F811
    import risk_model.score

    def mismatch(*args, **kwargs):
        raise ValueError("The number of features in data (9) is not the same as it was in training data (10).")

    monkeypatch.setattr(risk_model.score, "score_rows", mismatch)  # what POST /v1/score calls
    r = api.post("/v1/score", json={"records": records(api.world, 1)})
    version = Registry(api.settings.registry_dir).champion()
    assert r.status_code == 503
    assert r.json()["detail"] == f"The champion model {version} does not match its metadata; scoring is unavailable."
    assert f"Point default: model {version} cannot score (ValueError)" in caplog.text


# --- 4. SQLite: audit rows never make a lookup wait ----------------------------------------------


def _hold_write_lock(api: Api) -> sqlite3.Connection:  # noqa: F811
    conn = sqlite3.connect(api.engine.url.database, timeout=0, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")  # what a long re-score holds
    conn.execute("DELETE FROM outcomes WHERE cohort = 'nothing'")
    return conn


def _lookup_audited(api: Api, sid: str) -> bool:  # noqa: F811
    return any(r["student_id"] == sid and r["action"] == "risk" for r in audit_rows(api.engine))


# SQLite only: PostgreSQL writes the audit row in the lookup's own statement, and has no file lock
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_sqlite_lookup_does_not_wait_for_a_writer_and_is_audited_after(api):  # noqa: F811
    sid = api.world.scores.student_id.iloc[5]
    writer = _hold_write_lock(api)
    try:
        t0 = time.perf_counter()
        r = api.get(f"/v1/students/{sid}/risk")
        took = time.perf_counter() - t0
        assert r.status_code == 200 and took < 1.0, took
        page = api.get(f"/v1/cohorts/{api.intake_cohort}/students", params={"limit": 3})
        assert page.status_code == 200
        assert not _lookup_audited(api, sid)  # queued while the writer holds the store
    finally:
        writer.execute("COMMIT")
        writer.close()
    expected = [(sid, "risk")] + [(s["student_id"], "list") for s in page.json()["students"]]
    deadline = time.monotonic() + 5
    # the queue may write the lookup's row and the page's rows in separate commits: wait for all four
    while len(audit_rows(api.engine)) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.05)
    rows = audit_rows(api.engine)
    assert [(r["student_id"], r["action"]) for r in rows][:4] == expected


def test_sqlite_audit_rows_queued_at_shutdown_are_written(world, tmp_path):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    client, key, _ = start(world, url, tmp_path)
    sid = world.scores.student_id.iloc[7]
    with client:
        writer = sqlite3.connect(str(tmp_path / "scores.db"), timeout=0, isolation_level=None, check_same_thread=False)
        writer.execute("BEGIN IMMEDIATE")
        assert client.get(f"/v1/students/{sid}/risk", headers={"X-API-Key": key["read"]}).status_code == 200
        assert client.app.state.api.audit.pending == 1
        threading.Timer(0.5, lambda: (writer.execute("COMMIT"), writer.close())).start()
    engine = store.connect(url)
    with engine.connect() as conn:
        audited = conn.execute(select(store.audit_log.c.student_id)).scalars().all()
    engine.dispose()
    assert audited == [sid]


# --- 5. docs offline, refused keys recorded, numbers accepted as text -----------------------------


def test_docs_are_served_without_a_cdn(api):  # noqa: F811
    page = api.client.get("/docs")
    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text and "cdn" not in page.text.lower()
    assert api.client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
    assert api.client.get("/docs/assets/swagger-ui.css").status_code == 200
    assert api.client.get("/openapi.json").status_code == 200


def test_refused_keys_are_recorded_without_the_key_and_logged_once(world, store_url, tmp_path, caplog, monkeypatch):  # noqa: F811
    monkeypatch.setattr(deps, "refusals", deps._RefusalLog())
    caplog.set_level(logging.WARNING)
    client, key, _ = start(world, store_url, tmp_path)
    with client:
        client.get("/v1/students/S1/risk")
        client.get("/v1/students/S2/risk", headers={"X-API-Key": "srk_wrongwrongwrong"})
        client.post("/v1/score", headers={"X-API-Key": key["read"]}, json={"records": []})
    engine = store.connect(store_url)
    with engine.connect() as conn:
        rows = [r._asdict() for r in conn.execute(select(store.auth_failures).order_by(store.auth_failures.c.id))]
    engine.dispose()
    assert [(r["reason"], r["route"], r["key_prefix"]) for r in rows] == [
        ("missing", "/v1/students/{student_id}/risk", None),
        ("unknown", "/v1/students/{student_id}/risk", "srk_wrongw"),
        ("scope", "/v1/score", key["read"][:10]),
    ]
    assert all(r["at"] is not None for r in rows)
    assert caplog.text.count("Refused API key") == 1  # rate-limited: one line a minute
    logged = app_log(caplog)
    assert "S1" not in logged and "wrongwrong" not in logged and key["read"] not in logged


def test_numbers_are_accepted_for_id_cohort_and_categories(api):  # noqa: F811
    recs = records(api.world, 2)
    recs[0]["student_id"], recs[0]["cohort"] = 123456, 2025
    recs[1]["entry_qualification"] = 3
    recs[1]["age_band"] = 25.0
    r = api.post("/v1/score", json={"records": recs})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["student_id"] == "123456"
    bools = records(api.world, 1)
    bools[0]["student_id"] = True
    r = api.post("/v1/score", json={"records": bools})
    assert r.status_code == 422 and r.json()["detail"][0]["msg"] == "Input should be a valid string"
