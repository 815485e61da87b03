"""ECR answers → unified rows, without a server."""

from datetime import datetime, timezone

from sources.ecr.helpers import image_row, registry_of, repository_row
from sources.model import LOAD_PROBLEMS, Rows

UTC = timezone.utc
REPO = {
    "repositoryArn": "arn:aws:ecr:eu-west-1:111122223333:repository/team/app",
    "registryId": "111122223333",
    "repositoryName": "team/app",
    "repositoryUri": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/team/app",
    "createdAt": datetime(2024, 5, 1, tzinfo=UTC),
    "imageTagMutability": "IMMUTABLE",
    "imageScanningConfiguration": {"scanOnPush": True},
    "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": "arn:aws:kms:key/1"},
    "someNewField": "kept",
}


def test_registry_is_the_pullable_host():
    assert registry_of(REPO, "eu-west-1") == "111122223333.dkr.ecr.eu-west-1.amazonaws.com"
    assert registry_of({"registryId": "1"}, "us-east-1") == "1.dkr.ecr.us-east-1.amazonaws.com"


def test_repository_row_keeps_ecr_fields_and_new_ones():
    row = repository_row(REPO, "eu-west-1", 7)
    assert row["registry"] + "/" + row["repository"] == REPO["repositoryUri"]
    assert row["image_count"] == 7
    assert (row["image_tag_mutability"], row["scan_on_push"], row["encryption_type"], row["kms_key"]) == (
        "IMMUTABLE", True, "KMS", "arn:aws:kms:key/1")
    assert row["some_new_field"] == "kept"


def test_image_row_maps_detail_and_reports_unsound_values():
    rows = Rows()
    detail = {
        "registryId": "111122223333",
        "repositoryName": "team/app",
        "imageDigest": "sha256:abc",
        "imageTags": ["v1"],
        "imageSizeInBytes": "not-a-size",
        "imagePushedAt": datetime(2024, 5, 2, 1, 2, 3, 456000, tzinfo=UTC),
        "lastRecordedPullTime": "sometime",
        "imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactMediaType": "application/vnd.oci.image.config.v1+json",
        "imageStatus": "ACTIVE",
        "imageScanFindingsSummary": {"findingSeverityCounts": {"HIGH": 2}},
    }
    row = image_row(detail, "111122223333.dkr.ecr.eu-west-1.amazonaws.com", rows)
    assert row["size_bytes"] is None and row["last_pulled_at"] is None
    assert row["created_at"] == datetime(2024, 5, 2, 1, 2, 3, 456000, tzinfo=UTC)
    assert row["artifact_media_type"] == "application/vnd.oci.image.config.v1+json"
    assert row["image_scan_findings_summary"] == {"findingSeverityCounts": {"HIGH": 2}}
    assert rows.count(LOAD_PROBLEMS) == 2
