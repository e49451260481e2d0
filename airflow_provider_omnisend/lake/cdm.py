"""Common Data Model folders as written by Dynamics 365 Customer Insights (model.json or manifests).

An export is complete when its manifest lists a refresh and every partition of that refresh exists;
there is no _SUCCESS marker. A manifest may list partitions of several refreshes (one
``<Table>/<YYYY>/<MM>/<DD>/<HHMM>/`` folder each): the newest complete refresh wins, so a refresh that
is still being written is never read half-way.

Partition locations are absolute https://<account>.dfs.core.windows.net URLs in model.json; they are
mapped onto the folder the user gave, so the same export reads through abfs://, az:// or a local copy.

A ``*.manifest.cdm.json`` may list ``subManifests`` (often one folder per entity): their entities count
as the export's, recursively. Relative paths in a sub-manifest (its ``definition``, ``entityPath``,
partition locations) are relative to that sub-manifest's own folder; absolute ones are mapped as above.

An entity may declare ``dataPartitionPatterns`` instead of (or besides) ``dataPartitions``: its data files
are then the files below the pattern's ``rootLocation`` whose path relative to it (with a leading "/")
matches the ``globPattern`` (``*``: any characters but "/", ``**``: any characters, ``?``: one character)
or else the ``regularExpression`` (full match). Zero-byte files and names starting with "_" or "."
(``_SUCCESS``, temporary files and folders) are skipped. Limitation: with patterns the manifest does not
enumerate the files, so the completeness of a refresh folder cannot be checked against a list: the newest
refresh folder whose files match is read, even if it is still being written.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from airflow_provider_omnisend.lake.errors import (
    EntityNotFound,
    ExportNotReady,
    LakeError,
    LakePathNotFound,
    ManifestNotFound,
)
from airflow_provider_omnisend.lake.export import CsvOptions, ResolvedExport, cdm_property_type
from airflow_provider_omnisend.lake.files import fingerprint
from airflow_provider_omnisend.lake.fs import Location, contained, find_files, list_dir, read_text

MODEL_JSON = "model.json"
MANIFEST_SUFFIX = ".manifest.cdm.json"
# <YYYY>/<MM>/<DD>/<HHMM>: the refresh folder Customer Insights writes each export's partitions to.
_DATE_FOLDERS = tuple(re.compile(rf"^\d{{{n}}}$") for n in (4, 2, 2, 4))
_CSV_TRAIT = "is.partition.format.csv"
_PARQUET_TRAIT = "is.partition.format.parquet"
# Sub-manifests nested deeper than this are refused: real exports nest one or two levels.
_MAX_SUB_MANIFEST_DEPTH = 10
# A CDM globPattern, split into its wildcards (a whole "/**/" segment also matches no folder at all).
_GLOB_WILDCARDS = {"/**/": "/(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "."}
_GLOB_SPLIT = re.compile(r"(/\*\*/|\*\*|\*|\?)")


@dataclass(frozen=True)
class Partition:
    """One data file of an entity, already mapped onto the user's folder."""

    location: Location
    refresh_folder: str | None  # "YYYY/MM/DD/HHMM" when the CI layout is used
    refresh_time: str | None
    csv: CsvOptions | None  # None: a Parquet partition


@dataclass(frozen=True)
class PartitionPattern:
    """A ``dataPartitionPatterns`` entry; its files are found by listing ``root`` when the entity is read."""

    entity: str
    name: str
    manifest: Location  # the manifest declaring it (for messages)
    root: Location
    glob: str | None
    regex: str | None
    traits: tuple[Any, ...]  # exhibitsTraits: the partition format (csv/parquet) and CSV arguments
    refresh_time: str | None

    @property
    def described(self) -> str:
        rule = f"globPattern {self.glob!r}" if self.glob else f"regularExpression {self.regex!r}"
        return f"{rule} under {self.root.url!r}"


@dataclass(frozen=True)
class Entity:
    name: str
    columns: tuple[str, ...]
    partitions: tuple[Partition, ...]  # listed in the manifest (dataPartitions / partitions)
    patterns: tuple[PartitionPattern, ...] = ()
    #: declared types of the typed columns (see export.cdm_property_type)
    column_types: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Manifest:
    location: Location  # the manifest file
    entities: tuple[Entity, ...]


