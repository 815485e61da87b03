"""`sources.http.paginate` over `build_client`: every answer is parsed once, whatever paginator
reads it, and a bad answer stops the walk with our error (table-driven, as dlt's rest_api tests).

The pages come from a fake transport mounted on the client's session: no network, and the
requests each paginator makes are checked along with the pages it yields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter

from sources import http
from sources.errors import ApiError, BadResponseError
from sources.http import GuardedCursorPaginator, build_client, paginate
from sources.ncp.helpers import NextPagePaginator
from sources.swr.helpers import ContentRangePaginator

# (status, body, headers) for one request's query
Answer = Tuple[int, Any, Dict[str, str]]


class FakeTransport(BaseAdapter):
    """Answers each request from `route(query)`; records the queries asked."""

    def __init__(self, route: Callable[[Dict[str, str]], Answer]) -> None:
        super().__init__()
        self.route = route
        self.queries: List[Dict[str, str]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        query = dict(parse_qsl(urlsplit(request.url).query))
        self.queries.append(query)
        status, body, headers = self.route(query)
        response = requests.Response()
        response.status_code = status
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response.headers.update({"Content-Type": "application/json", **headers})
        response.url, response.request = request.url, request
        return response

    def close(self) -> None:
        pass


def _records(start: int, count: int) -> List[Dict[str, Any]]:
    return [{"name": f"r{n}", "n": n} for n in range(start, start + count)]


def _content_range(query: Dict[str, str]) -> Answer:
    """SWR: bare arrays, offset/limit, Content-Range total (5 records, limit 2)."""
    offset = int(query.get("offset", 0))
    page = _records(offset, max(0, min(2, 5 - offset)))
    return 200, page, {"Content-Range": f"{offset}-{len(page)}/5"}


def _next_page(query: Dict[str, str]) -> Answer:
    """NCP: `results` envelopes, 1-based `page`, `next` null on the last page (3 pages)."""
    page = int(query["page"])
    return 200, {"count": 5, "next": page + 1 if page < 3 else None, "results": _records(2 * (page - 1), 2 if page < 3 else 1)}, {}


def _token(query: Dict[str, str]) -> Answer:
    """Yandex: `nextPageToken`, an empty page with a token followed, the last page without one."""
    token = query.get("pageToken")
    pages = {None: (_records(0, 2), "t1"), "t1": ([], "t2"), "t2": (_records(2, 3), None)}
    records, following = pages[token]
    body: Dict[str, Any] = {"images": records} if records else {}  # proto3 JSON leaves an empty list out
    if following:
        body["nextPageToken"] = following
    return 200, body, {}


@dataclass
class Case:
    name: str
    route: Callable[[Dict[str, str]], Answer]
    paginator: Callable[[], Any]
    selector: str
    pages: List[List[Dict[str, Any]]]  # what the walk yields
    queries: List[Dict[str, str]]  # what it asked, page by page
    params: Dict[str, Any] = field(default_factory=dict)


CASES = [
    Case(
        "content_range_bare_arrays", _content_range, lambda: ContentRangePaginator("list_tags", "reg", limit=2), "$",
        [_records(0, 2), _records(2, 2), _records(4, 1)],
        [{"offset": "0", "limit": "2"}, {"offset": "2", "limit": "2"}, {"offset": "4", "limit": "2"}],
    ),
    Case(
        "next_page_envelopes", _next_page, lambda: NextPagePaginator(call="ListTags"), "results",
        [_records(0, 2), _records(2, 2), _records(4, 1)],
        [{"pagesize": "2", "page": "1"}, {"pagesize": "2", "page": "2"}, {"pagesize": "2", "page": "3"}],
        params={"pagesize": 2},
    ),
    Case(
        "next_page_token", _token, lambda: GuardedCursorPaginator("nextPageToken", "pageToken", "yandex", "Image.list"),
        "images", [_records(0, 2), [], _records(2, 3)],
        [{"pageSize": "2"}, {"pageSize": "2", "pageToken": "t1"}, {"pageSize": "2", "pageToken": "t2"}],
        params={"pageSize": 2},
    ),
]


@pytest.fixture
def parses(monkeypatch) -> List[Any]:
    """Every JSON parse of `sources.http`, in order (the parsed objects); a parse by requests'
    own `response.json()` (what dlt's client and paginators call) fails the test."""
    seen: List[Any] = []
    real = http._loads

    def counting(text: Any) -> Any:
        seen.append(real(text))
        return seen[-1]

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an answer was parsed by response.json(), not once by sources.http")

    monkeypatch.setattr(http, "_loads", counting)
    monkeypatch.setattr(requests.models.complexjson, "loads", refused)
    return seen


def _walk(transport: FakeTransport, case_paginator: Any, selector: str, params: Optional[Dict[str, Any]] = None, **kwargs: Any):
    client = build_client("http://registry.test")
    client.session.mount("http://", transport)
    return paginate(
        client, "list", provider="test", call="list", registry="reg", params=params,
        paginator=case_paginator, data_selector=selector, objects=True, **kwargs,
    )


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_each_page_is_parsed_once_and_every_record_is_read(case: Case, parses: List[Any]) -> None:
    transport = FakeTransport(case.route)
    counted: List[str] = []
    pages = list(_walk(transport, case.paginator(), case.selector, case.params, counter=counted.append))
    assert pages == case.pages
    assert transport.queries == case.queries
    # one parse per answer: the page's data and the paginator's token, count or link all
    # came from it
    assert len(parses) == len(transport.queries) == len(counted)


def test_response_json_returns_the_parsed_body_after_the_first_parse(parses: List[Any]) -> None:
    response = requests.Response()
    response._content = b'{"results": [{"a": 1}], "next": null}'
    body = http.parsed_json(response)
    assert response.json() is body and http.parsed_json(response) is body
    assert len(parses) == 1


def _always(status: int, body: Any, headers: Optional[Dict[str, str]] = None) -> Callable[[Dict[str, str]], Answer]:
    return lambda query: (status, body, headers or {})


BAD_ANSWERS = [
    ("not_json", _always(200, b"<html>gateway</html>"), lambda: NextPagePaginator(call="list"), "results", BadResponseError, "not JSON"),
    ("not_utf8", _always(200, b"\xff\xfe{"), lambda: ContentRangePaginator("list"), "$", BadResponseError, "not JSON"),
    ("key_of_an_array", _always(200, [{"a": 1}]), lambda: GuardedCursorPaginator("nextPageToken", "pageToken", "t", "list"),
     "images", BadResponseError, "not a JSON object"),
    ("items_not_objects", _always(200, {"images": ["a", "b"]}), lambda: GuardedCursorPaginator("nextPageToken", "pageToken", "t", "list"),
     "images", BadResponseError, "`images` is not a list of objects"),
    ("a_string_for_the_list", _always(200, {"images": "all of them"}), lambda: GuardedCursorPaginator("nextPageToken", "pageToken", "t", "list"),
     "images", BadResponseError, "not a list of objects"),
    ("array_not_of_objects", _always(200, [1, 2], {"Content-Range": "0-2/2"}), lambda: ContentRangePaginator("list"), "$",
     BadResponseError, "not a JSON array of objects"),
    ("repeating_token", _always(200, {"images": [{"a": 1}], "nextPageToken": "same"}),
     lambda: GuardedCursorPaginator("nextPageToken", "pageToken", "t", "list"), "images", BadResponseError, "repeats"),
    ("no_results", _always(200, {"count": 1, "next": None}), lambda: NextPagePaginator(call="list"), "results",
     BadResponseError, "no `results` list"),
    ("server_error_after_retries", _always(503, {"message": "down"}), lambda: NextPagePaginator(call="list"), "results",
     ApiError, "down"),
]


@pytest.mark.parametrize(
    "route,paginator,selector,error,message", [case[1:] for case in BAD_ANSWERS], ids=[case[0] for case in BAD_ANSWERS]
)
def test_a_bad_answer_stops_the_walk_with_our_error(route, paginator, selector, error, message, monkeypatch) -> None:
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_RETRY_DELAY", "0")
    with pytest.raises(error, match=message) as raised:
        list(_walk(FakeTransport(route), paginator(), selector))
    assert raised.value.call == "list"
