"""The local runtime behind ``clm init`` / ``clm up``: an Airflow home, the processes, their health.

``airflow_home`` renders ``airflow.cfg`` and prepares Airflow's database and admin user, ``processes`` starts and
stops the Airflow components and a lean MLflow server on 127.0.0.1, ``health`` asks them whether they are well,
``airflow_client`` drives DAG runs through the REST API. Airflow is only ever used through its CLI and HTTP API
here, so this package never imports ``airflow``.
"""
