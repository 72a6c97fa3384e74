"""Prefect flows: orchestration only. Every task is a thin call into `risk_model` or `reports`."""
