# Airflow image with airflow-provider-omnisend installed (used by docker-compose.yaml).
#
#   docker compose build            # or: docker build -t airflow-provider-omnisend:0.1.0 .
#
# constraints.txt pins apache-airflow==3.3.2, the version of the base image, so pip leaves Airflow alone
# and installs the provider's dependencies at the versions CI tests.
FROM apache/airflow:3.3.2

USER airflow
# Created by the airflow user (WORKDIR alone would make it root's): pip builds the package in place.
RUN mkdir -p /opt/airflow/omnisend-provider
WORKDIR /opt/airflow/omnisend-provider

COPY --chown=airflow:0 pyproject.toml constraints.txt README.md ./
COPY --chown=airflow:0 airflow_provider_omnisend/ ./airflow_provider_omnisend/
# redis: the brand-wide rate limiter's client (.env.example's connection shares the budget in compose's
# Redis), installed at the tested pin instead of relying on what the base image ships for Celery.
RUN pip install --no-cache-dir -c constraints.txt ".[azure,delta,emulator,redis]" \
    && python -c "import airflow_provider_omnisend.testing.emulator.app, redis"

# docker/airflow-init.sh: run by the airflow-init service; docker/demo_lake.py writes a demo export.
COPY --chown=airflow:0 --chmod=0755 docker/ ./docker/

WORKDIR /opt/airflow
