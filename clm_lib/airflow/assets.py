"""Assets that chain clm's DAGs: new curated data -> drift check -> retrain request -> continual training -> a
candidate to promote."""

from airflow.sdk import Asset

CURATED = Asset(name="clm_curated", uri="clm://lake/curated", group="clm")
"""Updated when an ingestion batch adds curated rows; the event's extra carries the batch counts."""

CANDIDATE = Asset(name="clm_candidate", uri="clm://registry/candidate", group="clm")
"""Updated when a training run registers a new model version; the extra carries ``version``."""

RETRAIN_REQUEST = Asset(name="clm_retrain_request", uri="clm://drift/retrain-request", group="clm")
"""Updated when a drift check requests a retraining; the extra carries the decision (``check_id``, reasons)."""
