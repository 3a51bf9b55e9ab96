"""Prefect flows: one per pipeline stage (each also a DVC stage), and `tinybert_pipeline` chaining them."""

import os

# The pipeline runs offline by default; Prefect's usage telemetry would only log connection errors.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# A flow called without `tasks.prefect_api.prefect_api` (from a notebook, say) falls back on Prefect's own temporary
# server, whose 20 s start-up limit a busy machine exceeds.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "600")
# The library logs through `logging` ("tinybert_core.*"); Prefect shows those lines in the flow run's log too.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tinybert_core")
