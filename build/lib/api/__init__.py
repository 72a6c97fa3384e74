"""The advising API: an HTTP edge over the risk_model library (FastAPI)."""
