"""on_kill sets the running export's cancel event (the engine's stop is tested end to end in
tests/reliability/test_reliability_on_kill.py)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from airflow_provider_omnisend.operators.export import OmnisendExportSegmentOperator


def test_on_kill_sets_the_clients_cancel_event():
    op = OmnisendExportSegmentOperator(task_id="t", source="file:///nowhere", segment="s",
                                       mapping={"email": "Email"})
    op.on_kill()  # nothing running yet: nothing to do
    client = SimpleNamespace(cancel=threading.Event())
    assert op._cancellable(client) is client
    op.on_kill()
    assert client.cancel.is_set()
