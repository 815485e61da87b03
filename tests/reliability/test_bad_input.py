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


# ------------------------------------------------------------------ OCI
# A block of its own (its own tests below) so that merges with the other sources' parts stay
# clean. The registry is a real docker-registry holding the inventory; the bad answers come from
# its proxy's `corrupt()` (answers the registry itself would refuse to store). A manifest bent
# on the way no longer hashes to its digest: the source reports that as well, so each manifest
# case expects its own reason AND "hash". Inventory edits (odd names) are made before serving.
OCI_REGISTRY = "oci-reliability"
OCI_TARGETS = ["oci_manifest_not_json", "oci_manifest_json_array", "oci_manifest_unknown_media_type",
               "oci_layer_size_not_a_number", "oci_layer_without_digest", "oci_manifest_bytes_not_its_digest",
               "oci_config_not_json", "oci_config_time_unknown_format", "oci_config_blob_missing",
               "oci_head_without_digest", "oci_head_not_found"]


@dataclass
class OciBad:
    """`prepare(inventory, targets)` edits the inventory before the registry is started;
    `install(emulator, targets)` bends answers; `check(ctx)` asserts the outcome."""

    name: str
    check: Callable[..., None]
    install: Callable[..., None] = lambda emulator, targets: None
    prepare: Callable[..., None] = lambda inventory, targets: None
    touches: str = "image"  # what the case changes: "image" (targets[name][1]), "repository", "tag", "nothing"


def oci_repos(inventory):
    return sorted(inventory.repositories(), key=lambda r: r.name)


def oci_plain_singles(inventory, targets):
    """Tagged single-platform images with two tags, outside the repository whose tag list is
    bent to null, in a fixed order."""
    out = []
    for repo in oci_repos(inventory):
        if repo is targets["oci_tags_null"]:
            continue
        for digest in sorted(set(repo.tags.values())):
            image = repo.images[digest]
            if not image.is_index and len(repo.tags_of(digest)) >= 2:
                out.append((repo, image))
    return out


def oci_visible(repo):
    tagged = set(repo.tags.values())
    return tagged | {child.digest for d in tagged for child in repo.images[d].children}


def oci_path_is(request, suffix):
    return request.path.endswith(suffix)


def oci_on_manifest(name, edit):
    """Bend the GET of the target image's manifest: edit(response) edits `response.body` (the
    decoded JSON) in place or returns a new Response."""

    def install(emulator, targets):
        digest = targets[name][1].digest

        def rewrite(request, response):
            if request.method == "GET" and oci_path_is(request, f"/manifests/{digest}") and response.status == 200:
                return edit(response)

        emulator.corrupt("get_manifest", rewrite)

    return install


def oci_on_config(name, edit):
    """Bend the GET of the target image's config blob (served as octet-stream: decoded here)."""

    def install(emulator, targets):
        digest = targets[name][1].config.digest

        def rewrite(request, response):
            if oci_path_is(request, f"/blobs/{digest}") and response.status == 200:
                return edit(response)

        emulator.corrupt("get_blob", rewrite)

    return install


def oci_image_case(name, check, install):
    def prepare(inventory, targets):
        targets[name] = oci_plain_singles(inventory, targets)[OCI_TARGETS.index(name)]

    return OciBad(name, lambda ctx: check(ctx, *ctx["targets"][name]), install, prepare)


def oci_doc_edit(fn):
    def edit(response):
        fn(response.body)

    return edit


def oci_replace_body(body):
    def edit(response):
        raw = body(response) if callable(body) else body
        return Response(200, raw, dict(response.headers), content_type=response.content_type)

    return edit


def oci_image(ctx, digest):
    rows = query(ctx["pipeline"], "SELECT size_bytes, created_at, media_type, platform_os, manifest_size_bytes FROM images"
                 " WHERE digest = %s", digest)
    assert len(rows) == 1, f"{digest}: {len(rows)} rows"
    return dict(zip(("size_bytes", "created_at", "media_type", "platform_os", "manifest_size_bytes"), rows[0]))


