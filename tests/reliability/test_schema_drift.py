"""Schema drift: an API that starts sending a new field gets a new column; a field that changes
type (a number, later a string) does not poison the table: columns outside the contract are
text (the choice and why: docs/reliability.md); the contract's typed columns take numbers sent
as strings. Each source names one detail call and a field of it to bend."""

from __future__ import annotations

import pytest

from tests.reliability.cases import available
from tests.reliability.support import db_path, duplicates, load, serving
from tests.support import expected_images, loaded_images, query

DRIFT = {
    # botocore keeps only the fields of its service model: the new field must be one it knows
    # and the source does not map yet
    "ecr": dict(operation="DescribeImages", items="imageDetails", field="subjectManifestDigest",
                column="subject_manifest_digest", size_field="imageSizeInBytes", registry=lambda r: f"123456789012.dkr.ecr.{r}.amazonaws.com"),
    "yandex": dict(operation="Image.list", items="images", field="futureField", column="future_field",
                   size_field="compressedSize", registry=None),
}
CASES = [case for case in available() if case.provider in DRIFT]


def bend(emulator, spec, value, size_as_text=False):
    def edit(request, response):
        for item in (response.body or {}).get(spec["items"], []):
            item[spec["field"]] = value
            if size_as_text and item.get(spec["size_field"]) is not None:
                item[spec["size_field"]] = str(item[spec["size_field"]])

    emulator.clear_hooks()
    emulator.corrupt(spec["operation"], edit)


@pytest.mark.parametrize("case", CASES, ids=[c.provider for c in CASES])
def test_new_field_becomes_a_column_and_a_type_change_does_not_poison_it(tmp_path, case):
    spec = DRIFT[case.provider]
    inventory = case.inventory(seed=12, repositories=2, images=12)
    with serving(case, inventory) as (emulator, _):
        pipeline, _ = load(tmp_path, case)  # the API without the field
        column = spec["column"]
        assert not query(pipeline, "SELECT 1 FROM information_schema.columns WHERE table_name = 'images' AND column_name = %s", column)

        first = inventory.push_images(2)
        bend(emulator, spec, 777)  # the field appears, as a number
        load(tmp_path, case)
        second = inventory.push_images(2)
        bend(emulator, spec, "sha256:" + "e" * 64, size_as_text=True)  # now a string; sizes as int64 strings
        pipeline, _ = load(tmp_path, case)
        emulator.clear_hooks()
        pipeline, _ = load(tmp_path, case)  # and the run after still works

    values = dict(query(pipeline, f"SELECT digest, {column} FROM images WHERE {column} IS NOT NULL"))
    new_first = {d for _, image in first for d in [image.digest] + [c.digest for c in image.children]}
    new_second = {d for _, image in second for d in [image.digest] + [c.digest for c in image.children]}
    assert values == {**{d: "777" for d in new_first}, **{d: "sha256:" + "e" * 64 for d in new_second}}
    types = query(pipeline, "SELECT data_type FROM information_schema.columns WHERE table_schema = 'registry' AND table_name = 'images' AND column_name = %s", column)
    assert types == [("VARCHAR",)]
    # sizes sent as strings land as the same BIGINTs; everything else is exact
    if spec["registry"]:
        assert loaded_images(pipeline, case.provider) == expected_images(inventory, spec["registry"])
    else:
        assert query(pipeline, "SELECT count(*), count(size_bytes) FROM images") == [(inventory.counts()["images"],) * 2]
    assert all(n == 0 for n in duplicates(db_path(pipeline)).values())