# ------------------------------------------------------------------------------------- finding manifests


def is_manifest_name(name: str) -> bool:
    return name == MODEL_JSON or name.endswith(MANIFEST_SUFFIX)


def find_manifests(folder: Location) -> list[Location]:
    """The manifests directly in ``folder``: model.json if present (it is what CI writes for ADLS
    exports), else every ``*.manifest.cdm.json``."""
    names = sorted(posixpath.basename(e["name"].rstrip("/")) for e in list_dir(folder))
    if MODEL_JSON in names:
        return [folder.child(MODEL_JSON)]
    manifests = [folder.child(n) for n in names if n.endswith(MANIFEST_SUFFIX)]
    if not manifests:
        raise ManifestNotFound(folder.url, found=names)
    return manifests


def load_manifests(manifests: Sequence[Location]) -> list[Manifest]:
    """The manifests with their entities; one reached twice (say, in the folder and as another's
    sub-manifest) contributes its entities once."""
    loaded: set[str] = set()
    return [load_manifest(m, loaded=loaded) for m in manifests]


def load_manifest(manifest: Location, *, loaded: set[str] | None = None) -> Manifest:
    """One manifest; for a ``*.manifest.cdm.json`` with the entities of its sub-manifests too.

    ``loaded`` holds the paths of the manifests already read (and is updated): those are not read again.
    """
    loaded = set() if loaded is None else loaded
    if manifest.path in loaded:
        return Manifest(location=manifest, entities=())
    doc = _json(manifest)
    mapper = _LocationMapper(manifest.parent())
    if manifest.name == MODEL_JSON:
        loaded.add(manifest.path)
        return Manifest(location=manifest, entities=tuple(_model_json_entities(manifest, doc, mapper)))
    entities = _manifest_tree_entities(manifest, doc, mapper, chain=(), loaded=loaded)
    return Manifest(location=manifest, entities=tuple(entities))


def _json(loc: Location) -> dict[str, Any]:
    text = read_text(loc, what="the CDM manifest")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise LakeError(
            f"The CDM manifest {loc.url!r} is not valid JSON ({err.msg} at line {err.lineno}). It may still "
            "be being written; if it stays broken, re-run the export."
        ) from err
    if not isinstance(doc, dict):
        raise LakeError(f"The CDM manifest {loc.url!r} is not a JSON object; is this really a manifest?")
    return doc


# ----------------------------------------------------------------------------------------- model.json


def _csv_from_settings(settings: Mapping[str, Any] | None, fallback: CsvOptions) -> CsvOptions:
    """CsvFormatSettings -> CsvOptions; unset keys keep the fallback (entity/model level settings)."""
    if not settings:
        return fallback
    quote = fallback.quotechar
    style = str(settings.get("quoteStyle", "")).lower()
    if style.endswith("none"):
        quote = None
    elif style.endswith("csv"):
        quote = '"'
    return CsvOptions(
        header=bool(settings.get("columnHeaders", fallback.header)),
        delimiter=str(settings.get("delimiter", fallback.delimiter)),
        quotechar=quote,
        encoding=str(settings.get("encoding", fallback.encoding)).lower(),
    )


def _is_parquet(settings: Mapping[str, Any] | None, location: str) -> bool:
    kind = str((settings or {}).get("$type", "")).lower()
    return "parquet" in kind or urlsplit(location).path.lower().endswith(".parquet")


def _model_json_entities(manifest: Location, doc: Mapping[str, Any], mapper: _LocationMapper) -> list[Entity]:
    model_csv = _csv_from_settings(doc.get("fileFormatSettings"), CsvOptions(header=False))
    entities = []
    for raw in doc.get("entities") or []:
        name = raw.get("name")
        if not name:
            continue
        attributes = [a for a in raw.get("attributes") or [] if isinstance(a, dict) and a.get("name")]
        columns = tuple(a["name"] for a in attributes)
        types = _typed(attributes, "dataType")
        entity_csv = _csv_from_settings(raw.get("fileFormatSettings"), model_csv)
        partitions = []
        for part in raw.get("partitions") or []:
            location = part.get("location")
            if not location:
                continue
            settings = part.get("fileFormatSettings")
            loc = mapper.map(location)
            partitions.append(Partition(
                location=loc,
                refresh_folder=_refresh_folder(loc.path),
                refresh_time=part.get("refreshTime"),
                csv=None if _is_parquet(settings, location) else _csv_from_settings(settings, entity_csv),
            ))
        entities.append(Entity(name=name, columns=columns, partitions=tuple(partitions), column_types=types))
    return entities


