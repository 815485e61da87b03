"""Bad input corpus: emulators serve records that are missing fields, mistyped, not JSON, of an
unknown type, oddly named, or paged wrongly. Each case states its outcome: the record loads as
far as it is sound and a `load_problems` row names registry, call and reason; or, where going
on would be wrong (a repeating page token, an answer without its list), the run stops with a
clear `BadResponseError`. Everything not targeted by a case loads exactly.

The non-fatal cases of a source share one load (each bends a different record); the fatal
ones run alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, List

import pytest

from emulators.base import Response
from pipelines.cli import _root_cause
from sources.errors import BadResponseError
from tests.reliability.cases import available
from tests.reliability.support import FIGURES, load, serving
from tests.support import expected_children, expected_images, expected_layers, expected_tags, loaded_children, loaded_images, loaded_layers, current_tags, query, truncate_ms, truncate_us

AVAILABLE = {case.provider: case for case in available()}


@dataclass
class Bad:
    """One bad input: `install(emulator, inventory, targets)` bends the answers and records the
    keys it touched in `targets[name]`; `check(ctx)` asserts the outcome."""

    name: str
    install: Callable[..., None]
    check: Callable[..., None]


# ------------------------------------------------------------------ ECR
ECR_REGION = "us-east-1"


def ecr_registry(region: str = ECR_REGION) -> str:
    from emulators.ecr import DEFAULT_ACCOUNT

    return f"{DEFAULT_ACCOUNT}.dkr.ecr.{region}.amazonaws.com"


def ecr_inventory(case):
    return case.inventory(seed=41, repositories=6, images=60)


def _singles(inventory):
    """Top-level single-platform images, in a fixed order (each case takes its own)."""
    out = []
    for repo in sorted(inventory.repositories(), key=lambda r: r.name):
        children = {c.digest for image in repo.images.values() for c in image.children}
        for digest in sorted(repo.images):
            image = repo.images[digest]
            if not image.is_index and digest not in children:
                out.append((repo, image))
    return out


def _indexes(inventory):
    return [(repo, image) for repo in sorted(inventory.repositories(), key=lambda r: r.name)
            for _, image in sorted(repo.images.items()) if image.is_index]


def on_details(emulator, digest, edit):
    """Edit the DescribeImages detail of one digest (edit(detail) -> detail or None to drop it)."""

    def rewrite(request, response):
        if isinstance(response.body, dict) and "imageDetails" in response.body:
            details = []
            for detail in response.body["imageDetails"]:
                if detail.get("imageDigest") == digest:
                    detail = edit(detail)
                if detail is not None:
                    details.append(detail)
            response.body["imageDetails"] = details

    emulator.corrupt("DescribeImages", rewrite)


def on_manifest(emulator, digest, edit):
    """Edit the BatchGetImage answer for one digest (edit(image_entry, answer))."""

    def rewrite(request, response):
        if isinstance(response.body, dict):
            for entry in list(response.body.get("images", [])):
                if entry["imageId"].get("imageDigest") == digest:
                    edit(entry, response.body)

    emulator.corrupt("BatchGetImage", rewrite)


def on_listing(emulator, repository, edit):
    def rewrite(request, response):
        if request.json().get("repositoryName") == repository and isinstance(response.body, dict):
            return edit(request, response)

    emulator.corrupt("ListImages", rewrite)


def problems(ctx, call=None, obj=None):
    rows = query(ctx["pipeline"], "SELECT provider, registry, repository, call, object, reason FROM load_problems")
    return [r for r in rows if (call is None or r[3] == call) and (obj is None or r[4] == obj)]


def image(ctx, digest):
    rows = query(ctx["pipeline"], "SELECT size_bytes, created_at, last_pulled_at, media_type FROM images WHERE digest = %s", digest)
    assert len(rows) == 1, f"{digest}: {len(rows)} rows"
    return dict(zip(("size_bytes", "created_at", "last_pulled_at", "media_type"), rows[0]))


def layers(ctx, digest):
    return query(ctx["pipeline"], "SELECT position, digest, size_bytes FROM images__layers WHERE image_digest = %s ORDER BY position", digest)


def expect_problem(ctx, call, obj, *words):
    found = problems(ctx, call, obj)
    assert len(found) == 1, f"expected one {call} problem for {obj}, got {problems(ctx)}"
    provider, registry, *_, reason = found[0]
    assert provider == ctx["provider"] and registry
    for word in words:
        assert word in reason, reason


def _target(kind):
    """A decorator-free helper: the n-th single image for case `kind` (stable across runs)."""
    return ECR_TARGETS.index(kind)


def ecr_image_case(name, edit_detail=None, edit_manifest=None, check=None):
    def install(emulator, inventory, targets):
        repo, img = _singles(inventory)[_target(name)]
        targets[name] = (repo, img)
        if edit_detail:
            on_details(emulator, img.digest, edit_detail)
        if edit_manifest:
            on_manifest(emulator, img.digest, edit_manifest)

    return Bad(name, install, lambda ctx: check(ctx, *ctx["targets"][name]))


def _set(key, value):
    def edit(detail):
        detail[key] = value
        return detail

    return edit


def _manifest_doc(edit_doc):
    def edit(entry, answer):
        doc = json.loads(entry["imageManifest"])
        entry["imageManifest"] = json.dumps(edit_doc(doc) or doc)

    return edit


def check_size_nan(ctx, repo, img):
    row = image(ctx, img.digest)
    assert row["size_bytes"] is None and row["created_at"] is not None
    assert [l[1:] for l in layers(ctx, img.digest)] == [(l.digest, l.size) for l in img.layers]
    expect_problem(ctx, "DescribeImages", img.digest, "imageSizeInBytes", "12abc")


def check_time_unknown(ctx, repo, img):
    row = image(ctx, img.digest)
    assert row["created_at"] is None and row["size_bytes"] == img.content_size
    expect_problem(ctx, "DescribeImages", img.digest, "imagePushedAt", "yesterday")


def check_pull_time_object(ctx, repo, img):
    row = image(ctx, img.digest)
    assert row["last_pulled_at"] is None and row["size_bytes"] == img.content_size
    expect_problem(ctx, "DescribeImages", img.digest, "lastRecordedPullTime")


def check_fields_missing(ctx, repo, img):
    row = image(ctx, img.digest)
    assert row["size_bytes"] is None and row["created_at"] is None and row["media_type"] == img.media_type
    assert problems(ctx, obj=img.digest) == []  # absent optional fields are not problems


def check_no_detail(ctx, repo, img):
    row = image(ctx, img.digest)
    assert row["media_type"] == img.media_type and row["size_bytes"] is None
    assert [l[1:] for l in layers(ctx, img.digest)] == [(l.digest, l.size) for l in img.layers]
    expect_problem(ctx, "DescribeImages", img.digest, "no detail")


def check_manifest_not_json(ctx, repo, img):
    row = image(ctx, img.digest)
    assert row["size_bytes"] == img.content_size and layers(ctx, img.digest) == []
    expect_problem(ctx, "BatchGetImage", img.digest, "not valid JSON")


def check_manifest_array(ctx, repo, img):
    assert image(ctx, img.digest)["size_bytes"] == img.content_size and layers(ctx, img.digest) == []
    expect_problem(ctx, "BatchGetImage", img.digest, "list")


def check_unknown_media_type(ctx, repo, img):
    assert image(ctx, img.digest)["size_bytes"] == img.content_size
    assert [l[1:] for l in layers(ctx, img.digest)] == [(l.digest, l.size) for l in img.layers]
    expect_problem(ctx, "BatchGetImage", img.digest, "unknown manifest media type", "application/x-unknown")


def check_layer_size(ctx, repo, img):
    got = layers(ctx, img.digest)
    want = [(i, l.digest, None if i == 1 else l.size) for i, l in enumerate(img.layers)]
    assert got == want
    expect_problem(ctx, "BatchGetImage", img.digest, "layer 1 size", "big")


def check_batch_failure(ctx, repo, img):
    assert image(ctx, img.digest)["size_bytes"] == img.content_size and layers(ctx, img.digest) == []
    expect_problem(ctx, "BatchGetImage", img.digest, "ImageNotFound")


def check_media_type_number(ctx, repo, img):
    assert image(ctx, img.digest)["media_type"] in ("42", img.media_type)
    assert image(ctx, img.digest)["size_bytes"] == img.content_size


SUBJECT = "sha256:" + "5" * 64


def check_extra_field(ctx, repo, img):
    # a field the API model has but the source does not map yet (botocore itself drops fields
    # its model lacks: those arrive with a botocore upgrade, see docs/reliability.md)
    rows = query(ctx["pipeline"], "SELECT digest FROM images WHERE subject_manifest_digest = %s", SUBJECT)
    assert rows == [(img.digest,)]


def check_tags_not_list(ctx, repo, img):
    assert image(ctx, img.digest)["size_bytes"] == img.content_size


def _no_platform(doc):
    for child in doc["manifests"]:
        child.pop("platform", None)


def check_child_platform(ctx, repo, idx):
    rows = query(ctx["pipeline"], "SELECT digest, platform_os, platform_arch FROM images__manifests WHERE image_digest = %s ORDER BY position", idx.digest)
    assert rows == [(c.digest, None, None) for c in idx.children]


def install_child_platform(emulator, inventory, targets):
    repo, idx = _indexes(inventory)[0]
    targets["index_child_without_platform"] = (repo, idx)
    on_manifest(emulator, idx.digest, _manifest_doc(_no_platform))


def _layer_size_big(doc):
    doc["layers"][1]["size"] = "big"


def _drop_from_batch(entry, answer):
    answer["images"].remove(entry)
    answer["failures"].append({"imageId": entry["imageId"], "failureCode": "ImageNotFound", "failureReason": "Requested image not found"})


def _not_json(entry, answer):
    entry["imageManifest"] = '{"schemaVersion": 2, "layers": [ {not json'


def _array(entry, answer):
    entry["imageManifest"] = "[1, 2]"


def _unknown_type(doc):
    doc["mediaType"] = "application/x-unknown+json"


def _drop_fields(detail):
    detail.pop("imagePushedAt", None)
    detail.pop("imageSizeInBytes", None)
    return detail


ECR_TARGETS = [
    "size_not_a_number", "time_unknown_format", "pull_time_is_an_object", "fields_missing", "detail_missing",
    "manifest_not_json", "manifest_json_array", "manifest_unknown_media_type", "layer_size_not_a_number",
    "batch_get_failure", "media_type_is_a_number", "new_api_field", "image_tags_not_a_list",
]


def install_listing_without_digest(emulator, inventory, targets):
    repo = sorted(inventory.repositories(), key=lambda r: r.name)[0]
    targets["listing_entry_without_digest"] = repo

    def edit(request, response):
        if not request.json().get("nextToken"):
            response.body["imageIds"].append({"imageTag": "orphan-tag"})

    on_listing(emulator, repo.name, edit)


def check_listing_without_digest(ctx):
    repo = ctx["targets"]["listing_entry_without_digest"]
    expect_problem(ctx, "ListImages", str({"imageTag": "orphan-tag"}), "without imageDigest")
    assert not query(ctx["pipeline"], "SELECT 1 FROM tags WHERE tag = 'orphan-tag'")


ODD_TAG = "it's; DROP TABLE tags;--\"☃\"%2F..\\x00?"


def install_odd_tag(emulator, inventory, targets):
    repo = sorted(inventory.repositories(), key=lambda r: r.name)[1]
    tag = sorted(repo.tags)[0]
    repo.tags[ODD_TAG] = repo.tags.pop(tag)  # the registry itself holds the odd name
    targets["tag_with_odd_characters"] = (repo, repo.tags[ODD_TAG])


def check_odd_tag(ctx):
    repo, digest = ctx["targets"]["tag_with_odd_characters"]
    assert query(ctx["pipeline"], "SELECT repository, digest FROM tags WHERE tag = %s AND valid_to IS NULL", ODD_TAG) == [(repo.name, digest)]
    assert query(ctx["pipeline"], "SELECT count(*) FROM tags")[0][0] > 0  # the table survived the name


def install_empty_page(emulator, inventory, targets):
    repo = sorted(inventory.repositories(), key=lambda r: r.name)[2]
    targets["empty_page_with_next_token"] = repo

    def edit(request, response):
        body = request.json()
        if not body.get("nextToken"):
            return Response(200, {"imageIds": [], "nextToken": "EMPTY-FIRST-PAGE"}, content_type=response.content_type)
        if body["nextToken"] == "EMPTY-FIRST-PAGE":
            body.pop("nextToken")
            return Response(200, emulator.op_ListImages(ECR_REGION, body), content_type=response.content_type)

    on_listing(emulator, repo.name, edit)


def check_empty_page(ctx):
    repo = ctx["targets"]["empty_page_with_next_token"]
    want = {(r, n, t): d for (r, n, t), d in ctx["expected_tags"].items() if n == repo.name}
    assert want and {k: v for k, v in ctx["current_tags"].items() if k[1] == repo.name} == want
    assert problems(ctx, call="ListImages", obj=None) == [] or all(p[2] != repo.name for p in problems(ctx, call="ListImages"))


def install_repository_without_name(emulator, inventory, targets):
    def edit(request, response):
        if isinstance(response.body, dict) and response.body.get("repositories"):
            response.body["repositories"].append({"registryId": "123456789012", "repositoryUri": f"123456789012.dkr.ecr.{ECR_REGION}.amazonaws.com/x"})

    emulator.corrupt("DescribeRepositories", edit)


def check_repository_without_name(ctx):
    found = problems(ctx, call="DescribeRepositories")
    assert [p for p in found if "without repositoryName" in p[5]], found
    assert query(ctx["pipeline"], "SELECT count(*) FROM repositories")[0][0] == len(list(ctx["inventory"].repositories()))


def install_repository_time(emulator, inventory, targets):
    repo = sorted(inventory.repositories(), key=lambda r: r.name)[3]
    targets["repository_time_unknown_format"] = repo

    def edit(request, response):
        for entry in (response.body or {}).get("repositories", []):
            if entry.get("repositoryName") == repo.name:
                entry["createdAt"] = "last week"

    emulator.corrupt("DescribeRepositories", edit)


def check_repository_time(ctx):
    repo = ctx["targets"]["repository_time_unknown_format"]
    assert query(ctx["pipeline"], "SELECT created_at, image_count FROM repositories WHERE repository = %s", repo.name) == [(None, len(repo.images))]
    expect_problem(ctx, "DescribeRepositories", repo.name, "createdAt", "last week")


ECR_CORPUS: List[Bad] = [
    ecr_image_case("size_not_a_number", edit_detail=_set("imageSizeInBytes", "12abc"), check=check_size_nan),
    ecr_image_case("time_unknown_format", edit_detail=_set("imagePushedAt", "yesterday"), check=check_time_unknown),
    ecr_image_case("pull_time_is_an_object", edit_detail=_set("lastRecordedPullTime", {"at": "noon"}), check=check_pull_time_object),
    ecr_image_case("fields_missing", edit_detail=_drop_fields, check=check_fields_missing),
    ecr_image_case("detail_missing", edit_detail=lambda detail: None, check=check_no_detail),
    ecr_image_case("manifest_not_json", edit_manifest=_not_json, check=check_manifest_not_json),
    ecr_image_case("manifest_json_array", edit_manifest=_array, check=check_manifest_array),
    ecr_image_case("manifest_unknown_media_type", edit_manifest=_manifest_doc(_unknown_type), check=check_unknown_media_type),
    ecr_image_case("layer_size_not_a_number", edit_manifest=_manifest_doc(_layer_size_big), check=check_layer_size),
    ecr_image_case("batch_get_failure", edit_manifest=_drop_from_batch, check=check_batch_failure),
    ecr_image_case("media_type_is_a_number", edit_detail=_set("imageManifestMediaType", 42), check=check_media_type_number),
    ecr_image_case("new_api_field", edit_detail=_set("subjectManifestDigest", SUBJECT), check=check_extra_field),
    ecr_image_case("image_tags_not_a_list", edit_detail=_set("imageTags", "latest"), check=check_tags_not_list),
    Bad("index_child_without_platform", install_child_platform, lambda ctx: check_child_platform(ctx, *ctx["targets"]["index_child_without_platform"])),
    Bad("listing_entry_without_digest", install_listing_without_digest, check_listing_without_digest),
    Bad("tag_with_odd_characters", install_odd_tag, check_odd_tag),
    Bad("empty_page_with_next_token", install_empty_page, check_empty_page),
    Bad("repository_without_name", install_repository_without_name, check_repository_without_name),
    Bad("repository_time_unknown_format", install_repository_time, check_repository_time),
]


def repeat_token(operation, list_key):
    def install(emulator):
        def edit(request, response):
            items = response.body.get(list_key) if isinstance(response.body, dict) else None
            return Response(200, {list_key: items or [], "nextToken": "SAME-TOKEN"}, content_type="application/x-amz-json-1.1")

        emulator.corrupt(operation, edit)

    return install


def replace_answer(operation, body):
    def install(emulator):
        emulator.corrupt(operation, lambda request, response: Response(200, body, content_type="application/x-amz-json-1.1"))

    return install


ECR_FATAL = {
    "repeating_token_list_images": (repeat_token("ListImages", "imageIds"), "ListImages", "same next token"),
    "repeating_token_describe_repositories": (repeat_token("DescribeRepositories", "repositories"), "DescribeRepositories", "same next token"),
    "answer_not_json": (replace_answer("DescribeRepositories", b"<html>gateway error</html>"), "DescribeRepositories", "repositories"),
    "answer_without_its_list": (replace_answer("ListImages", {"items": []}), "ListImages", "imageIds"),
    "list_is_not_a_list": (replace_answer("ListImages", {"imageIds": "all of them"}), "ListImages", "cannot be read"),
}

# ------------------------------------------------------------------ Yandex
def yandex_inventory(case):
    return case.inventory(seed=43, repositories=4, images=30, multiarch_every=0)


def yandex_singles(inventory):
    return [(repo, img) for repo, img in _singles(inventory)]


def on_images(emulator, digest, edit):
    """Edit (or drop, edit -> None) the Image.list record of one digest."""

    def rewrite(request, response):
        if isinstance(response.body, dict) and "images" in response.body:
            kept = []
            for record in response.body["images"]:
                if record.get("digest") == digest:
                    record = edit(record)
                if record is not None:
                    kept.append(record)
            response.body["images"] = kept

    emulator.corrupt("Image.list", rewrite)


YANDEX_TARGETS = ["ya_size_not_a_number", "ya_time_unknown_format", "ya_layer_size_not_a_number",
                  "ya_record_without_digest", "ya_tags_not_a_list", "ya_new_api_field"]


def yandex_image_case(name, edit, check):
    def install(emulator, inventory, targets):
        repo, img = yandex_singles(inventory)[YANDEX_TARGETS.index(name)]
        targets[name] = (repo, img)
        on_images(emulator, img.digest, edit)

    return Bad(name, install, lambda ctx: check(ctx, *ctx["targets"][name]))


def _ya_set(key, value):
    def edit(record):
        record[key] = value
        return record

    return edit


def _ya_layer_big(record):
    record["layers"][1]["size"] = "big"
    return record


def _ya_no_digest(record):
    record.pop("digest")
    return record


def ya_check_size(ctx, repo, img):
    assert image(ctx, img.digest)["size_bytes"] is None
    expect_problem(ctx, "Image.list", f"{img.digest} compressedSize", "12abc")


def ya_check_time(ctx, repo, img):
    row = image(ctx, img.digest)
    assert row["created_at"] is None and row["size_bytes"] is not None
    expect_problem(ctx, "Image.list", f"{img.digest} createdAt", "yesterday")


def ya_check_layer(ctx, repo, img):
    got = layers(ctx, img.digest)
    assert got == [(i, l.digest, None if i == 1 else l.size) for i, l in enumerate(img.layers)]
    assert [p for p in problems(ctx, call="Image.list") if p[4] == f"{img.digest} blob size" and "big" in p[5]]


def ya_check_no_digest(ctx, repo, img):
    assert query(ctx["pipeline"], "SELECT count(*) FROM images WHERE digest = %s", img.digest)[0][0] == 0
    assert [p for p in problems(ctx, call="Image.list") if "without a name or digest" in p[5]]


def ya_check_tags_string(ctx, repo, img):
    # a tag list sent as one string is reported and skipped, not split into one tag per
    # character; the rest of the record (size, time, layers) and the repository's other tags load
    from emulators.yandex import YandexEmulator

    assert query(ctx["pipeline"], "SELECT tag FROM tags WHERE digest = %s", img.digest) == []
    row = image(ctx, img.digest)
    assert (row["size_bytes"], row["created_at"]) == (YandexEmulator.compressed_size(img), truncate_us(img.created_ns))
    assert [l[1:] for l in layers(ctx, img.digest)] == [(l.digest, l.size) for l in img.layers]
    lost = {img.digest, ctx["targets"]["ya_record_without_digest"][1].digest}  # that record's tags go too
    want = {k: d for k, d in ctx["expected_tags"].items() if k[1] == repo.name and d not in lost}
    assert want and {k: d for k, d in ctx["current_tags"].items() if k[1] == repo.name} == want
    expect_problem(ctx, "Image.list", f"{img.digest} tags", "tags: expected a list", "'latest'", "skipped")


def ya_check_new_field(ctx, repo, img):
    assert query(ctx["pipeline"], "SELECT digest FROM images WHERE future_field IS NOT NULL") == [(img.digest,)]


YANDEX_CORPUS: List[Bad] = [
    yandex_image_case("ya_size_not_a_number", _ya_set("compressedSize", "12abc"), ya_check_size),
    yandex_image_case("ya_time_unknown_format", _ya_set("createdAt", "yesterday"), ya_check_time),
    yandex_image_case("ya_layer_size_not_a_number", _ya_layer_big, ya_check_layer),
    yandex_image_case("ya_record_without_digest", _ya_no_digest, ya_check_no_digest),
    yandex_image_case("ya_tags_not_a_list", _ya_set("tags", "latest"), ya_check_tags_string),
    yandex_image_case("ya_new_api_field", _ya_set("futureField", {"nested": [1]}), ya_check_new_field),
]


def yandex_repeat_token(emulator):
    def edit(request, response):
        items = response.body.get("images") if isinstance(response.body, dict) else None
        return Response(200, {"images": items or [], "nextPageToken": "SAME-TOKEN"})

    emulator.corrupt("Image.list", edit)


def yandex_replace(operation, body):
    def install(emulator):
        emulator.corrupt(operation, lambda request, response: Response(200, body, content_type="text/html" if isinstance(body, bytes) else "application/json"))

    return install


YANDEX_FATAL = {
    "ya_repeating_token": (yandex_repeat_token, "Image.list", "repeats"),
    "ya_answer_not_json": (yandex_replace("Image.list", b"<html>gateway</html>"), "Image.list", "not JSON"),
    # (an answer without `images` is an empty page: proto3 JSON leaves empty lists out)
    "ya_list_is_not_a_list": (yandex_replace("Image.list", {"images": "all of them"}), "Image.list", "not a list of objects"),
}


# ------------------------------------------------------------------ tag-listing APIs (NCP, SWR)
def tagged_singles(inventory):
    """Tagged single-platform images with no index above them, in a fixed order."""
    out = []
    for repo in sorted(inventory.repositories(), key=lambda r: (r.registry, r.name)):
        children = {c.digest for image in repo.images.values() for c in image.children}
        for digest in sorted(set(repo.tags.values())):
            if not repo.images[digest].is_index and digest not in children:
                out.append((repo, repo.images[digest]))
    return out


def keep_one_tag(repo, digest):
    """Untag all but the first tag of `digest` in the registry itself, so that one tag record
    (the one a case bends) is all the API says about the image; returns that tag."""
    tags = sorted(t for t, d in repo.tags.items() if d == digest)
    for extra in tags[1:]:
        del repo.tags[extra]
    return tags[0]


def tag_listing_case(name, targets_list, operation, items, edit, check):
    """A case that edits (or drops, edit -> None) the tag record of one single-tag image."""

    def install(emulator, inventory, targets):
        repo, img = tagged_singles(inventory)[targets_list.index(name)]
        tag = keep_one_tag(repo, img.digest)
        targets[name] = (repo, tag, img)

        def rewrite(request, response):
            records = items(response.body)
            if records is None:
                return
            for record in list(records):
                if record.get("digest") == img.digest:
                    if edit(record) is None:
                        records.remove(record)

        emulator.corrupt(operation, rewrite)

    return Bad(name, install, lambda ctx: check(ctx, *ctx["targets"][name]))


def _edit(**changes):
    def edit(record):
        for key, value in changes.items():
            if value is _DROP:
                record.pop(key, None)
            else:
                record[key] = value
        return record

    return edit


_DROP = object()


def one_problem(ctx, obj, *words):
    """Exactly one problem row for `obj`, naming provider, registry and the call, with `words`."""
    found = problems(ctx, obj=obj)
    assert len(found) == 1, f"expected one problem for {obj}, got {problems(ctx)}"
    provider, registry, _, call, _, reason = found[0]
    assert provider == ctx["provider"] and registry and call
    for word in words:
        assert word in reason, reason
    return found[0]


def tags_of(ctx, repo, digest):
    return {t for (t,) in query(ctx["pipeline"], "SELECT tag FROM tags WHERE repository = %s AND digest = %s AND valid_to IS NULL", repo.name, digest)}


def image_row(ctx, repo, digest):
    rows = query(ctx["pipeline"], "SELECT size_bytes, created_at, media_type FROM images WHERE repository = %s AND digest = %s", repo.name, digest)
    assert len(rows) <= 1
    return rows[0] if rows else None


# ---- NCP (ListTags tag objects, `{count, next, previous, results}`)
def ncp_inventory(case):
    return case.inventory(seed=47, repositories=4, images=40)


NCP_TARGETS = ["ncp_full_size_not_a_number", "ncp_created_unknown_format", "ncp_entry_size_not_a_number",
               "ncp_images_not_a_list", "ncp_tag_without_digest", "ncp_new_api_field", "ncp_entry_not_an_object"]


def _ncp_results(body):
    return body.get("results") if isinstance(body, dict) and isinstance(body.get("results"), list) else None


def ncp_case(name, edit, check):
    return tag_listing_case(name, NCP_TARGETS, "ListTags", _ncp_results, edit, check)


def _ncp_entry(**changes):
    def edit(record):
        _edit(**changes)(record["images"][0])
        return record

    return edit


def _ncp_obj(tag, img):
    return f"{tag} {img.digest}"


def ncp_check_full_size(ctx, repo, tag, img):
    # the image's size comes from its platform entry: nothing lost but ncp_tags.full_size
    assert image_row(ctx, repo, img.digest) == (img.content_size, truncate_ms(img.created_ns), img.media_type)
    assert query(ctx["pipeline"], "SELECT full_size FROM ncp_tags WHERE repository = %s AND tag = %s", repo.name, tag) == [(None,)]
    one_problem(ctx, _ncp_obj(tag, img), "full_size", "12abc")


def ncp_check_created(ctx, repo, tag, img):
    assert image_row(ctx, repo, img.digest) == (img.content_size, None, img.media_type)
    one_problem(ctx, _ncp_obj(tag, img), "created", "yesterday")


def ncp_check_entry_size(ctx, repo, tag, img):
    # the entry's size is unreadable: the tag's full_size stands in (the same number for a single image)
    assert image_row(ctx, repo, img.digest) == (img.content_size, truncate_ms(img.created_ns), img.media_type)
    one_problem(ctx, _ncp_obj(tag, img), "size", "big")


def ncp_check_images_string(ctx, repo, tag, img):
    assert image_row(ctx, repo, img.digest) == (img.content_size, None, None)
    assert tags_of(ctx, repo, img.digest) == {tag}
    one_problem(ctx, _ncp_obj(tag, img), "images: expected a list, got str 'linux/amd64'")


def ncp_check_no_digest(ctx, repo, tag, img):
    assert image_row(ctx, repo, img.digest) is None and tags_of(ctx, repo, img.digest) == set()
    one_problem(ctx, tag, "tag without a name or a digest")


def ncp_check_new_field(ctx, repo, tag, img):
    assert query(ctx["pipeline"], "SELECT repository, tag FROM ncp_tags WHERE future_field IS NOT NULL") == [(repo.name, tag)]
    assert image_row(ctx, repo, img.digest) == (img.content_size, truncate_ms(img.created_ns), img.media_type)


def ncp_check_entry_not_object(ctx, repo, tag, img):
    # a platform entry that is not an object is skipped (no row of its own); the tag and image load
    assert image_row(ctx, repo, img.digest) == (img.content_size, None, None)
    assert tags_of(ctx, repo, img.digest) == {tag}
    one_problem(ctx, _ncp_obj(tag, img), "images: 1 of 1 entries are not objects")


NCP_CORPUS: List[Bad] = [
    ncp_case("ncp_full_size_not_a_number", _edit(full_size="12abc"), ncp_check_full_size),
    ncp_case("ncp_created_unknown_format", _ncp_entry(created="yesterday"), ncp_check_created),
    ncp_case("ncp_entry_size_not_a_number", _ncp_entry(size="big"), ncp_check_entry_size),
    ncp_case("ncp_images_not_a_list", _edit(images="linux/amd64"), ncp_check_images_string),
    ncp_case("ncp_tag_without_digest", _edit(digest=_DROP), ncp_check_no_digest),
    ncp_case("ncp_new_api_field", _edit(futureField={"nested": [1]}), ncp_check_new_field),
    ncp_case("ncp_entry_not_an_object", _edit(images=["sha256:abc"]), ncp_check_entry_not_object),
]


def ncp_replace(operation, body):
    def install(emulator):
        emulator.corrupt(operation, lambda request, response: Response(200, body, content_type="text/html" if isinstance(body, bytes) else "application/json"))

    return install


def ncp_next_repeats(emulator):
    def edit(request, response):
        if isinstance(response.body, dict):
            response.body["next"] = 1  # page 1 again, for ever

    emulator.corrupt("ListTags", edit)


NCP_FATAL = {
    "ncp_next_does_not_move": (ncp_next_repeats, "ListTags", "does not move past page"),
    "ncp_answer_not_json": (ncp_replace("ListImages", b"<html>gateway</html>"), "ListImages", "not JSON"),
    "ncp_results_not_a_list": (ncp_replace("ListTags", {"count": 1, "next": None, "results": "all"}), "ListTags", "no `results` list"),
    "ncp_answer_without_results": (ncp_replace("ListImages", {"count": 3, "next": None}), "ListImages", "no `results` list"),
    "ncp_result_not_an_object": (ncp_replace("ListTags", {"count": 1, "next": None, "results": ["v1"]}), "ListTags", "not a list of objects"),
}


# ---- SWR (list_tags: a bare array of tag records, the manifest as a JSON string)
def swr_inventory(case):
    return case.inventory(seed=53, repositories=4, images=40)


SWR_TARGETS = ["swr_size_not_a_number", "swr_created_unknown_format", "swr_manifest_not_json", "swr_manifest_missing",
               "swr_layer_size_not_a_number", "swr_tag_without_name", "swr_new_api_field", "swr_flag_not_a_boolean"]


def _swr_records(body):
    return body if isinstance(body, list) else None


def swr_case(name, edit, check):
    return tag_listing_case(name, SWR_TARGETS, "list_tags", _swr_records, edit, check)


def _swr_manifest(edit_doc):
    def edit(record):
        doc = json.loads(record["manifest"])
        edit_doc(doc)
        record["manifest"] = json.dumps(doc)
        return record

    return edit


def _swr_obj(repo, tag):
    return f"{repo.name}:{tag}"


def _swr_layers(ctx, img):
    return [l[1:] for l in layers(ctx, img.digest)]


def swr_check_size(ctx, repo, tag, img):
    assert image_row(ctx, repo, img.digest) == (None, truncate_us(img.created_ns), img.media_type)
    assert _swr_layers(ctx, img) == [(l.digest, l.size) for l in img.layers]
    one_problem(ctx, _swr_obj(repo, tag), "size", "12abc")


def swr_check_created(ctx, repo, tag, img):
    assert image_row(ctx, repo, img.digest) == (img.content_size, None, img.media_type)
    one_problem(ctx, _swr_obj(repo, tag), "created", "yesterday")


def swr_check_manifest_not_json(ctx, repo, tag, img):
    assert image_row(ctx, repo, img.digest) == (img.content_size, truncate_us(img.created_ns), None)
    assert _swr_layers(ctx, img) == [] and tags_of(ctx, repo, img.digest) == {tag}
    one_problem(ctx, _swr_obj(repo, tag), img.digest, "no layers loaded")


def swr_check_manifest_missing(ctx, repo, tag, img):
    assert image_row(ctx, repo, img.digest) == (img.content_size, truncate_us(img.created_ns), None)
    assert _swr_layers(ctx, img) == [] and tags_of(ctx, repo, img.digest) == {tag}
    one_problem(ctx, _swr_obj(repo, tag), "has no manifest")


def swr_check_layer_size(ctx, repo, tag, img):
    assert _swr_layers(ctx, img) == [(l.digest, None if i == 1 else l.size) for i, l in enumerate(img.layers)]
    assert image_row(ctx, repo, img.digest) == (img.content_size, truncate_us(img.created_ns), img.media_type)
    one_problem(ctx, _swr_obj(repo, tag), "layer 1 size", "big")


def swr_check_no_name(ctx, repo, tag, img):
    assert image_row(ctx, repo, img.digest) is None and tags_of(ctx, repo, img.digest) == set()
    one_problem(ctx, f"{repo.name}:None", "without a tag name")


def swr_check_new_field(ctx, repo, tag, img):
    assert query(ctx["pipeline"], "SELECT repository, tag FROM swr_tags WHERE future_field IS NOT NULL") == [(repo.name, tag)]


def swr_check_flag(ctx, repo, tag, img):
    assert query(ctx["pipeline"], "SELECT is_trusted FROM swr_tags WHERE repository = %s AND tag = %s", repo.name, tag) == [(None,)]
    assert image_row(ctx, repo, img.digest) == (img.content_size, truncate_us(img.created_ns), img.media_type)
    one_problem(ctx, _swr_obj(repo, tag), "is_trusted", "maybe")


def _layer_one_big(doc):
    doc["layers"][1]["size"] = "big"


SWR_CORPUS: List[Bad] = [
    swr_case("swr_size_not_a_number", _edit(size="12abc"), swr_check_size),
    swr_case("swr_created_unknown_format", _edit(created="yesterday"), swr_check_created),
    swr_case("swr_manifest_not_json", _edit(manifest='{"schemaVersion": 2, "layers": ['), swr_check_manifest_not_json),
    swr_case("swr_manifest_missing", _edit(manifest=_DROP), swr_check_manifest_missing),
    swr_case("swr_layer_size_not_a_number", _swr_manifest(_layer_one_big), swr_check_layer_size),
    swr_case("swr_tag_without_name", _edit(Tag=_DROP), swr_check_no_name),
    swr_case("swr_new_api_field", _edit(futureField={"nested": [1]}), swr_check_new_field),
    swr_case("swr_flag_not_a_boolean", _edit(is_trusted="maybe"), swr_check_flag),
]


def swr_content_range(value):
    def install(emulator):
        def edit(request, response):
            response.headers["Content-Range"] = value

        emulator.corrupt("list_repositories", edit)

    return install


SWR_FATAL = {
    "swr_content_range_unreadable": (swr_content_range("all of them"), "list_repositories", "Content-Range"),
    "swr_page_starts_elsewhere": (swr_content_range("7-2/9"), "list_repositories", "starts at 7"),
    "swr_answer_not_an_array_of_objects": (ncp_replace("list_tags", [1, 2]), "list_tags", "array of objects"),
}

CORPUS: Dict[str, List[Bad]] = {"ecr": ECR_CORPUS, "yandex": YANDEX_CORPUS, "ncp": NCP_CORPUS, "swr": SWR_CORPUS}
FATAL: Dict[str, Dict[str, Any]] = {"ecr": ECR_FATAL, "yandex": YANDEX_FATAL, "ncp": NCP_FATAL, "swr": SWR_FATAL}
INVENTORIES = {"ecr": ecr_inventory, "yandex": yandex_inventory, "ncp": ncp_inventory, "swr": swr_inventory}

# bugs found by the corpus in code this suite does not own (see docs/reliability.md)
KNOWN_BUGS: Dict[str, str] = {}
NONFATAL_PARAMS = [
    pytest.param(p, bad, id=f"{p}-{bad.name}",
                 marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[bad.name])] if bad.name in KNOWN_BUGS else [])
    for p, bads in CORPUS.items() if p in AVAILABLE for bad in bads
]
FATAL_PARAMS = [pytest.param(p, name, id=f"{p}-{name}") for p, cases in FATAL.items() if p in AVAILABLE for name in cases]
_shared: Dict[str, Dict[str, Any]] = {}
REGISTRY_NAMES = {"ecr": lambda r: ecr_registry(r), "yandex": lambda r: f"cr.yandex/{r}",
                  "ncp": lambda r: f"{r}.kr.ncr.ntruss.com", "swr": lambda r: f"swr.cn-north-4.myhuaweicloud.com/{r}"}


def shared_load(provider, tmp_path_factory):
    """One load of `provider` with every non-fatal bad input of its corpus installed at once."""
    if provider not in _shared:
        case = AVAILABLE[provider]
        inventory = INVENTORIES[provider](case)
        targets: Dict[str, Any] = {}
        with serving(case, inventory) as (emulator, _):
            for bad in CORPUS[provider]:
                bad.install(emulator, inventory, targets)
            pipeline, _ = load(tmp_path_factory.mktemp(f"bad-{provider}"), case)
        _shared[provider] = {
            "pipeline": pipeline, "inventory": inventory, "targets": targets, "provider": provider,
            "expected_tags": expected_tags(inventory, REGISTRY_NAMES[provider]),
            "current_tags": current_tags(pipeline, provider),
        }
    return _shared[provider]


@pytest.mark.parametrize("provider,bad", NONFATAL_PARAMS)
def test_bad_record_loads_as_far_as_sound_and_is_reported(provider, bad, tmp_path_factory):
    bad.check(shared_load(provider, tmp_path_factory))
    FIGURES["bad inputs tried (loaded as far as sound)"] += 1


@pytest.mark.parametrize("provider", [p for p in ("ecr",) if p in AVAILABLE])
def test_everything_the_bad_inputs_did_not_touch_loads_exactly(provider, tmp_path_factory):
    ctx = shared_load(provider, tmp_path_factory)
    pipeline, inventory = ctx["pipeline"], ctx["inventory"]
    touched = {img.digest for key, value in ctx["targets"].items() if isinstance(value, tuple) and hasattr(value[1], "digest") for img in [value[1]]}
    touched_repos = {ctx["targets"]["repository_time_unknown_format"].name} if provider == "ecr" else set()
    name = lambda r: ecr_registry(r)
    want = {k: v for k, v in expected_images(inventory, name).items() if k[2] not in touched}
    got = {k: v for k, v in loaded_images(pipeline, provider).items() if k[2] not in touched}
    assert got == want
    want_layers = {k: v for k, v in expected_layers(inventory, name).items() if k[2] not in touched}
    assert {k: v for k, v in loaded_layers(pipeline, provider).items() if k[2] not in touched} == want_layers
    want_children = {k: v for k, v in expected_children(inventory, name).items() if k[2] not in touched}
    assert {k: v for k, v in loaded_children(pipeline, provider).items() if k[2] not in touched} == want_children
    assert ctx["current_tags"] == ctx["expected_tags"]
    # every problem row names provider, registry and call, and one problem per bad record
    rows = query(pipeline, "SELECT provider, registry, call, reason FROM load_problems")
    assert all(r[0] == provider and r[1] and r[2] and r[3] for r in rows)
    assert len(rows) == 13, rows  # the cases above that report (the others are exact or ignored)
    assert touched_repos


@pytest.mark.parametrize("provider,name", FATAL_PARAMS)
def test_bad_answer_stops_the_run_with_a_clear_error(provider, name, tmp_path):
    case = AVAILABLE[provider]
    install, call, word = FATAL[provider][name]
    with serving(case, case.inventory(seed=5, repositories=2, images=6)) as (emulator, _):
        install(emulator)
        with pytest.raises(Exception) as info:
            load(tmp_path, case)
    error = _root_cause(info.value)
    assert isinstance(error, BadResponseError), repr(error)
    assert call in str(error) and word in str(error) and provider in str(error)
    FIGURES["bad inputs tried (clear error)"] += 1


# ---- REST sources: what the corpus did not touch loads exactly, each problem reported once
def _rest_expectations(provider, ctx):
    """(expected, loaded) images and (expected, loaded) layers (NCP: index children) of `provider`, keyed by
    (registry, repository, digest), in the shapes the source's own tests use."""
    pipeline, inventory = ctx["pipeline"], ctx["inventory"]
    if provider == "yandex":
        from tests.yandex import test_source as own

        return (own.expected_images(inventory), own.loaded_images(pipeline)), (own.expected_layers(inventory), own.loaded_layers(pipeline))
    if provider == "ncp":
        from tests.ncp import conftest as own

        rows = query(pipeline, "SELECT registry, repository, digest, size_bytes, created_at, last_pulled_at, media_type,"
                               " platform_os, platform_arch, platform_variant, child_count FROM images WHERE provider = 'ncp'")
        # NCP lists no layers: its second pair is the index children, as tests/ncp compares them
        links: Dict[tuple, list] = {}
        for r in query(pipeline, "SELECT registry, repository, image_digest, digest, media_type, platform_os, platform_arch,"
                                 " platform_variant, size_bytes FROM images__manifests WHERE provider = 'ncp'"
                                 " ORDER BY registry, repository, image_digest, position"):
            links.setdefault(tuple(r[:3]), []).append(tuple(r[3:]))
        return (own.expected_images(inventory), {tuple(r[:3]): tuple(r[3:]) for r in rows}), (own.expected_children(inventory), links)
    from tests.swr import conftest as own

    rows = query(pipeline, "SELECT registry, repository, digest, size_bytes, created_at, media_type, layer_count, child_count"
                           " FROM images WHERE provider = 'swr'")
    return (own.expected_images(inventory), {tuple(r[:3]): tuple(r[3:]) for r in rows}), (own.expected_layers(inventory), loaded_layers(pipeline, "swr"))