def oci_reasons(ctx, obj, call="GET manifest"):
    return [p[5] for p in problems(ctx, call, obj)]


def oci_expect_reasons(ctx, obj, *groups, call="GET manifest"):
    """One problem row per group of words, and no other rows for `obj`."""
    reasons = oci_reasons(ctx, obj, call)
    assert len(reasons) == len(groups), reasons
    for words in groups:
        assert [r for r in reasons if all(w in r for w in words)], (words, reasons)
    assert all(p[0] == "oci" and p[1] == OCI_REGISTRY for p in problems(ctx, call, obj))


def oci_layers_exact(ctx, image):
    assert [l[1:] for l in layers(ctx, image.digest)] == [(l.digest, l.size) for l in image.layers]


def oci_check_not_json(ctx, repo, image):
    row = oci_image(ctx, image.digest)
    assert row["media_type"] == image.media_type and row["size_bytes"] is None and row["manifest_size_bytes"] == len(OCI_BROKEN)
    assert layers(ctx, image.digest) == []
    oci_expect_reasons(ctx, image.digest, ("not valid JSON",), ("hash",))


def oci_check_array(ctx, repo, image):
    assert oci_image(ctx, image.digest)["size_bytes"] is None and layers(ctx, image.digest) == []
    oci_expect_reasons(ctx, image.digest, ("JSON list", "not an object"), ("hash",))


def oci_check_unknown_type(ctx, repo, image):
    row = oci_image(ctx, image.digest)
    assert row["media_type"] == "application/x-unknown+json" and row["size_bytes"] == image.content_size
    oci_layers_exact(ctx, image)
    oci_expect_reasons(ctx, image.digest, ("unknown manifest media type", "application/x-unknown+json"),
                       ("Content-Type", "differs"), ("hash",))


def oci_check_layer_size(ctx, repo, image):
    assert layers(ctx, image.digest) == [(i, l.digest, None if i == 1 else l.size) for i, l in enumerate(image.layers)]
    assert oci_image(ctx, image.digest)["size_bytes"] is None  # a sum with an unknown part is unknown
    oci_expect_reasons(ctx, image.digest, ("layer 1 size", "big"), ("hash",))


def oci_check_layer_digest(ctx, repo, image):
    want = [(i, None if i == 0 else l.digest, l.size) for i, l in enumerate(image.layers)]
    assert layers(ctx, image.digest) == want
    assert oci_image(ctx, image.digest)["size_bytes"] == image.content_size
    oci_expect_reasons(ctx, image.digest, ("layer 0 has no digest",), ("hash",))


def oci_check_bytes(ctx, repo, image):
    row = oci_image(ctx, image.digest)
    assert row["size_bytes"] == image.content_size and row["created_at"] == image.created
    oci_layers_exact(ctx, image)
    oci_expect_reasons(ctx, image.digest, ("hash to", image.digest))


def oci_check_config(words):
    def check(ctx, repo, image):
        row = oci_image(ctx, image.digest)
        assert row["created_at"] is None and row["platform_os"] is None and row["size_bytes"] == image.content_size
        oci_layers_exact(ctx, image)
        oci_expect_reasons(ctx, image.digest, ("config blob", image.config.digest) + words)

    return check


def oci_check_config_time(ctx, repo, image):
    row = oci_image(ctx, image.digest)
    assert row["created_at"] is None and row["platform_os"] == "linux" and row["size_bytes"] == image.content_size
    oci_expect_reasons(ctx, image.digest, ("config created", "yesterday"))


def oci_check_head_without_digest(ctx, repo, image):
    # the client GETs the manifest and hashes it: the same digest, nothing to report
    row = oci_image(ctx, image.digest)
    assert row["size_bytes"] == image.content_size and row["created_at"] == image.created
    assert {t: d for (_, r, t), d in ctx["current_tags"].items() if r == repo.name and d == image.digest} == \
        {t: image.digest for t in repo.tags_of(image.digest)}
    assert problems(ctx, obj=image.digest) == []


