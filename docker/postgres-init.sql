-- Runs once, when the PostgreSQL volume is first created: the score store's database beside
-- Prefect's (POSTGRES_DB=prefect). The store creates its tables itself (Alembic) on first connect.
CREATE DATABASE student_risk;
