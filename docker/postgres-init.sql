-- Runs once, when the PostgreSQL volume is first created: the score store's database beside
-- Prefect's (POSTGRES_DB=prefect). `student-risk db upgrade` (the worker's start) creates its tables.
CREATE DATABASE student_risk;