def oci_check_head_not_found(ctx, repo, image):
    tag = repo.tags_of(image.digest)[0]
    assert (OCI_REGISTRY, repo.name, tag) not in ctx["current_tags"]
    assert oci_image(ctx, image.digest)["size_bytes"] == image.content_size  # still reached by its other tag
    oci_expect_reasons(ctx, tag, ("listed but its manifest is not found",), call="HEAD manifest")


def oci_head(name, edit):
    """Bend the HEAD of the target image's first tag."""

    def install(emulator, targets):
        repo, image = targets[name]
        tag = repo.tags_of(image.digest)[0]

        def rewrite(request, response):
            if request.method == "HEAD" and oci_path_is(request, f"/manifests/{tag}"):
                return edit(response)

        emulator.corrupt("head_manifest", rewrite)

    return install


def _oci_drop_digest_header(response):
    response.headers = {k: v for k, v in response.headers.items() if k.lower() != "docker-content-digest"}


OCI_BROKEN = b'{"schemaVersion": 2, "layers": [ {not json'
OCI_ODD_TAG = "it's; DROP TABLE tags;--\"☃\"%2F..\\x00?"
OCI_ODD_REPOSITORY = "x'); DROP TABLE images; --/é ☃"


def oci_prepare_odd_tag(inventory, targets):
    repo = oci_repos(inventory)[1]
    tag = sorted(repo.tags)[0]
    repo.tags[OCI_ODD_TAG] = repo.tags.pop(tag)
    targets["oci_tag_with_odd_characters"] = (repo.name, repo.tags[OCI_ODD_TAG])


def oci_check_odd_tag(ctx):
    name, digest = ctx["targets"]["oci_tag_with_odd_characters"]
    assert ctx["current_tags"][(OCI_REGISTRY, name, OCI_ODD_TAG)] == digest


def oci_prepare_odd_repository(inventory, targets):
    repo = [r for r in oci_repos(inventory) if r is not targets["oci_tags_null"]][2]
    del inventory.registries[repo.registry][repo.name]
    repo.name = OCI_ODD_REPOSITORY
    inventory.registries[repo.registry][repo.name] = repo
    targets["oci_repository_with_odd_characters"] = repo


def oci_check_odd_repository(ctx):
    repo = ctx["targets"]["oci_repository_with_odd_characters"]
    tags = {k[2]: d for k, d in ctx["current_tags"].items() if k[1] == OCI_ODD_REPOSITORY}
    lost = {repo.tags_of(image.digest)[0] for r, image in [ctx["targets"]["oci_head_not_found"]] if r is repo}
    assert tags == {t: d for t, d in repo.tags.items() if t not in lost}
    rows = query(ctx["pipeline"], "SELECT image_count, tag_count FROM repositories WHERE repository = %s", OCI_ODD_REPOSITORY)
    assert rows == [(len(set(tags.values())), len(tags))]


def oci_install_tags_null(emulator, targets):
    repo = targets["oci_tags_null"]

    def rewrite(request, response):
        if response.status == 200 and isinstance(response.body, dict) and response.body.get("name") == repo.name:
            response.body["tags"] = None

    emulator.corrupt("tags", rewrite)


def oci_check_tags_null(ctx):
    # the CNCF registry's answer once every manifest of a repository is deleted: an empty repository
    repo = ctx["targets"]["oci_tags_null"]
    rows = query(ctx["pipeline"], "SELECT image_count, tag_count FROM repositories WHERE repository = %s", repo.name)
    assert rows == [(0, 0)]
    assert not [k for k in ctx["current_tags"] if k[1] == repo.name]
    assert [p for p in problems(ctx) if p[2] == repo.name] == []


def oci_install_odd_tag_entries(emulator, targets):
    repo = targets["oci_tag_list_with_duplicates_and_non_names"]

    def rewrite(request, response):
        if response.status == 200 and isinstance(response.body, dict) and response.body.get("name") == repo.name:
            tags = response.body["tags"]
            response.body["tags"] = tags + [tags[0], 42, None, ""]

    emulator.corrupt("tags", rewrite)


