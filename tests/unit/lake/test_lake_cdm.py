"""CDM folders: model.json and *.manifest.cdm.json exports as Customer Insights writes them."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_omnisend.lake import (
    ColumnNotFound,
    CsvLayoutMismatch,
    EntityNotFound,
    ExportNotReady,
    LakeError,
    ManifestNotFound,
    PartitionUnreadable,
    iter_batches,
    resolve_export,
)
from airflow_provider_omnisend.testing.lake_fixtures import (
    write_cdm_export,
    write_manifest_export,
    write_manifest_of_manifests,
)


def test_model_json_resolves_newest_complete_refresh_and_streams_rows(cdm_export, sample, collect):
    export = resolve_export(str(cdm_export), segment="Customer")

    assert export.format == "cdm"
    assert export.entity == "Customer"
    assert export.export_id == "cdm:Customer:2026/01/15/0300"
    assert export.refresh_time == "2026-01-15T03:00:00Z"
    assert export.columns == sample.columns
    assert export.csv is not None and export.csv.header is False
    assert [f.split("/")[-6:] for f in export.files] == [
        ["Customer", "2026", "01", "15", "0300", "Customer_1.csv"],
        ["Customer", "2026", "01", "15", "0300", "Customer_2.csv"],
    ]
    assert all(Path(f).is_file() for f in export.files)

    data = collect(iter_batches(export, columns=["Email", "FirstName", "Phone"], batch_size=2))
    assert list(data) == ["Email", "FirstName", "Phone"]
    assert data["Email"] == sample.expected("Email")
    assert data["FirstName"] == sample.expected("FirstName")  # quotes, commas, newline, non-ASCII
    assert data["Phone"] == sample.expected("Phone")


def test_batches_are_bounded_by_batch_size(cdm_export):
    export = resolve_export(str(cdm_export))
    sizes = [b.num_rows for b in iter_batches(export, columns=["Email"], batch_size=2)]
    assert sizes == [2, 2, 1]


def test_incomplete_newest_refresh_falls_back_to_the_previous_complete_one(tmp_path, sample):
    folder = write_cdm_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                              refresh_times=sample.refreshes, incomplete_last=True)
    export = resolve_export(str(folder))
    assert export.export_id == "cdm:Customer:2026/01/14/0300"
    assert all("/2026/01/14/0300/" in f for f in export.files)


def test_only_an_incomplete_refresh_is_not_ready(tmp_path, sample):
    folder = write_cdm_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                              partitions=3, incomplete_last=True)
    with pytest.raises(ExportNotReady) as err:
        resolve_export(str(folder))
    assert "misses 1 of 3 partition file(s)" in str(err.value)
    assert "'Customer'" in str(err.value)
    assert str(folder) in str(err.value)


def test_new_refresh_changes_the_export_id(tmp_path, sample):
    folder = write_cdm_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                              refresh_times=sample.refreshes[:1])
    first = resolve_export(str(folder)).export_id
    write_cdm_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                     refresh_times=sample.refreshes)
    assert resolve_export(str(folder)).export_id != first


def test_manifest_cdm_json_export_with_header_and_semicolons(tmp_path, sample, collect):
    folder = write_manifest_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                                   refresh_times=sample.refreshes, header=True, delimiter=";")
    export = resolve_export(str(folder), segment="customer")
    assert export.export_id == "cdm:Customer:2026/01/15/0300"
    assert export.columns == sample.columns
    assert export.csv is not None and export.csv.header is True and export.csv.delimiter == ";"
    data = collect(iter_batches(export, columns=["FirstName", "Email"]))
    assert data["FirstName"] == sample.expected("FirstName")
    assert data["Email"] == sample.expected("Email")


def test_manifest_cdm_json_incomplete_refresh(tmp_path, sample):
    folder = write_manifest_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                                   refresh_times=sample.refreshes, incomplete_last=True)
    assert resolve_export(str(folder)).export_id == "cdm:Customer:2026/01/14/0300"


def test_manifest_attribute_groups_are_flattened(tmp_path, sample, collect):
    folder = write_manifest_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows)
    definition_file = folder / "Customer.cdm.json"
    doc = json.loads(definition_file.read_text())
    attrs = doc["definitions"][0]["hasAttributes"]
    doc["definitions"][0]["hasAttributes"] = [
        {"attributeGroupReference": {"attributeGroupName": "attributesAddedAtThisScope", "members": attrs}}
    ]
    definition_file.write_text(json.dumps(doc))
    export = resolve_export(str(folder))
    assert export.columns == sample.columns
    assert collect(iter_batches(export, columns=["Email"]))["Email"] == sample.expected("Email")


def test_entity_is_picked_by_segment_name_ignoring_case_spaces_and_separators(tmp_path, sample):
    folder = write_cdm_export(tmp_path, entity="VIP_Customers", columns=sample.columns, rows=sample.rows,
                              extra_entities=["Orders", "Customer"])
    assert resolve_export(str(folder), segment="vip customers").entity == "VIP_Customers"
    assert resolve_export(str(folder), segment="VIP-customers").entity == "VIP_Customers"
    assert resolve_export(str(folder), entity="VIP_Customers", segment="whatever").entity == "VIP_Customers"


def test_entity_not_found_lists_the_entities(tmp_path, sample):
    folder = write_cdm_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                              extra_entities=["Orders"])
    with pytest.raises(EntityNotFound) as err:
        resolve_export(str(folder), entity="Custmer")
    message = str(err.value)
    assert "'Custmer'" in message and "'Customer'" in message and "'Orders'" in message
    assert "Did you mean 'Customer'" in message
    assert "entity=" in message

    with pytest.raises(EntityNotFound) as err:
        resolve_export(str(folder), segment="Newsletter")
    assert "'Customer', 'Orders'" in str(err.value)


def test_entity_with_no_partitions_is_not_ready(tmp_path, sample):
    folder = write_cdm_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                              extra_entities=["Orders"])
    with pytest.raises(ExportNotReady, match="lists no partitions for entity 'Orders'"):
        resolve_export(str(folder), entity="Orders")


def test_the_only_entity_is_used_whatever_the_segment_is_called(cdm_export):
    assert resolve_export(str(cdm_export), segment="Spring newsletter").entity == "Customer"


@pytest.mark.parametrize("settings_on", ["entity", "model"])
def test_file_format_settings_are_inherited_from_entity_or_model(tmp_path, sample, collect, settings_on):
    folder = write_cdm_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                              header=True, delimiter="|", settings_on=settings_on)
    export = resolve_export(str(folder))
    assert export.csv is not None and (export.csv.header, export.csv.delimiter) == (True, "|")
    assert collect(iter_batches(export, columns=["FirstName"]))["FirstName"] == sample.expected("FirstName")


def test_model_json_file_itself_can_be_the_source(cdm_export):
    export = resolve_export(str(cdm_export / "model.json"))
    assert export.export_id == "cdm:Customer:2026/01/15/0300"


def test_locations_map_onto_a_renamed_local_copy(cdm_export, tmp_path, sample, collect):
    copy = tmp_path / "downloaded"
    shutil.copytree(cdm_export, copy)
    export = resolve_export(str(copy))
    assert all(f.startswith(str(copy) + "/Customer/2026/01/15/0300/") for f in export.files)
    assert collect(iter_batches(export, columns=["Email"]))["Email"] == sample.expected("Email")


def _hand_written_model(folder: Path, locations: list[str], **settings) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model = {
        "name": "x",
        "entities": [{
            "$type": "LocalEntity", "name": "Contacts",
            "attributes": [{"name": "Email", "dataType": "string"}, {"name": "Name", "dataType": "string"}],
            "partitions": [{"name": f"p{i}", "location": loc, "fileFormatSettings": {
                "$type": "CsvFormatSettings", **settings}} for i, loc in enumerate(locations)],
        }],
    }
    (folder / "model.json").write_text(json.dumps(model))


def test_locations_outside_the_ci_layout_are_found_by_probing(tmp_path, collect):
    folder = tmp_path / "copy"
    (folder / "Contacts").mkdir(parents=True)
    (folder / "Contacts" / "part-1.csv").write_text("a@example.com,A\n")
    (folder / "Contacts" / "part-2.csv").write_text("b@example.com,B\n")
    base = "https://acct.dfs.core.windows.net/cont/deep/export%20folder/Contacts"
    _hand_written_model(folder, [f"{base}/part-1.csv", f"{base}/part-2.csv"])
    export = resolve_export(str(folder))
    assert [Path(f).name for f in export.files] == ["part-1.csv", "part-2.csv"]
    assert collect(iter_batches(export, columns=["Email"]))["Email"] == ["a@example.com", "b@example.com"]


def test_relative_locations_quote_style_none_and_latin1(tmp_path, collect):
    folder = tmp_path / "x"
    (folder / "Contacts").mkdir(parents=True)
    (folder / "Contacts" / "p.csv").write_bytes('ève@example.com\t"Ève"\n'.encode("latin-1"))
    _hand_written_model(folder, ["Contacts/p.csv"], delimiter="\t", quoteStyle="QuoteStyle.None",
                        encoding="ISO-8859-1")
    export = resolve_export(str(folder))
    assert export.csv is not None and export.csv.quotechar is None
    data = collect(iter_batches(export, columns=["Email", "Name"]))
    assert data == {"Email": ["ève@example.com"], "Name": ['"Ève"']}  # no quoting: quotes are data


def test_unplaceable_location_is_a_clear_error(tmp_path):
    folder = tmp_path / "x"
    _hand_written_model(folder, ["https://acct.dfs.core.windows.net/cont/elsewhere/p.csv"])
    with pytest.raises(LakeError, match="Cannot place partition location"):
        resolve_export(str(folder))


def test_headerless_partition_with_wrong_column_count_names_file_and_counts(tmp_path, sample):
    folder = write_cdm_export(tmp_path, entity="Customer", columns=sample.columns[:3],
                              rows=[r[:3] for r in sample.rows], partitions=1)
    model_file = folder / "model.json"
    model = json.loads(model_file.read_text())
    model["entities"][0]["attributes"].append({"name": "Phone", "dataType": "string"})
    model_file.write_text(json.dumps(model))

    export = resolve_export(str(folder))
    with pytest.raises(CsvLayoutMismatch) as err:
        list(iter_batches(export, columns=["Email"]))
    message = str(err.value)
    assert "Customer_1.csv" in message
    assert "3 column(s)" in message and "4 attribute(s)" in message
    assert "@example.com" not in message  # never quote row data


def test_unknown_column_lists_the_available_ones(cdm_export):
    export = resolve_export(str(cdm_export))
    with pytest.raises(ColumnNotFound) as err:
        iter_batches(export, columns=["email"])
    message = str(err.value)
    assert "'email'" in message and "'Email'" in message and "'CustomerId'" in message
    assert "'email' -> 'Email'?" in message


def test_partition_deleted_after_resolving_is_reported_by_name(cdm_export):
    export = resolve_export(str(cdm_export))
    Path(export.files[1]).unlink()
    with pytest.raises(PartitionUnreadable) as err:
        list(iter_batches(export, columns=["Email"]))
    assert "Customer_2.csv" in str(err.value)


def test_empty_export_yields_nothing_and_logs_zero_rows(tmp_path, sample, caplog):
    folder = write_cdm_export(tmp_path, entity="Customer", columns=sample.columns, rows=[])
    export = resolve_export(str(folder))
    with caplog.at_level(logging.INFO, logger="airflow_provider_omnisend.lake"):
        assert list(iter_batches(export, columns=["Email"])) == []
    assert "Read 0 rows" in caplog.text


def test_folder_without_manifest_is_manifest_not_found(tmp_path):
    (tmp_path / "data.csv").write_text("Email\na@example.com\n")
    with pytest.raises(ManifestNotFound) as err:
        resolve_export(str(tmp_path), format="cdm")
    assert "model.json" in str(err.value) and "'data.csv'" in str(err.value)


def test_broken_model_json_says_so(tmp_path):
    (tmp_path / "model.json").write_text('{"entities": [')
    with pytest.raises(LakeError, match="is not valid JSON"):
        resolve_export(str(tmp_path))


# ------------------------------------------------------------------------------------ subManifests


def test_entities_of_nested_sub_manifests_are_read_relative_to_their_own_folders(tmp_path, sample, collect):
    root = tmp_path / "lake"
    export = write_manifest_export(root, entity="Customer", columns=sample.columns, rows=sample.rows,
                                   refresh_times=sample.refreshes)
    # lake/default.manifest.cdm.json -> CustomerInsights_<id>/Segments.manifest.cdm.json
    #   -> CustomerInsights_<id>/OmnisendExport/default.manifest.cdm.json (entity, definitions, partitions)
    write_manifest_of_manifests(root / "default.manifest.cdm.json",
                                [f"{export.parent.name}/Segments.manifest.cdm.json"])
    write_manifest_of_manifests(export.parent / "Segments.manifest.cdm.json",
                                [f"{export.name}/default.manifest.cdm.json"])

    resolved = resolve_export(str(root))
    assert (resolved.entity, resolved.columns) == ("Customer", sample.columns)
    assert resolved.export_id == "cdm:Customer:2026/01/15/0300"
    assert [f.removeprefix(f"{export}/") for f in resolved.files] == [
        "Customer/2026/01/15/0300/Customer_1.csv", "Customer/2026/01/15/0300/Customer_2.csv",
    ]
    data = collect(iter_batches(resolved, columns=list(sample.columns)))
    assert data == {c: sample.expected(c) for c in sample.columns}


def test_absolute_sub_manifest_definition_is_mapped_onto_the_given_folder(tmp_path, sample, collect):
    export = write_manifest_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows)
    root = export.parent
    url = (f"https://contosolake.dfs.core.windows.net/customerinsights/{root.name}/{export.name}/"
           "default.manifest.cdm.json")
    write_manifest_of_manifests(root / "root.manifest.cdm.json", [url])
    resolved = resolve_export(str(root))
    assert all(f.startswith(f"{export}/Customer/2026/01/15/0300/") for f in resolved.files)
    assert collect(iter_batches(resolved, columns=["Email"]))["Email"] == sample.expected("Email")


def test_a_manifest_reached_twice_contributes_its_entities_once(tmp_path, sample):
    export = write_manifest_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows)
    # Both manifests are in the folder, and one lists the other: Customer must not count twice.
    write_manifest_of_manifests(export / "all.manifest.cdm.json", ["default.manifest.cdm.json"])
    assert resolve_export(str(export)).entity == "Customer"


def test_sub_manifest_cycle_is_a_clear_error(tmp_path):
    root = write_manifest_of_manifests(tmp_path / "x" / "default.manifest.cdm.json",
                                       ["sub/Sub.manifest.cdm.json"])
    sub = write_manifest_of_manifests(tmp_path / "x" / "sub" / "Sub.manifest.cdm.json",
                                      ["../default.manifest.cdm.json"])
    with pytest.raises(LakeError) as err:
        resolve_export(str(root.parent))
    message = str(err.value)
    assert f"form a cycle: '{root}' -> '{sub}' -> '{root}'" in message
    assert f"fix the `definition` in '{sub}'" in message


def test_missing_sub_manifest_names_the_file_and_the_fix(tmp_path):
    root = write_manifest_of_manifests(tmp_path / "x" / "default.manifest.cdm.json",
                                       ["Customer/Customer.manifest.cdm.json"])
    with pytest.raises(LakeError) as err:
        resolve_export(str(root.parent))
    message = str(err.value)
    missing = root.parent / "Customer" / "Customer.manifest.cdm.json"
    assert f"The sub-manifest '{missing}' (manifestName 'Customer')" in message
    assert f"listed in `subManifests` of '{root}', does not exist" in message
    assert "copy the whole export folder, or re-run the export" in message


def test_absurdly_deep_sub_manifests_are_refused(tmp_path):
    folder = tmp_path / "x"
    for _ in range(15):
        write_manifest_of_manifests(folder / "default.manifest.cdm.json", ["d/default.manifest.cdm.json"])
        folder = folder / "d"
    with pytest.raises(LakeError, match=r"nest more than 10 levels deep \(.*/d/default\.manifest\.cdm\.json"):
        resolve_export(str(tmp_path / "x"))


# --------------------------------------------------------------------------- dataPartitionPatterns


def _use_patterns(folder: Path, *patterns: dict) -> None:
    """Replace the entity's dataPartitions in the export's manifest by ``patterns`` (which get the CSV
    format trait of the written partitions unless they set exhibitsTraits)."""
    path = folder / "default.manifest.cdm.json"
    manifest = json.loads(path.read_text())
    entity = manifest["entities"][0]
    traits = entity.pop("dataPartitions")[0]["exhibitsTraits"]
    entity["dataPartitionPatterns"] = [
        {"name": f"pattern{i}", "exhibitsTraits": traits, **p} for i, p in enumerate(patterns)
    ]
    path.write_text(json.dumps(manifest))


def test_glob_pattern_reads_the_newest_refresh_folder_and_skips_markers(tmp_path, sample, collect):
    folder = write_manifest_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                                   refresh_times=sample.refreshes, header=True, delimiter=";")
    _use_patterns(folder, {"rootLocation": "Customer/", "globPattern": "/**/*.csv",
                           "lastFileModifiedTime": "2026-01-15T03:20:00.0000000Z"})
    newest = folder / "Customer" / "2026" / "01" / "15" / "0300"
    other_row = "CustomerId;Email;FirstName;Phone\n9;zed@example.com;Zed;\n"
    (newest / "_SUCCESS").write_text("")
    (newest / "Customer_3.csv").write_text("")  # zero bytes: still being written
    (newest / "_committed_Customer_4.csv").write_text(other_row)
    (newest / ".Customer_5.csv").write_text(other_row)
    (newest / "_temporary").mkdir()
    (newest / "_temporary" / "Customer_6.csv").write_text(other_row)

    export = resolve_export(str(folder))
    assert export.export_id == "cdm:Customer:2026/01/15/0300"
    assert export.refresh_time == "2026-01-15T03:20:00Z"  # the pattern's lastFileModifiedTime
    assert [f.removeprefix(f"{folder}/") for f in export.files] == [
        "Customer/2026/01/15/0300/Customer_1.csv", "Customer/2026/01/15/0300/Customer_2.csv",
    ]
    assert export.csv is not None and (export.csv.header, export.csv.delimiter) == (True, ";")
    data = collect(iter_batches(export, columns=list(sample.columns)))
    assert data == {c: sample.expected(c) for c in sample.columns}


def test_regular_expression_pattern_must_match_the_whole_relative_path(tmp_path, sample, collect):
    folder = write_manifest_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows)
    # A .NET-style named group, as CDM manifests spell them.
    _use_patterns(folder, {"rootLocation": "Customer",
                           "regularExpression": r"/\d{4}/\d{2}/\d{2}/\d{4}/Customer_(?<n>\d+)\.csv"})
    newest = folder / "Customer" / "2026" / "01" / "15" / "0300"
    (newest / "Customer_1.csv.bak").write_text("9,zed@example.com,Zed,\n")  # only a prefix matches
    (newest / "Customer_x.csv").write_text("9,zed@example.com,Zed,\n")

    export = resolve_export(str(folder))
    assert [Path(f).name for f in export.files] == ["Customer_1.csv", "Customer_2.csv"]
    assert export.refresh_time == "2026-01-15T03:00:00Z"  # the entity's lastFileModifiedTime
    assert collect(iter_batches(export, columns=["Email"]))["Email"] == sample.expected("Email")


def test_pattern_matching_no_file_is_not_ready(tmp_path, sample):
    folder = write_manifest_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows)
    _use_patterns(folder, {"rootLocation": "Customer/", "globPattern": "/**/*.parquet"})
    with pytest.raises(ExportNotReady) as err:
        resolve_export(str(folder))
    message = str(err.value)
    assert "the manifest lists no partitions for entity 'Customer'" in message
    assert f"no data file matches its dataPartitionPatterns (globPattern '/**/*.parquet' under " \
           f"'{folder}/Customer';" in message


def test_invalid_regular_expression_is_a_clear_error(tmp_path, sample):
    folder = write_manifest_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows)
    _use_patterns(folder, {"rootLocation": "Customer/", "regularExpression": "/(unclosed.csv"})
    with pytest.raises(LakeError, match=r"regularExpression '/\(unclosed.csv' of the partition pattern "
                                        r"'pattern0' of entity 'Customer' .* is not a valid regular"):
        resolve_export(str(folder))


@pytest.mark.parametrize("by", ["trait", "extension"])
def test_parquet_partitions_found_by_a_pattern(tmp_path, sample, collect, by):
    folder = write_manifest_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows)
    table = pa.table({c: [r[i] for r in sample.rows] for i, c in enumerate(sample.columns)})
    for refresh in ("2026/01/14/0300", "2026/01/15/0300"):
        target = folder / "Customer" / refresh
        target.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.slice(0, 3), target / "part-00000.parquet")
        pq.write_table(table.slice(3), target / "part-00001.parquet")
    traits = [{"traitReference": "is.partition.format.parquet"}] if by == "trait" else []
    _use_patterns(folder, {"rootLocation": "Customer/", "globPattern": "**.parquet",
                           "exhibitsTraits": traits})

    export = resolve_export(str(folder))
    assert export.csv is None
    assert [f.removeprefix(f"{folder}/") for f in export.files] == [
        "Customer/2026/01/15/0300/part-00000.parquet", "Customer/2026/01/15/0300/part-00001.parquet",
    ]
    data = collect(iter_batches(export, columns=["Email", "FirstName"], batch_size=2))
    assert data == {"Email": sample.expected("Email"), "FirstName": sample.expected("FirstName")}