# ------------------------------------------------------------------------------ *.manifest.cdm.json


def _trait_arguments(traits: Sequence[Any] | None) -> tuple[str | None, dict[str, str]]:
    """The partition format trait (csv/parquet) and its arguments, from ``exhibitsTraits``."""
    for trait in traits or []:
        ref = trait.get("traitReference") if isinstance(trait, dict) else trait
        ref = ref.get("traitName", "") if isinstance(ref, dict) else str(ref or "")
        if ref.lower() in (_CSV_TRAIT, _PARQUET_TRAIT):
            args = {}
            for arg in trait.get("arguments") or [] if isinstance(trait, dict) else []:
                if isinstance(arg, dict) and "name" in arg:
                    args[str(arg["name"])] = str(arg.get("value", ""))
            return ref.lower(), args
    return None, {}


def _csv_from_trait(args: Mapping[str, str]) -> CsvOptions:
    quote = args.get("quote", '"')
    return CsvOptions(
        header=args.get("columnHeaders", "false").strip().lower() == "true",
        delimiter=args.get("delimiter", ","),
        quotechar=quote or None,
        encoding=args.get("encoding", "utf-8").lower(),
    )


def _attributes(attributes: Sequence[Any]) -> list[dict[str, Any]]:
    """Attributes from ``hasAttributes``, flattening attribute group references."""
    found: list[dict[str, Any]] = []
    for attr in attributes or []:
        if not isinstance(attr, dict):
            continue
        if "name" in attr:
            found.append(attr)
        group = attr.get("attributeGroupReference")
        if isinstance(group, dict):
            found.extend(_attributes(group.get("members") or []))
    return found


def _typed(attributes: Sequence[dict[str, Any]], key: str) -> tuple[tuple[str, str], ...]:
    """(column, property type) of the attributes whose declared ``key`` type is not text."""
    typed = ((str(a["name"]), cdm_property_type(a.get(key))) for a in attributes)
    return tuple((name, kind) for name, kind in typed if kind is not None)


