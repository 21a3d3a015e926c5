"""clm core library. Plain Python: nothing here imports Airflow except ``clm_lib.airflow``."""

__version__ = "0.1.0"
