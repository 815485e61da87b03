"""The one way to build an HTTP client for a registry API, on dlt's REST client.

Retries (429 with Retry-After, 5xx, connection errors, timeouts) are dlt's own, configured by
dlt's `RUNTIME__REQUEST_*` settings. What this module adds: every failed call becomes one of
`sources.errors`' types naming the registry and the call, a page token that repeats stops
the walk instead of looping forever, and every answer's JSON is parsed once (`parsed_json`):
dlt's client parses a page to select its data and its paginators parse it again for the next
page's token or link; `PagesClient` and the paginators here read the one parsed body.
"""

from __future__ import annotations

import gc
import logging
import re
import threading
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional

import requests
from dlt.sources.helpers.requests import Client
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.paginators import BasePaginator, JSONResponseCursorPaginator

from .errors import (
    ApiError,
    AuthError,
    BadResponseError,
    NotFoundError,
    RegistryError,
    redact,
)
from .values import json_loads

log = logging.getLogger("registry_etl.http")

ErrorDescriber = Callable[[requests.Response], str]

# the parser of every answer: orjson reads these pages 2-3x faster than `json` (and than the
# simplejson requests picks when it is installed); a module attribute so tests can count parses
_loads = json_loads
_PARSED = "_registry_etl_json"

_gc_lock = threading.Lock()
_gc_pausers = 0


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a page is parsed (in any number of threads).

    A page is thousands of new dicts and lists, none of them garbage: each allocation burst ran
    dozens of collections that found nothing (measured: 26 Yandex pages of 1,000 images, kept as
    a load keeps them, 0.64-0.68 CPU-s to parse with the collector on, 0.13-0.14 s with it off).
    Reference counting frees as usual; the collector resumes when the last parse ends, unless it
    was off (turned off by someone else) when the first one began.
    """
    global _gc_pausers
    with _gc_lock:
        if _gc_pausers == 0 and not gc.isenabled():
            paused = False  # off already (by the application): not ours to turn on
        else:
            paused = True
            _gc_pausers += 1
            gc.disable()
    try:
        yield
    finally:
        if paused:
            with _gc_lock:
                _gc_pausers -= 1
                if _gc_pausers == 0:
                    gc.enable()


def parsed_json(response: requests.Response) -> Any:
    """The JSON body of `response`, parsed on the first call and kept on the response.

    `response.json()` then returns the same object, so a dlt paginator that reads the body
    itself does not parse it again.

    Raises:
        requests.exceptions.JSONDecodeError: The body is not JSON (as `response.json()` would).
    """
    cached = response.__dict__.get(_PARSED, _PARSED)
    if cached is not _PARSED:
        return cached
    content = response.content  # read before the pause: the pause covers the parse alone
    try:
        with _gc_paused():
            try:
                body = _loads(content)
            except UnicodeDecodeError:  # not UTF-8/16/32: the charset the server declared
                body = _loads(response.text)
    except ValueError as exc:
        raise requests.exceptions.JSONDecodeError(str(exc), "", 0) from None
    response.__dict__[_PARSED] = body
    response.json = lambda **_: body  # type: ignore[method-assign]
    return body


class AnswerShapeError(ValueError):
    """An answer whose shape the data selector cannot read (turned into `BadResponseError`)."""


WHOLE_BODY = "$"
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def select_page(body: Any, data_selector: Any) -> List[Any]:
    """The page's items as dlt's client selects them, for `$` (the body) or one top-level key
    without jsonpath: null or a missing key is an empty page, anything but a list one item.

    Raises:
        AnswerShapeError: A key is asked of an answer that is not a JSON object (read as an
            empty page, it would retire every tag the listing did not show).
    """
    if data_selector == WHOLE_BODY:
        data = body
    else:
        if not isinstance(body, dict):
            raise AnswerShapeError("the answer is not a JSON object")
        data = body.get(data_selector)
    if data is None:
        return []
    return data if isinstance(data, list) else [data]


class PagesClient(RESTClient):
    """dlt's REST client that parses each answer once (`parsed_json`) and selects `$` or a
    top-level key itself; other selectors go through dlt's jsonpath on the same parsed body."""

    def extract_response(self, response: requests.Response, data_selector: Any) -> List[Any]:
        body = parsed_json(response)
        if data_selector == WHOLE_BODY or (isinstance(data_selector, str) and _KEY.fullmatch(data_selector)):
            return select_page(body, data_selector)
        return super().extract_response(response, data_selector)


def describe_json_error(response: requests.Response) -> str:
    """A short text of an error body: its JSON if it is JSON, else its first 300 characters."""
    text = response.text or ""
    return redact(text[:300].strip() or response.reason or "no body")


def build_session(verify_tls: bool = True) -> requests.Session:
    """A requests session with dlt's retry policy (attempts, backoff, Retry-After)."""
    client = Client(raise_for_status=False)
    try:
        client.configure()  # honour the [runtime] request_* settings (attempts, backoff, timeout)
    except Exception as exc:  # no config context: dlt's defaults
        log.debug("runtime request settings not applied: %s", exc)
    session = client.session
    if not verify_tls:
        log.warning("TLS certificate verification is OFF for this source (verify_tls = false)")
        session.verify = False
    return session


def build_client(
    base_url: str,
    *,
    auth: Optional[requests.auth.AuthBase] = None,
    headers: Optional[Dict[str, str]] = None,
    paginator: Optional[BasePaginator] = None,
    data_selector: Optional[str] = None,
    verify_tls: bool = True,
) -> RESTClient:
    """A `PagesClient` (each answer parsed once) on a session with dlt's retry policy."""
    return PagesClient(
        base_url=base_url,
        headers=headers,
        auth=auth,
        paginator=paginator,
        data_selector=data_selector,
        session=build_session(verify_tls),
    )


