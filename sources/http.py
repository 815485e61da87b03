"""The one way to build an HTTP client for a registry API, on dlt's REST client.

Retries (429 with Retry-After, 5xx, connection errors, timeouts) are dlt's own, configured by
dlt's `RUNTIME__REQUEST_*` settings. What this module adds: every failed call becomes one of
`sources.errors`' types naming the registry and the call, and a page token that repeats stops
the walk instead of looping forever.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterator, Optional

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

log = logging.getLogger("registry_etl.http")

ErrorDescriber = Callable[[requests.Response], str]


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
    return RESTClient(
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
) -> Iterator[Any]:
    """Yield every page of `path` (the page's selected data), raising our errors on failure."""

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
            yield page
    except RegistryError:
        raise
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
        return response.json()
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
    """`nextPageToken`-style paging that refuses a repeating token (as the Yandex SDK does)."""

    def __init__(self, cursor_path: str, cursor_param: str, provider: str, call: str) -> None:
        super().__init__(cursor_path=cursor_path, cursor_param=cursor_param)
        self.provider, self.call = provider, call

    def update_state(self, response: requests.Response, data: Any = None) -> None:
        super().update_state(response, data)
        if self._next_reference:
            self._guard(self._next_reference)
