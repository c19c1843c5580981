"""Human-facing output: tables printed at the end of a job (JSON and plots live beside the data they show)."""
