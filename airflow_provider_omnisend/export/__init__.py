"""The export core, free of Airflow: mapping, validation, de-duplication, payloads, snapshots, the engine."""
