"""Airflow sensors: a new complete export in the lake; Omnisend batches processed."""
