"""Reading image manifests (Docker v2, Docker manifest lists, OCI manifests and indexes).

ECR's BatchGetImage, SWR's tag list and the OCI Distribution API all hand out the manifest
JSON; this module turns it into the config, layer and child rows of the unified model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union


from .values import BadValue, json_loads, to_int

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST_V1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

INDEX_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
ALL_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)


@dataclass
class Blob:
    digest: Optional[str]
    size_bytes: Optional[int]
    media_type: Optional[str]


@dataclass
class Child:
    digest: Optional[str]
    size_bytes: Optional[int]
    media_type: Optional[str]
    platform_os: Optional[str] = None
    platform_arch: Optional[str] = None
    platform_variant: Optional[str] = None


@dataclass
class Manifest:
    media_type: Optional[str]
    config: Optional[Blob] = None
    layers: List[Blob] = field(default_factory=list)
    children: List[Child] = field(default_factory=list)
    artifact_type: Optional[str] = None
    annotations: Dict[str, Any] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES or bool(self.children)

    @property
    def content_size(self) -> Optional[int]:
        """Config plus layers: what a registry like SWR or ECR reports as the image size."""
        if self.is_index or self.config is None:
            return None
        sizes = [self.config.size_bytes] + [layer.size_bytes for layer in self.layers]
        if any(size is None for size in sizes):
            return None
        return sum(sizes)  # type: ignore[arg-type]


class ManifestError(ValueError):
    """A manifest that is not JSON or not an object."""


def parse_manifest(raw: Union[str, bytes, Dict[str, Any]], media_type: Optional[str] = None) -> Manifest:
    """Parse a manifest document; fields that are unsound are reported in `problems`."""
    if isinstance(raw, (str, bytes)):
        try:
            doc = json_loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from None
    else:
        doc = raw
    if not isinstance(doc, dict):
        raise ManifestError(f"manifest is a JSON {type(doc).__name__}, not an object")
    media_type = doc.get("mediaType") or media_type
    if not media_type:
        if "manifests" in doc:
            media_type = OCI_INDEX
        elif doc.get("schemaVersion") == 1:
            media_type = DOCKER_MANIFEST_V1
        elif "layers" in doc:
            media_type = OCI_MANIFEST
    result = Manifest(media_type=media_type, artifact_type=doc.get("artifactType"))
    annotations = doc.get("annotations")
    if isinstance(annotations, dict):
        result.annotations = annotations
    if media_type not in ALL_TYPES and media_type not in (DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED):
        result.problems.append(f"unknown manifest media type {media_type!r}")
    if isinstance(doc.get("config"), dict):
        result.config = _blob(doc["config"], result.problems, "config")
    for position, layer in enumerate(_list(doc.get("layers"), result.problems, "layers")):
        result.layers.append(_blob(layer, result.problems, f"layer {position}"))
    if not result.layers and isinstance(doc.get("fsLayers"), list):  # Docker schema 1
        for layer in reversed(doc["fsLayers"]):
            if isinstance(layer, dict):
                result.layers.append(Blob(layer.get("blobSum"), None, None))
    for position, child in enumerate(_list(doc.get("manifests"), result.problems, "manifests")):
        result.children.append(_child(child, result.problems, position))
    return result


def _list(value: Any, problems: List[str], what: str) -> List[Dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{what} is not a list")
        return []
    good = [item for item in value if isinstance(item, dict)]
    if len(good) != len(value):
        problems.append(f"{len(value) - len(good)} entries of {what} are not objects")
    return good


def _size(value: Any, problems: List[str], what: str) -> Optional[int]:
    try:
        return to_int(value)
    except BadValue as exc:
        problems.append(f"{what} size: {exc}")
        return None


def _blob(doc: Dict[str, Any], problems: List[str], what: str) -> Blob:
    if not doc.get("digest"):
        problems.append(f"{what} has no digest")
    return Blob(doc.get("digest"), _size(doc.get("size"), problems, what), doc.get("mediaType"))


def _child(doc: Dict[str, Any], problems: List[str], position: int) -> Child:
    platform = doc.get("platform") if isinstance(doc.get("platform"), dict) else {}
    return Child(
        digest=doc.get("digest"),
        size_bytes=_size(doc.get("size"), problems, f"manifest {position}"),
        media_type=doc.get("mediaType"),
        platform_os=platform.get("os"),
        platform_arch=platform.get("architecture"),
        platform_variant=platform.get("variant"),
    )


def image_fields(manifest: Manifest) -> Dict[str, Any]:
    """The `images` columns a manifest tells: config blob, counts, artifact type."""
    fields: Dict[str, Any] = {
        "media_type": manifest.media_type,
        "layer_count": len(manifest.layers) if not manifest.is_index else None,
        "child_count": len(manifest.children) if manifest.is_index else None,
    }
    if manifest.config is not None:
        fields.update(
            config_digest=manifest.config.digest,
            config_size_bytes=manifest.config.size_bytes,
            config_media_type=manifest.config.media_type,
        )
    if manifest.artifact_type:
        fields["artifact_media_type"] = manifest.artifact_type
    return fields


def layer_rows(key: Dict[str, Any], manifest: Manifest) -> List[Dict[str, Any]]:
    """`images__layers` rows; `key` holds provider, registry, repository and image_digest."""
    return [
        {**key, "position": position, "digest": layer.digest, "size_bytes": layer.size_bytes, "media_type": layer.media_type}
        for position, layer in enumerate(manifest.layers)
    ]


def child_rows(key: Dict[str, Any], manifest: Manifest) -> List[Dict[str, Any]]:
    """`images__manifests` rows of an index, in index order."""
    return [
        {
            **key,
            "position": position,
            "digest": child.digest,
            "media_type": child.media_type,
            "platform_os": child.platform_os,
            "platform_arch": child.platform_arch,
            "platform_variant": child.platform_variant,
            "size_bytes": child.size_bytes,
        }
        for position, child in enumerate(manifest.children)
    ]
