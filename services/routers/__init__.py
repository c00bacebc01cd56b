"""One router per resource: jobs (/v1/jobs), health (/healthz, /readyz, /metrics), pages (/)."""
