"""The compiled botocore parser gives exactly botocore's own results for ECR's answers."""

from __future__ import annotations

import json

import botocore.session
import pytest
from botocore.parsers import JSONParser

from sources.ecr.helpers import utc_timestamp
from sources.ecr.parser import CompiledParserFactory

DETAIL = {
    "registryId": "123456789012",
    "repositoryName": "team/app",
    "imageDigest": "sha256:" + "a" * 64,
    "imageSizeInBytes": 123,
    "imagePushedAt": 1700000000.123,
    "imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json",
    "imageStatus": "ACTIVE",
    "imageTags": ["v1", "v2"],
    "lastRecordedPullTime": 1700000001.5,
    "imageScanStatus": {"status": "COMPLETE", "description": "done"},
    "imageScanFindingsSummary": {"imageScanCompletedAt": 1.0, "findingSeverityCounts": {"HIGH": 1}},
    "notInTheModel": 5,
    "nullValue": None,
}
ANSWERS = {
    "DescribeImages": {"imageDetails": [DETAIL, {**DETAIL, "imageTags": None}], "nextToken": "t"},
    "ListImages": {"imageIds": [{"imageDigest": "sha256:1", "imageTag": "v1"}, {"imageDigest": "sha256:2"}]},
    "BatchGetImage": {
        "images": [{"registryId": "1", "repositoryName": "r", "imageId": {"imageDigest": "d"}, "imageManifest": "{}"}],
        "failures": [{"imageId": {"imageDigest": "x"}, "failureCode": "ImageNotFound", "failureReason": "gone"}],
    },
    "DescribeRepositories": {
        "repositories": [
            {"repositoryName": "n", "createdAt": 1.5e9, "imageScanningConfiguration": {"scanOnPush": True}, "extra": [1]}
        ]
    },
}


@pytest.mark.parametrize("operation", sorted(ANSWERS))
def test_same_result_as_botocore(operation):
    shape = botocore.session.get_session().get_service_model("ecr").operation_model(operation).output_shape
    response = {"body": json.dumps(ANSWERS[operation]).encode(), "headers": {"x-amzn-requestid": "r"}, "status_code": 200}
    factory = CompiledParserFactory()
    factory.set_parser_defaults(timestamp_parser=utc_timestamp)
    ours = factory.create_parser("json").parse(response, shape)
    theirs = JSONParser(timestamp_parser=utc_timestamp).parse(response, shape)
    assert ours == theirs
    assert json.dumps(ours, default=str) == json.dumps(theirs, default=str)  # same key order too


def test_errors_are_botocore_errors():
    shape = botocore.session.get_session().get_service_model("ecr").operation_model("ListImages").output_shape
    response = {"body": b'{"__type":"RepositoryNotFoundException","message":"nope"}', "headers": {}, "status_code": 400}
    ours = CompiledParserFactory().create_parser("json").parse(response, shape)
    assert ours["Error"] == {"Code": "RepositoryNotFoundException", "Message": "nope"}
