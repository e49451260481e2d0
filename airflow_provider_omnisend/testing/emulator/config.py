"""Emulator settings: what the CLI sets at start and ``POST /_emulator/config`` changes at run time."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any

API_VERSION = "2026-03-15"
#: Values of ``Omnisend-Version`` the emulator knows (2026-preview behaves like 2026-03-15 here).
KNOWN_VERSIONS = ("2026-03-15", "2026-preview")
DEFAULT_API_KEY = "test-key"


@dataclass
class Settings:
    """Everything tunable. Durations in "emulated" seconds are multiplied by ``time_scale``."""

    api_keys: list[str] = field(default_factory=lambda: [DEFAULT_API_KEY])
    time_scale: float = 1.0
    latency_ms: float = 0.0  # real milliseconds added to every API request
    rpm: int = 400  # bucket "default"; <= 0 disables the limit
    tags_rpm: int = 60  # bucket "tags" (POST/DELETE /contacts/tags)
    processing_items_per_s: float = 0.0  # batch items per emulated second; 0 = as fast as possible
    tags_delay_s: float = 0.5  # emulated seconds before a tag request is applied
    retired_versions: list[str] = field(default_factory=list)
    send_retry_after_header: bool = False
    # Faults
    seed: int | None = None
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_s: float = 30.0  # real seconds a "timeout" request is held
    drop_rate: float = 0.0
    burst_429: int = 0
    stop_next_batches: int = 0
    item_error_rate: float = 0.0

    @property
    def window_s(self) -> float:
        return 60.0 * self.time_scale

    def public(self) -> dict[str, Any]:
        """The settings as JSON, API keys left out."""
        out = asdict(self)
        out.pop("api_keys")
        out["window_s"] = self.window_s
        return out


FAULT_FIELDS = (
    "error_rate",
    "timeout_rate",
    "timeout_s",
    "drop_rate",
    "burst_429",
    "stop_next_batches",
    "item_error_rate",
)
_RATES = ("error_rate", "timeout_rate", "drop_rate", "item_error_rate")
_NON_NEGATIVE = (
    "latency_ms",
    "processing_items_per_s",
    "tags_delay_s",
    "timeout_s",
    "burst_429",
    "stop_next_batches",
)


def _type_ok(key: str, kind: str, value: Any) -> bool:
    if key == "seed":
        return value is None or (isinstance(value, int) and not isinstance(value, bool))
    if key == "retired_versions":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return True


def apply_changes(settings: Settings, changes: dict[str, Any]) -> list[dict[str, str]]:
    """Validate and apply ``changes``; returns field errors (and applies nothing) if any is invalid."""
    types = {f.name: f.type for f in fields(Settings)}
    errors: list[dict[str, str]] = []
    clean: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in types or key == "api_keys":
            errors.append({"field": key, "code": "unknown_field", "message": "Not an emulator setting"})
            continue
        kind = types[key]
        if not _type_ok(key, kind, value):
            errors.append({"field": key, "code": "invalid_type", "message": f"Expected {kind}"})
            continue
        if key in _RATES and not 0.0 <= value <= 1.0:
            errors.append({"field": key, "code": "out_of_range", "message": "Must be between 0 and 1"})
            continue
        if key in _NON_NEGATIVE and value < 0:
            errors.append({"field": key, "code": "out_of_range", "message": "Must not be negative"})
            continue
        if key == "time_scale" and value <= 0:
            errors.append({"field": key, "code": "out_of_range", "message": "Must be positive"})
            continue
        clean[key] = float(value) if kind == "float" else value
    if not errors:
        for key, value in clean.items():
            setattr(settings, key, value)
    return errors


class Faults:
    """Seedable fault decisions and what was injected, per kind."""

    KINDS = ("error", "timeout", "drop", "drop_applied", "burst_429", "stopped_batch", "item_error")

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.injected = dict.fromkeys(self.KINDS, 0)

    def reseed(self, seed: int | None) -> None:
        self.rng = random.Random(seed)

    def chance(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def count(self, kind: str) -> None:
        self.injected[kind] += 1
