"""Signature v2 and paging, without a server."""

from __future__ import annotations

import json

import pytest
import requests

from sources.errors import BadResponseError
from sources.ncp.helpers import NcpSignatureV2, NextPagePaginator, describe_gateway_error, signature_v2
from sources.ncp.settings import HEADER_ACCESS_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP

VECTOR_URI = "/ncr/api/v2/repositories/myreg/team%2Fapp/tags?page=1&pagesize=2"
VECTOR_SIGNATURE = "bB+z5UW5mamh7E9t42P1lrnQ/vIMsSSKeRk2I1KCHY4="


def test_reference_vector():
    assert signature_v2("GET", VECTOR_URI, "1735689600000", "AKEXAMPLE", "SKEXAMPLE") == VECTOR_SIGNATURE


def test_auth_signs_the_path_and_query_exactly_as_sent():
    auth = NcpSignatureV2("AKEXAMPLE", "SKEXAMPLE", clock=lambda: 1735689600.0)
    request = requests.Request(
        "GET",
        "https://ncr.apigw.ntruss.com/ncr/api/v2/repositories/myreg/team%2Fapp/tags",
        params={"page": 1, "pagesize": 2},
        auth=auth,
    ).prepare()
    assert request.path_url == VECTOR_URI  # %2F kept, query in the order sent
    assert request.headers[HEADER_TIMESTAMP] == "1735689600000"
    assert request.headers[HEADER_ACCESS_KEY] == "AKEXAMPLE"
    assert request.headers[HEADER_SIGNATURE] == VECTOR_SIGNATURE


def test_auth_never_shows_the_secret():
    auth = NcpSignatureV2("AKEXAMPLE", "SK-very-secret-value")
    assert "SK-very-secret-value" not in repr(auth) and "SK-very-secret-value" not in str(auth)


def _response(body, status=200) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers["Content-Type"] = "application/json"
    return response


def _request():
    return requests.Request("GET", "http://x/repositories", params={"pagesize": 2})


def test_paginator_is_one_based_and_follows_next():
    paginator = NextPagePaginator()
    request = _request()
    paginator.init_request(request)
    assert request.params["page"] == 1
    paginator.update_state(_response({"count": 5, "next": 2, "previous": None, "results": [1, 2]}), [1, 2])
    assert paginator.has_next_page
    paginator.update_request(request)
    assert request.params["page"] == 2
    paginator.update_state(_response({"count": 5, "next": 3, "previous": 1, "results": [3, 4]}), [3, 4])
    paginator.update_request(request)
    assert request.params["page"] == 3
    # the last page says next: null, so there is no request for an empty page after it
    paginator.update_state(_response({"count": 5, "next": None, "previous": 2, "results": [5]}), [5])
    assert not paginator.has_next_page


def test_paginator_stops_on_an_empty_page_and_refuses_a_next_that_does_not_advance():
    paginator = NextPagePaginator()
    paginator.init_request(_request())
    paginator.update_state(_response({"count": 0, "next": 2, "results": []}), [])
    assert not paginator.has_next_page
    looping = NextPagePaginator(call="ListTags")
    looping.init_request(_request())
    with pytest.raises(BadResponseError, match="does not move past page 1"):
        looping.update_state(_response({"count": 9, "next": 1, "results": [1]}), [1])
    with pytest.raises(BadResponseError, match="not a page number"):
        looping.update_state(_response({"count": 9, "next": "later", "results": [1]}), [1])


def test_gateway_error_body_is_described():
    body = {"error": {"errorCode": "200", "message": "Authentication Failed", "details": "Invalid signature."}}
    assert describe_gateway_error(_response(body, 401)) == (
        "gateway error 200 (authentication failed): Authentication Failed: Invalid signature."
    )
    plain = requests.Response()
    plain.status_code, plain._content, plain.reason = 502, b"<html>bad gateway</html>", "Bad Gateway"
    assert describe_gateway_error(plain) == "<html>bad gateway</html>"


def test_paginator_tolerates_a_link_in_next():
    paginator = NextPagePaginator()
    request = _request()
    paginator.init_request(request)
    paginator.update_state(_response({"count": 5, "next": "https://h/x?page=2&pagesize=2", "results": [1, 2]}), [1, 2])
    paginator.update_request(request)
    assert request.params["page"] == 2


@pytest.mark.parametrize("body", [{"count": 1, "next": None}, {"count": 1, "next": None, "results": "all"}, [1]])
def test_an_answer_without_its_results_list_is_refused_not_read_as_the_last_page(body):
    # dlt reads a missing `results` as an empty page: the listing would end early and retire tags
    paginator = NextPagePaginator(call="ListTags")
    paginator.init_request(_request())
    with pytest.raises(BadResponseError, match="no `results` list"):
        paginator.update_state(_response(body), [])
