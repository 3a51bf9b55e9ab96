"""Prefect flows: one per pipeline stage (each also a DVC stage), and `tinybert_pipeline` chaining them."""

import os

# The pipeline runs offline by default; Prefect's usage telemetry would only log connection errors.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