def oci_check_odd_tag_entries(ctx):
    repo = ctx["targets"]["oci_tag_list_with_duplicates_and_non_names"]
    assert {k[2]: d for k, d in ctx["current_tags"].items() if k[1] == repo.name} == dict(repo.tags)
    found = problems(ctx, call="GET tags/list")
    assert sorted(p[4] for p in found if p[2] == repo.name) == sorted(["42", "None", "''"]), found
    assert all("not a tag name" in p[5] for p in found)


def oci_install_empty_catalog_page(emulator, targets):
    def rewrite(request, response):
        if "after-empty" not in request.raw_query:
            link = '</v2/_catalog?n=100&after-empty=1>; rel="next"'
            return Response(200, {"repositories": []}, {"Link": link}, content_type="application/json")

    emulator.corrupt("catalog", rewrite)


def oci_check_empty_catalog_page(ctx):
    assert {r for (r,) in query(ctx["pipeline"], "SELECT repository FROM repositories")} == {r.name for r in ctx["inventory"].repositories()}


def oci_install_index_child_platform(emulator, targets):
    digest = targets["oci_index_child_without_platform"][1].digest

    def rewrite(request, response):
        if request.method == "GET" and oci_path_is(request, f"/manifests/{digest}"):
            for child in response.body["manifests"]:
                child.pop("platform", None)

    emulator.corrupt("get_manifest", rewrite)


def oci_prepare_index(inventory, targets):
    for repo in oci_repos(inventory):
        if repo is targets["oci_tags_null"]:
            continue
        for digest in sorted(set(repo.tags.values())):
            if repo.images[digest].is_index:
                targets["oci_index_child_without_platform"] = (repo, repo.images[digest])
                return
    raise AssertionError("the inventory has no tagged index")


def oci_check_index_child_platform(ctx):
    repo, index = ctx["targets"]["oci_index_child_without_platform"]
    rows = query(ctx["pipeline"], "SELECT digest, platform_os, platform_arch FROM images__manifests WHERE image_digest = %s ORDER BY position", index.digest)
    assert rows == [(c.digest, None, None) for c in index.children]
    for child in index.children:  # the children's own rows take the platform from their configs
        assert query(ctx["pipeline"], "SELECT platform_os, platform_arch FROM images WHERE digest = %s", child.digest) == [child.platform[:2]]
    oci_expect_reasons(ctx, index.digest, ("hash",))


def _oci_unknown_type(doc):
    doc["mediaType"] = "application/x-unknown+json"


def _oci_layer_big(doc):
    doc["layers"][1]["size"] = "big"


def _oci_layer_no_digest(doc):
    doc["layers"][0].pop("digest")


def _oci_config_time(response):
    doc = json.loads(response.body)
    doc["created"] = "yesterday"
    return Response(200, json.dumps(doc).encode(), dict(response.headers), content_type=response.content_type)


