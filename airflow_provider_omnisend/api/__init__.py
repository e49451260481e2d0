"""Omnisend HTTP API client: versions, errors, rate limiting and retries.

Airflow-free on purpose, so the export engine, the demo and the benchmarks can use it without an
Airflow context (or Airflow's import cost).
"""
