"""Webhooks to advising tools: the HTTP edge of the outbox in `risk_model.outbox`.

`sign`/`verify` are the signature scheme (HMAC-SHA256 over the exact body bytes); `dispatch`
sends due outbox rows with httpx, oldest first, and records each attempt.
"""
