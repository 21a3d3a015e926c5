"""Triggers: async waits that run in Airflow's triggerer, so a waiting task holds no worker slot."""