# cases whose bent record loses its tags (the record had no digest, or no tag name)
TAGS_LOST = {"ya_record_without_digest", "ya_tags_not_a_list", "ncp_tag_without_digest", "swr_tag_without_name"}
# the cases that report (one problem row each); the others load exactly or add a column
REPORTING = {"yandex": 5, "ncp": 6, "swr": 7}


@pytest.mark.parametrize("provider", [p for p in ("yandex", "ncp", "swr") if p in AVAILABLE])
def test_rest_sources_load_everything_the_bad_inputs_did_not_touch_exactly(provider, tmp_path_factory):
    ctx = shared_load(provider, tmp_path_factory)
    touched = {value[-1].digest for value in ctx["targets"].values()}
    (want, got), (want_layers, got_layers) = _rest_expectations(provider, ctx)
    assert len(want) > 10 and want_layers
    assert {k: v for k, v in got.items() if k[2] not in touched} == {k: v for k, v in want.items() if k[2] not in touched}
    assert {k: v for k, v in got_layers.items() if k[2] not in touched} == {k: v for k, v in want_layers.items() if k[2] not in touched}
    lost = {ctx["targets"][name][-1].digest for name in TAGS_LOST if name in ctx["targets"]}
    assert ctx["current_tags"] == {k: d for k, d in ctx["expected_tags"].items() if d not in lost}
    rows = query(ctx["pipeline"], "SELECT provider, registry, repository, call, object, reason FROM load_problems")
    assert all(r[0] == provider and r[1] and r[3] and r[5] for r in rows)
    assert len(rows) == REPORTING[provider], rows