OCI_CORPUS: List[OciBad] = [  # the first one picks the repository the others stay out of
    OciBad("oci_tags_null", oci_check_tags_null, oci_install_tags_null,
           lambda inventory, targets: targets.__setitem__("oci_tags_null", oci_repos(inventory)[-1]), touches="repository"),
    oci_image_case("oci_manifest_not_json", oci_check_not_json, oci_on_manifest("oci_manifest_not_json", oci_replace_body(OCI_BROKEN))),
    oci_image_case("oci_manifest_json_array", oci_check_array, oci_on_manifest("oci_manifest_json_array", oci_replace_body(b"[1, 2]"))),
    oci_image_case("oci_manifest_unknown_media_type", oci_check_unknown_type,
                   oci_on_manifest("oci_manifest_unknown_media_type", oci_doc_edit(_oci_unknown_type))),
    oci_image_case("oci_layer_size_not_a_number", oci_check_layer_size, oci_on_manifest("oci_layer_size_not_a_number", oci_doc_edit(_oci_layer_big))),
    oci_image_case("oci_layer_without_digest", oci_check_layer_digest, oci_on_manifest("oci_layer_without_digest", oci_doc_edit(_oci_layer_no_digest))),
    oci_image_case("oci_manifest_bytes_not_its_digest", oci_check_bytes,
                   oci_on_manifest("oci_manifest_bytes_not_its_digest", oci_replace_body(lambda r: json.dumps(r.body).encode() + b"\n"))),
    oci_image_case("oci_config_not_json", oci_check_config(("not JSON",)),
                   oci_on_config("oci_config_not_json", oci_replace_body(b"<html>gateway</html>"))),
    oci_image_case("oci_config_time_unknown_format", oci_check_config_time, oci_on_config("oci_config_time_unknown_format", _oci_config_time)),
    oci_image_case("oci_config_blob_missing", oci_check_config(("BLOB_UNKNOWN",)),
                   oci_on_config("oci_config_blob_missing", lambda r: Response(404, {"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown to registry"}]}))),
    oci_image_case("oci_head_without_digest", oci_check_head_without_digest, oci_head("oci_head_without_digest", _oci_drop_digest_header)),
    oci_image_case("oci_head_not_found", oci_check_head_not_found,
                   oci_head("oci_head_not_found", lambda r: Response(404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}))),
    OciBad("oci_index_child_without_platform", oci_check_index_child_platform, oci_install_index_child_platform, oci_prepare_index, touches="index"),
    OciBad("oci_tag_with_odd_characters", oci_check_odd_tag, prepare=oci_prepare_odd_tag, touches="nothing"),
    OciBad("oci_repository_with_odd_characters", oci_check_odd_repository, prepare=oci_prepare_odd_repository, touches="nothing"),
    OciBad("oci_tag_list_with_duplicates_and_non_names", oci_check_odd_tag_entries, oci_install_odd_tag_entries,
           lambda inventory, targets: targets.__setitem__("oci_tag_list_with_duplicates_and_non_names", oci_repos(inventory)[0]), touches="nothing"),
    OciBad("oci_empty_catalog_page_with_next_link", oci_check_empty_catalog_page, oci_install_empty_catalog_page, touches="nothing"),
]
_oci_shared: Dict[str, Any] = {}


def oci_shared_load(tmp_path_factory):
    """One load with every non-fatal OCI bad input installed at once."""
    if not _oci_shared:
        case = AVAILABLE["oci"]
        inventory = case.inventory(seed=45, repositories=5, images=40)
        targets: Dict[str, Any] = {}
        for bad in OCI_CORPUS:
            bad.prepare(inventory, targets)
        with serving(case, inventory) as (emulator, _):
            for bad in OCI_CORPUS:
                bad.install(emulator, targets)
            pipeline, _ = load(tmp_path_factory.mktemp("bad-oci"), case)
        _oci_shared.update(pipeline=pipeline, inventory=inventory, targets=targets, provider="oci",
                           current_tags=current_tags(pipeline, "oci"))
    return _oci_shared


OCI_PARAMS = [pytest.param(bad, id=bad.name) for bad in OCI_CORPUS] if "oci" in AVAILABLE else []


@pytest.mark.parametrize("bad", OCI_PARAMS)
def test_oci_bad_record_loads_as_far_as_sound_and_is_reported(bad, tmp_path_factory):
    bad.check(oci_shared_load(tmp_path_factory))
    FIGURES["bad inputs tried (loaded as far as sound)"] += 1


