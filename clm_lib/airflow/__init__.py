"""The Airflow-facing side of clm, in the provider pattern. The only place in clm_lib that imports airflow."""
