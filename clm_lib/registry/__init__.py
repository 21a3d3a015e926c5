"""MLflow tracking and registry: candidates with lineage, audited aliases."""
