"""OpenLineage for an export: the lake dataset in, the Omnisend segment out, with row counts.

The OpenLineage provider is optional: everything it needs is imported inside :meth:`ExportLineage.facets`,
which only the provider's listener calls (``get_openlineage_facets_on_complete``), so without it nothing
is imported and nothing breaks. Dataset names follow OpenLineage's naming: ``file`` + absolute path for
a local lake, ``<scheme>://<container or bucket>`` + path for object stores; the output is named like
the segment's Asset (:func:`airflow_provider_omnisend.assets.convert_asset_to_openlineage`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_omnisend.assets import SCHEME
from airflow_provider_omnisend.lake import ResolvedExport


def lake_dataset_name(source: str) -> tuple[str, str]:
    """(namespace, name) of a lake export URL or path, OpenLineage style."""
    parts = urlsplit(str(source))
    if parts.scheme in ("file", "local"):
        return "file", parts.path or "/"
    if len(parts.scheme) <= 1:  # a plain path (or a Windows drive letter)
        return "file", str(source)
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")


@dataclass(frozen=True)
class ExportLineage:
    """What one export read and sent: enough for its OpenLineage input and output (counts only)."""

    export: ResolvedExport
    brand: str
    summary: Mapping[str, Any] = field(default_factory=dict)

    def facets(self) -> Any:
        """``OperatorLineage``: the export (rows read, files) in; the segment (contacts sent) out, unless
        it was a dry run, which changed nothing in Omnisend."""
        from airflow.providers.common.compat.openlineage.facet import (
            InputDataset,
            OutputDataset,
            OutputStatisticsOutputDatasetFacet,
        )
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.generated.input_statistics_input_dataset import (
            InputStatisticsInputDatasetFacet,
        )

        namespace, name = lake_dataset_name(self.export.source)
        if self.export.entity:
            name = f"{name.rstrip('/')}/{self.export.entity}"
        stats = InputStatisticsInputDatasetFacet(rowCount=int(self.summary.get("rows_read", 0)),
                                                 fileCount=len(self.export.files) or None)
        inputs = [InputDataset(namespace=namespace, name=name, inputFacets={"inputStatistics": stats})]
        outputs = []
        if not self.summary.get("dry_run"):
            sent = OutputStatisticsOutputDatasetFacet(rowCount=int(self.summary.get("sent", 0)))
            outputs.append(OutputDataset(namespace=f"{SCHEME}://{self.brand}",
                                         name=str(self.summary.get("segment", "")),
                                         outputFacets={"outputStatistics": sent}))
        return OperatorLineage(inputs=inputs, outputs=outputs)
