"""Omnisend HTTP API client: versions, errors, rate limiting and retries.

Airflow-free on purpose (apart from the errors subclassing ``AirflowException`` when Airflow is
installed), so the export engine, the demo and the benchmarks can use it without an Airflow context.
"""