@pytest.mark.skipif("oci" not in AVAILABLE, reason="oci not in the catalog")
def test_oci_everything_the_bad_inputs_did_not_touch_loads_exactly(tmp_path_factory):
    ctx = oci_shared_load(tmp_path_factory)
    pipeline, inventory, targets = ctx["pipeline"], ctx["inventory"], ctx["targets"]
    touched = {targets[bad.name][1].digest for bad in OCI_CORPUS if bad.touches in ("image", "index")}
    skipped_repo = targets["oci_tags_null"].name
    repos = [repo for repo in inventory.repositories() if repo.name != skipped_repo]
    want = {}
    for repo in repos:
        for digest in oci_visible(repo) - touched:
            image = repo.images[digest]
            want[(repo.name, digest)] = (None if image.is_index else image.content_size,
                                         None if image.is_index else image.created, image.media_type)
    rows = query(pipeline, "SELECT repository, digest, size_bytes, created_at, media_type FROM images")
    assert {(r, d): tuple(rest) for r, d, *rest in rows if d not in touched} == want
    got_layers = {(r, d): l for r, d, l in query(pipeline, "SELECT repository, image_digest, list((position, digest, size_bytes) ORDER BY position)"
                                                             " FROM images__layers GROUP BY 1, 2")}
    for (name, digest) in want:
        image = inventory.registries[OCI_REGISTRY][name].images[digest]
        assert [tuple(x.values()) if isinstance(x, dict) else tuple(x) for x in got_layers.get((name, digest), [])] == \
            [(i, l.digest, l.size) for i, l in enumerate(image.layers)]
    repo, image = targets["oci_head_not_found"]
    lost = (OCI_REGISTRY, repo.name, repo.tags_of(image.digest)[0])
    expected = {(OCI_REGISTRY, r.name, t): d for r in repos for t, d in r.tags.items()}
    del expected[lost]
    assert ctx["current_tags"] == expected
    # every problem row names provider, registry, repository, call and object, and belongs to a case
    rows = query(pipeline, "SELECT provider, registry, repository, call, object, reason FROM load_problems")
    assert all(r[0] == "oci" and r[1] == OCI_REGISTRY and r[2] and r[3] and r[5] for r in rows)
    assert len(rows) == 20, rows  # the per-case counts asserted above: 2+2+3+2+2+1 manifests, 3 configs, 1 HEAD, 1 index, 3 tag entries
    assert not duplicates_of(pipeline)


def duplicates_of(pipeline):
    from tests.reliability.support import db_path, duplicates

    return {k: v for k, v in duplicates(db_path(pipeline)).items() if v}


def oci_link_repeats(operation):
    def install(emulator):
        def rewrite(request, response):
            if response.status == 200:
                response.headers["Link"] = f'<{request.path}?n=100&last=same>; rel="next"'

        emulator.corrupt(operation, rewrite)

    return install


def oci_answer(operation, body, content_type="application/json"):
    def install(emulator):
        def rewrite(request, response):
            if response.status == 200:
                value = body(response.body) if callable(body) else body
                return Response(200, value, content_type=content_type)

        emulator.corrupt(operation, rewrite)

    return install


OCI_FATAL = {
    "oci_catalog_link_repeats": (oci_link_repeats("catalog"), "GET /v2/_catalog", "repeats"),
    "oci_tags_link_repeats": (oci_link_repeats("tags"), "/tags/list", "repeats"),
    "oci_catalog_not_json": (oci_answer("catalog", b"<html>gateway error</html>", "text/html"), "GET /v2/_catalog", "not JSON"),
    "oci_catalog_without_repositories": (oci_answer("catalog", {"items": []}), "GET /v2/_catalog", "without `repositories`"),
    "oci_catalog_names_not_a_list": (oci_answer("catalog", {"repositories": "all"}), "GET /v2/_catalog", "not a list"),
    "oci_tags_without_tags": (oci_answer("tags", lambda body: {"name": body["name"]}), "/tags/list", "without `tags`"),
    "oci_tags_not_json": (oci_answer("tags", b"<html>", "text/html"), "/tags/list", "not JSON"),
}
OCI_FATAL_PARAMS = [pytest.param(name, id=name) for name in OCI_FATAL] if "oci" in AVAILABLE else []


@pytest.mark.parametrize("name", OCI_FATAL_PARAMS)
def test_oci_bad_answer_stops_the_run_with_a_clear_error(name, tmp_path):
    case = AVAILABLE["oci"]
    install, call, word = OCI_FATAL[name]
    with serving(case, case.inventory(seed=5, repositories=2, images=6)) as (emulator, _):
        install(emulator)
        with pytest.raises(Exception) as info:
            load(tmp_path, case)
    error = _root_cause(info.value)
    assert isinstance(error, BadResponseError), repr(error)
    assert call in str(error) and word in str(error) and f"oci registry {OCI_REGISTRY}" in str(error), str(error)
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