def check_response(
    response: requests.Response,
    provider: str,
    call: str,
    registry: Optional[str] = None,
    describe: ErrorDescriber = describe_json_error,
) -> None:
    """Raise the error type that fits a failed response; return for a 2xx/3xx."""
    status = response.status_code
    if status < 400:
        return
    detail = describe(response)
    kwargs: Dict[str, Any] = dict(registry=registry, status=status)
    if status in (401, 403):
        raise AuthError(provider, call, detail, **kwargs)
    if status == 404:
        raise NotFoundError(provider, call, detail, **kwargs)
    if status == 429 or status >= 500:
        raise ApiError(provider, call, detail, **kwargs)
    raise ApiError(provider, call, detail, hint="The registry refused the request.", **kwargs)


def paginate(
    client: RESTClient,
    path: str,
    *,
    provider: str,
    call: str,
    registry: Optional[str] = None,
    params: Optional[Dict[str, Any]] = None,
    paginator: Optional[BasePaginator] = None,
    data_selector: Optional[str] = None,
    describe: ErrorDescriber = describe_json_error,
    counter: Optional[Callable[[str], None]] = None,
    objects: bool = False,
) -> Iterator[Any]:
    """Yield every page of `path` (the page's selected data), raising our errors on failure.

    With a `PagesClient` (what `build_client` makes) each answer is parsed once, whatever the
    paginator reads of it.

    Args:
        objects: Every item of a page must be a JSON object (a list of records); anything else
            raises `BadResponseError` before the page is used.
    """

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if counter:
            counter(call)
        if response.status_code == 429 or response.status_code >= 500:
            # dlt's session retries an HTTPError carrying 429/5xx (the hook runs inside each
            # attempt) and re-raises the last one, handled below. Returning quietly instead would
            # hand the last error body to the paginator as if it were a page of data: an empty
            # catalog or tag list, silently.
            response.raise_for_status()
        check_response(response, provider, call, registry, describe)

    try:
        for page in client.paginate(
            path,
            params=params,
            paginator=paginator,
            data_selector=data_selector,
            hooks={"response": [hook]},
        ):
            if objects and not all(isinstance(item, dict) for item in page):
                what = "the answer is not a JSON array" if data_selector in (None, WHOLE_BODY) else f"the answer's `{data_selector}` is not a list"
                raise BadResponseError(provider, call, f"{what} of objects", registry=registry)
            yield page
    except RegistryError:
        raise
    except AnswerShapeError as exc:
        raise BadResponseError(provider, call, str(exc), registry=registry) from None
    except requests.exceptions.JSONDecodeError as exc:
        raise BadResponseError(provider, call, f"the answer is not JSON ({exc})", registry=registry) from None
    except requests.HTTPError as exc:
        # 429/5xx still failing after dlt's retries: the registry's own error text
        if exc.response is not None:
            check_response(exc.response, provider, call, registry, describe)
        raise ApiError(provider, call, f"{type(exc).__name__}: {exc}", registry=registry) from None
    except requests.RequestException as exc:
        raise ApiError(provider, call, f"{type(exc).__name__}: {exc}", registry=registry) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BadResponseError(provider, call, f"unexpected answer: {exc}", registry=registry) from None


def get_json(
    client: RESTClient,
    path: str,
    *,
    provider: str,
    call: str,
    registry: Optional[str] = None,
    params: Optional[Dict[str, Any]] = None,
    describe: ErrorDescriber = describe_json_error,
    counter: Optional[Callable[[str], None]] = None,
) -> Any:
    """One GET (retried by the session), its JSON body, or our error."""
    try:
        response = client.get(path, params=params)
    except requests.RequestException as exc:
        raise ApiError(provider, call, f"{type(exc).__name__}: {exc}", registry=registry) from None
    if counter:
        counter(call)
    check_response(response, provider, call, registry, describe)
    try:
        return parsed_json(response)
    except ValueError as exc:
        raise BadResponseError(provider, call, f"the answer is not JSON ({exc})", registry=registry) from None


class RepeatGuardMixin:
    """For cursor paginators: a token seen before ends the walk with an error, not a loop."""

    provider = "registry"
    call = "list"

    def _guard(self, token: Any) -> None:
        seen = self.__dict__.setdefault("_seen_tokens", set())
        if token in seen:
            raise BadResponseError(
                self.provider,
                self.call,
                "the next-page token repeats an earlier one, so paging would never end",
            )
        seen.add(token)


class GuardedCursorPaginator(RepeatGuardMixin, JSONResponseCursorPaginator):
    """`nextPageToken`-style paging that refuses a repeating token (as the Yandex SDK does).

    The token is a top-level key of the (once parsed) answer; an empty page with a token is
    followed, as the SDKs do.
    """

    def __init__(self, cursor_path: str, cursor_param: str, provider: str, call: str) -> None:
        super().__init__(cursor_path=cursor_path, cursor_param=cursor_param, stop_after_empty_page=False)
        self.key = cursor_path
        self.provider, self.call = provider, call

    def update_state(self, response: requests.Response, data: Any = None) -> None:
        body = parsed_json(response)
        token = body.get(self.key) if isinstance(body, dict) else None
        self._next_reference = token or None
        if self._next_reference:
            self._guard(self._next_reference)