def _entity_columns(
    manifest: Location, entity_path: str, cache: dict[str, dict[str, Any]], mapper: _LocationMapper
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The entity's columns and the declared types of its typed columns (``dataFormat``)."""
    file_part, _, definition = entity_path.rpartition("/")
    if not file_part:
        file_part, definition = entity_path, ""
    doc_loc = mapper.inside(manifest.parent().child(file_part), entity_path, "entityPath")
    if doc_loc.path not in cache:
        cache[doc_loc.path] = _json(doc_loc)
    for item in cache[doc_loc.path].get("definitions") or []:
        if not definition or item.get("entityName") == definition:
            attributes = _attributes(item.get("hasAttributes") or [])
            return tuple(str(a["name"]) for a in attributes), _typed(attributes, "dataFormat")
    raise LakeError(
        f"The entity definition {definition!r} is not in {doc_loc.url!r} (referenced by entityPath "
        f"{entity_path!r} in {manifest.url!r}). The manifest and its entity files are out of step: re-run "
        "the export."
    )


def _manifest_partition(loc: Location, traits: Sequence[Any] | None, refresh_time: str | None) -> Partition:
    """A partition of a ``*.manifest.cdm.json`` entity, listed or matched by a pattern: Parquet by its
    format trait or, without one, by the file extension; else CSV with the trait's arguments."""
    kind, args = _trait_arguments(traits)
    parquet = kind == _PARQUET_TRAIT or (kind is None and loc.path.lower().endswith(".parquet"))
    return Partition(
        location=loc,
        refresh_folder=_refresh_folder(loc.path),
        refresh_time=refresh_time,
        csv=None if parquet else _csv_from_trait(args),
    )


def _manifest_entities(manifest: Location, doc: Mapping[str, Any], mapper: _LocationMapper) -> list[Entity]:
    """The entities declared in one ``*.manifest.cdm.json`` itself (not in its sub-manifests)."""
    folder = manifest.parent()
    definitions: dict[str, dict[str, Any]] = {}
    entities = []
    for raw in doc.get("entities") or []:
        name = raw.get("entityName")
        if not name:
            continue
        entity_path = raw.get("entityPath") or f"{name}.cdm.json/{name}"
        columns, types = _entity_columns(manifest, entity_path, definitions, mapper)
        entity_time = raw.get("lastFileModifiedTime")
        partitions = tuple(
            _manifest_partition(
                mapper.map(part["location"], base=folder),
                part.get("exhibitsTraits"),
                part.get("refreshTime") or part.get("lastFileModifiedTime") or entity_time,
            )
            for part in raw.get("dataPartitions") or []
            if part.get("location")
        )
        patterns = tuple(
            PartitionPattern(
                entity=name,
                name=str(pattern.get("name") or ""),
                manifest=manifest,
                root=mapper.map(pattern.get("rootLocation") or "", base=folder, what="rootLocation"),
                glob=(pattern.get("globPattern") or "").strip() or None,
                regex=(pattern.get("regularExpression") or "").strip() or None,
                traits=tuple(pattern.get("exhibitsTraits") or ()),
                refresh_time=pattern.get("lastFileModifiedTime") or entity_time,
            )
            for pattern in raw.get("dataPartitionPatterns") or []
        )
        entities.append(Entity(name=name, columns=columns, partitions=partitions, patterns=patterns,
                               column_types=types))
    return entities


def _manifest_tree_entities(
    manifest: Location,
    doc: Mapping[str, Any],
    mapper: _LocationMapper,
    *,
    chain: tuple[Location, ...],
    loaded: set[str],
) -> list[Entity]:
    """The entities of ``manifest`` and, recursively, of its ``subManifests``.

    ``chain`` is the manifests that led here (root first), to report cycles; ``loaded`` the paths of all
    manifests read so far, so that one listed twice (not in a cycle) contributes its entities once.
    """
    loaded.add(manifest.path)
    chain = (*chain, manifest)
    entities = _manifest_entities(manifest, doc, mapper)
    for ref in doc.get("subManifests") or []:
        definition = ref.get("definition") if isinstance(ref, dict) else None
        if not definition:
            continue
        sub = mapper.map(str(definition), base=manifest.parent(), what="sub-manifest location")
        if any(m.path == sub.path for m in chain):
            raise LakeError(
                "The CDM sub-manifests form a cycle: "
                + " -> ".join(repr(m.url) for m in (*chain, sub))
                + ". A manifest must not list itself, or a manifest that lists it, in `subManifests`: fix "
                f"the `definition` in {manifest.url!r} (or re-run the export)."
            )
        if sub.path in loaded:
            continue
        if len(chain) > _MAX_SUB_MANIFEST_DEPTH:
            raise LakeError(
                f"The CDM sub-manifests below {chain[0].url!r} nest more than {_MAX_SUB_MANIFEST_DEPTH} "
                f"levels deep ({manifest.url!r} lists {sub.url!r}); exports nest one or two. Check the "
                "`subManifests` definitions for a loop through copies of the manifests, or point `source` "
                "at a deeper folder."
            )
        sub_doc = _sub_manifest_json(sub, listed_in=manifest, name=ref.get("manifestName"))
        entities += _manifest_tree_entities(sub, sub_doc, mapper, chain=chain, loaded=loaded)
    return entities


def _sub_manifest_json(sub: Location, *, listed_in: Location, name: Any) -> dict[str, Any]:
    try:
        return _json(sub)
    except LakePathNotFound as err:
        raise LakeError(
            f"The sub-manifest {sub.url!r} (manifestName {name!r}), listed in `subManifests` of "
            f"{listed_in.url!r}, does not exist. The export is incomplete or was copied without all its "
            "sub-folders: copy the whole export folder, or re-run the export. Its `definition` is relative "
            "to the folder of the manifest that lists it."
        ) from err


# ---------------------------------------------------------------------------------- location mapping


class _LocationMapper:
    """Map partition locations onto the folder the user gave (the export folder holding the manifest).

    Relative locations are relative to ``base`` (the folder of the manifest listing them, which differs
    from the export folder for sub-manifests). For absolute ones (https://…, adls:/…) the part below the
    export folder is found by, in order: the longest tail of the given folder's path that appears in the
    location; the CI layout ``<Table>/<YYYY>/<MM>/<DD>/<HHMM>/<file>``; probing the filesystem once for
    the shortest prefix to drop (remembered for the other partitions).
    """

    def __init__(self, folder: Location) -> None:
        self.folder = folder
        self.folder_segments = [s for s in folder.path.split("/") if s]
        self._probed: dict[tuple[str, ...], int] = {}

    def map(
        self, location: str, *, base: Location | None = None, what: str = "partition location"
    ) -> Location:
        parsed = urlsplit(location)
        is_absolute = bool(parsed.scheme) or location.startswith("/")
        path = unquote(parsed.path if parsed.scheme else location)
        segments = [s for s in path.split("/") if s and s != "."]
        if not is_absolute:
            return self.inside(_below(base or self.folder, segments), location, what)
        relative = self._by_folder_tail(segments) or self._by_ci_layout(segments) or self._by_probe(segments)
        if relative is None:
            raise LakeError(
                f"Cannot place {what} {location!r} below {self.folder.url!r}: neither the folder "
                "name nor the CustomerInsights layout <Table>/<YYYY>/<MM>/<DD>/<HHMM>/<file> appears in it, "
                "and no suffix of it exists in the folder. Point `source` at the folder holding the manifest."
            )
        return self.inside(self.folder.child("/".join(relative)), location, what)

    def inside(self, loc: Location, location: str, what: str) -> Location:
        """``loc`` normalised, if it stays inside the export folder; else a LakeError naming the entry
        (never reading it: its content could be anybody's file)."""
        kept = contained(self.folder, loc)
        if kept is None:
            raise LakeError(
                f"The {what} {location!r} points outside the export folder {self.folder.url!r} (after "
                "decoding and resolving '..'); it was not read. Manifests may only reference files below "
                "the folder holding them: fix the manifest, or point `source` at the export's root.")
        return kept

    def _by_folder_tail(self, segments: list[str]) -> list[str] | None:
        own = self.folder_segments
        for size in range(len(own), 0, -1):
            tail = own[-size:]
            for start in range(len(segments) - size):
                if segments[start:start + size] == tail:
                    return segments[start + size:]
        return None

    @staticmethod
    def _by_ci_layout(segments: list[str]) -> list[str] | None:
        return segments[-6:] if len(segments) >= 6 and _refresh_folder("/".join(segments)) else None

    def _by_probe(self, segments: list[str]) -> list[str] | None:
        key = tuple(segments[:1])
        if key in self._probed:
            return segments[self._probed[key]:]
        for drop in range(1, len(segments)):
            if self.folder.fs.exists(self.folder.child("/".join(segments[drop:])).path):
                self._probed[key] = drop
                return segments[drop:]
        return None


def _below(folder: Location, segments: Sequence[str]) -> Location:
    """``folder`` joined with relative path ``segments``, resolving ".." so that the URL stays clean too
    (object stores do not resolve "..")."""
    loc = folder
    for segment in segments:
        loc = loc.parent() if segment == ".." else loc.child(segment)
    return loc


def _refresh_folder(path: str) -> str | None:
    segments = path.split("/")
    if len(segments) >= 5 and all(p.match(s) for p, s in zip(_DATE_FOLDERS, segments[-5:-1], strict=True)):
        return "/".join(segments[-5:-1])
    return None


# ----------------------------------------------------------------------------- partition patterns


def _pattern_regex(pattern: PartitionPattern) -> re.Pattern[str]:
    """The pattern's globPattern (preferred, as in the CDM SDK) or regularExpression, compiled; it is
    matched against whole "/"-prefixed paths below the rootLocation."""
    if pattern.glob:
        glob = pattern.glob if pattern.glob.startswith("/") else f"/{pattern.glob}"
        parts = _GLOB_SPLIT.split(glob)  # literals at even indices, wildcards at odd ones
        return re.compile("".join(_GLOB_WILDCARDS[p] if i % 2 else re.escape(p) for i, p in enumerate(parts)))
    where = f"partition pattern {pattern.name!r} of entity {pattern.entity!r} in {pattern.manifest.url!r}"
    if not pattern.regex:
        raise LakeError(
            f"The {where} has neither a globPattern nor a regularExpression, so its files cannot be found. "
            "Add one of them to the manifest (or list the files in dataPartitions)."
        )
    try:
        # .NET/Java spell named groups (?<name>...); Python spells them (?P<name>...).
        return re.compile(re.sub(r"\(\?<(?![=!])", "(?P<", pattern.regex))
    except re.error as err:
        raise LakeError(
            f"The regularExpression {pattern.regex!r} of the {where} is not a valid regular expression "
            f"({err}). Fix it in the manifest."
        ) from err


def _is_data_file(relative: str, entry: Mapping[str, Any]) -> bool:
    """Not a zero-byte marker, nor below a name starting with "_" or "." (_SUCCESS, temporary files)."""
    return entry.get("size") != 0 and not any(s.startswith(("_", ".")) for s in relative.split("/"))


def _pattern_partitions(pattern: PartitionPattern) -> list[Partition]:
    """The data files below the pattern's root that it matches, as partitions (sorted by path)."""
    regex = _pattern_regex(pattern)
    base = pattern.root.path.rstrip("/") + "/"
    partitions = []
    for entry in find_files(pattern.root):
        name = str(entry["name"])
        relative = name[len(base):] if name.startswith(base) else ""
        if relative and _is_data_file(relative, entry) and regex.fullmatch(f"/{relative}"):
            partitions.append(
                _manifest_partition(pattern.root.child(relative), pattern.traits, pattern.refresh_time)
            )
    return partitions


def entity_partitions(entity: Entity) -> tuple[Partition, ...]:
    """The partitions listed for ``entity``, then the files its partition patterns match (each file once)."""
    seen = {p.location.path for p in entity.partitions}
    matched = []
    for pattern in entity.patterns:
        for part in _pattern_partitions(pattern):
            if part.location.path not in seen:
                seen.add(part.location.path)
                matched.append(part)
    return entity.partitions + tuple(matched)


def _no_partitions_reason(entity: Entity) -> str:
    reason = f"the manifest lists no partitions for entity {entity.name!r}"
    if entity.patterns:
        searched = "; ".join(p.described for p in entity.patterns)
        reason += (
            f" and no data file matches its dataPartitionPatterns ({searched}; zero-byte files and names "
            "starting with '_' or '.' are skipped)"
        )
    return reason


# ------------------------------------------------------------------------------- choosing an export


def _squash(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


def pick_entity(manifests: Sequence[Manifest], *, entity: str | None, segment: str | None) -> Entity:
    """The explicit ``entity``; else the entity named like ``segment``; else the only entity."""
    entities = [e for m in manifests for e in m.entities]
    names = [e.name for e in entities]
    where = ", ".join(m.location.url for m in manifests)
    if entity:
        for e in entities:
            if e.name == entity:
                return e
        matches = [e for e in entities if e.name.lower() == entity.lower()]
        if len(matches) == 1:
            return matches[0]
        raise EntityNotFound(wanted=entity, available=names, manifest=where)
    if segment:
        matches = [e for e in entities if _squash(e.name) == _squash(segment)]
        if len(matches) == 1:
            return matches[0]
    if len(entities) == 1:
        return entities[0]
    raise EntityNotFound(wanted=segment if segment else None, available=names, manifest=where)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    # .NET writes 7 fractional digits; Python accepts at most 6.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _folder_time(folder: str) -> datetime:
    year, month, day, hhmm = folder.split("/")
    return datetime(int(year), int(month), int(day), int(hhmm[:2]), int(hhmm[2:]), tzinfo=UTC)


@dataclass(frozen=True)
class _Refresh:
    folder: str  # "YYYY/MM/DD/HHMM", or "" for partitions outside the CI layout
    partitions: tuple[Partition, ...]

    @property
    def when(self) -> datetime | None:
        if self.folder:
            return _folder_time(self.folder)
        times = [t for t in (_parse_time(p.refresh_time) for p in self.partitions) if t]
        return max(times) if times else None

    @property
    def refresh_time(self) -> str | None:
        times = [t for t in (_parse_time(p.refresh_time) for p in self.partitions) if t]
        best = max(times) if times else self.when
        return best.isoformat().replace("+00:00", "Z") if best else None


def group_refreshes(partitions: Sequence[Partition]) -> list[_Refresh]:
    """Partitions grouped by refresh folder (``<YYYY>/<MM>/<DD>/<HHMM>``), oldest first.

    Partitions outside that layout form one group: their refreshTime values differ per file even
    within one refresh, so grouping by them would split a refresh and export part of it.
    """
    groups: dict[str, list[Partition]] = defaultdict(list)
    for part in partitions:
        groups[part.refresh_folder or ""].append(part)
    refreshes = [_Refresh(folder=key, partitions=tuple(parts)) for key, parts in groups.items()]
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(refreshes, key=lambda r: (r.when or epoch, r.folder))


def _check_files(
    refresh: _Refresh, listings: dict[str, dict[str, dict[str, Any]]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Details of the partition files of ``refresh`` that exist, and the URLs of those missing.

    Each folder is listed once (not one request per file), which matters on object stores.
    """
    found: list[dict[str, Any]] = []
    missing: list[str] = []
    for part in refresh.partitions:
        folder = part.location.parent()
        if folder.path not in listings:
            listings[folder.path] = {e["name"].rstrip("/"): e for e in list_dir(folder)}
        entry = listings[folder.path].get(part.location.path)
        if entry is None or entry.get("type") == "directory":
            missing.append(part.location.url)
        else:
            found.append(entry)
    return found, missing


def resolve_cdm(
    source: str, manifest_files: Sequence[Location], *, entity: str | None, segment: str | None
) -> ResolvedExport:
    """The newest complete refresh of the chosen entity; ExportNotReady when there is none yet."""
    folder = manifest_files[0].parent()
    manifests = load_manifests(manifest_files)
    chosen = pick_entity(manifests, entity=entity, segment=segment)
    if not chosen.columns:
        raise LakeError(
            f"Entity {chosen.name!r} in {folder.url!r} declares no attributes, so its columns are unknown. "
            "Re-run the export; the manifest looks incomplete."
        )
    refreshes = group_refreshes(entity_partitions(chosen))
    if not refreshes:
        raise ExportNotReady(source, reason=_no_partitions_reason(chosen))
    listings: dict[str, dict[str, dict[str, Any]]] = {}
    newest_missing: list[str] = []
    for refresh in reversed(refreshes):
        entries, missing = _check_files(refresh, listings)
        if missing:
            newest_missing = newest_missing or missing
            continue
        formats = {p.csv for p in refresh.partitions}
        if len(formats) > 1:
            raise LakeError(
                f"Refresh {refresh.folder or '(latest)'!r} of entity {chosen.name!r} in {folder.url!r} mixes "
                "partition formats (CSV settings differ between partitions); re-run the export."
            )
        key = refresh.folder or refresh.refresh_time or fingerprint(folder, entries)
        return ResolvedExport(
            source=source,
            format="cdm",
            export_id=f"cdm:{chosen.name}:{key}",
            files=tuple(p.location.url for p in refresh.partitions),
            columns=chosen.columns,
            column_types=chosen.column_types,
            entity=chosen.name,
            csv=formats.pop(),
            refresh_time=refresh.refresh_time,
        )
    newest = refreshes[-1]
    raise ExportNotReady(
        source,
        reason=(
            f"entity {chosen.name!r}: the newest refresh {newest.folder or '(latest)'!r} still misses "
            f"{len(newest_missing)} of {len(newest.partitions)} partition file(s) listed in the manifest "
            f"(e.g. {', '.join(repr(u) for u in newest_missing[:3])}), and no older refresh is complete. "
            "If the export is still being written, wait for it (the export-ready sensor does); if it "
            "failed, re-run the export in Customer Insights"
        ),
    )
