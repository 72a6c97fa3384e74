"""One APIRouter per resource: students, cohorts, score, model, reports, ops (/health, /ready)."""
