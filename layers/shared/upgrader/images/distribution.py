"""The OCI distribution API v2 adapter: `HEAD /v2/<name>/manifests/<tag>` resolves a tag to its digest.

- Accept: the OCI index and manifest, Docker's manifest list and manifest v2 (`registry.MANIFEST_TYPES`), so a
  multi-arch image resolves to its index's digest, the one every platform's node pulls by.
- The digest is the registry's `Docker-Content-Digest` header; when a HEAD answer lacks it, a GET fetches the
  manifest (at most 4 MiB, the distribution project's own limit) and its sha256 is the digest. A GET checks
  the announced digest against the bytes and the body against its media type: a mismatch or a body that is
  not a manifest is `MalformedManifest`, never a digest we would pin.
- Auth: a 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` -> a token from the realm (with
  basic credentials when configured, anonymous otherwise) -> the request again with the token; `Basic` ->
  the request again with the credentials. Tokens are kept for this adapter's life (one deploy), per realm,
  service and scope, and the header that worked per repository, so the next tag of the same repository
  costs one request. Credentials travel only over TLS, or to a loopback address.
- Every request has a bounded timeout. One adapter per deploy (its caches are the deploy's).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from upgrader.images.references import DIGEST, ImageReference
from upgrader.images.registry import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    DigestMismatch,
    MalformedManifest,
    Missing,
    RegistryUnauthorized,
    RegistryUnavailable,
    Resolution,
    Resolved,
)
from upgrader.infra.hosts import is_loopback_host

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_TOKEN_BYTES = 64 * 1024
MAX_REDIRECTS = 3
ACCEPT = ", ".join(MANIFEST_TYPES)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True, slots=True)
class RegistryCredentials:
    """Basic credentials for one registry, and where they come from (named in a 502, never the secret)."""

    username: str
    password: str = field(repr=False)
    source: str


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class DistributionRegistry:
    """`ImageRegistry` over HTTP(S): TLS to every registry, plain HTTP only to loopback ones (the tests' and
    the local stack's)."""

    def __init__(
        self,
        credentials: Mapping[str, RegistryCredentials] | None = None,
        *,
        timeout: float = 5.0,
        ca_file: str | None = None,
        plain_http: Callable[[str], bool] = is_loopback_host,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._credentials = dict(credentials or {})
        self._timeout = timeout
        self._tls = ssl.create_default_context(cafile=ca_file)
        self._plain_http = plain_http
        self._clock = clock
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._auth: dict[tuple[str, str], str] = {}  # (host, repository) -> the Authorization header that worked
        self._first: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()
        self.requests = 0  # every HTTP request made (registry and token realm): the pre-flight's cost

    def resolve(self, reference: ImageReference) -> Resolution:
        """The digest of the reference's manifest (a HEAD, a GET only when the HEAD names no digest)."""
        path = f"/v2/{reference.repository}/manifests/{reference.manifest_key}"
        answer = self._call(reference, "HEAD", path)
        if answer.status == 404:
            return Missing(
                reference, f"{reference.registry} has no manifest {reference.manifest_key} in {reference.repository}"
            )
        media_type = self._media_type(reference, answer)
        digest = answer.headers.get("docker-content-digest", "")
        if not DIGEST.fullmatch(digest):
            answer = self._call(reference, "GET", path)
            if answer.status == 404:  # deleted between the two requests
                return Missing(
                    reference,
                    f"{reference.registry} has no manifest {reference.manifest_key} in {reference.repository}",
                )
            media_type = self._media_type(reference, answer)
            digest = self._verified_digest(reference, answer, media_type)
        if reference.digest and digest != reference.digest:
            raise DigestMismatch(
                reference.registry, reference, f"asked for {reference.digest}, the registry answered {digest}"
            )
        return Resolved(reference, digest, media_type)

    # -- answers -----------------------------------------------------------------------------------------------

    @staticmethod
    def _media_type(reference: ImageReference, answer: Answer) -> str:
        media_type = answer.headers.get("content-type", "").split(";", 1)[0].strip()
        if media_type not in MANIFEST_TYPES:
            raise MalformedManifest(
                reference.registry, reference, f"media type {media_type or 'none'!r} is not an image manifest or index"
            )
        return media_type

    @staticmethod
    def _verified_digest(reference: ImageReference, answer: Answer, media_type: str) -> str:
        algorithm = (reference.digest or "sha256:").split(":", 1)[0]
        computed = f"{algorithm}:{hashlib.new(algorithm, answer.body).hexdigest()}"
        announced = answer.headers.get("docker-content-digest")
        if announced and announced != computed:
            raise DigestMismatch(reference.registry, reference, f"announced {announced}, the bytes hash to {computed}")
        try:
            document = json.loads(answer.body)
        except ValueError as exc:
            raise MalformedManifest(reference.registry, reference, f"not JSON: {exc}") from exc
        if not isinstance(document, dict) or document.get("schemaVersion") != 2:
            raise MalformedManifest(reference.registry, reference, "not a schemaVersion 2 manifest")
        if document.get("mediaType", media_type) != media_type:
            raise MalformedManifest(
                reference.registry, reference, f"body says {document.get('mediaType')!r}, header {media_type!r}"
            )
        expected = "manifests" if media_type in INDEX_TYPES else "layers"
        if not isinstance(document.get(expected), list):
            raise MalformedManifest(reference.registry, reference, f"a {media_type} without its {expected!r} list")
        return computed

    # -- HTTP and auth -----------------------------------------------------------------------------------------

    def _call(self, reference: ImageReference, method: str, path: str) -> Answer:
        key = (reference.api_host, reference.repository)
        if key in self._auth:
            return self._call_once(reference, method, path)
        with self._lock:
            first = self._first.setdefault(key, threading.Lock())
        with first:  # the first request of a repository learns how to authenticate; the others wait for it
            return self._call_once(reference, method, path)

    def _call_once(self, reference: ImageReference, method: str, path: str) -> Answer:
        host, key = reference.api_host, (reference.api_host, reference.repository)
        headers = {"Accept": ACCEPT}
        if self._auth.get(key):
            headers["Authorization"] = self._auth[key]
        answer = self._send(host, method, path, headers)
        if answer.status == 401:  # no credentials sent yet, or the kept token expired: authenticate once
            headers["Authorization"] = self._authorize(reference, answer.headers.get("www-authenticate", ""))
            answer = self._send(host, method, path, headers)
        if answer.status in (401, 403):
            self._auth.pop(key, None)
            raise RegistryUnauthorized(host, self._source(reference), f"HTTP {answer.status} on {method} {path}")
        if answer.status >= 500 or answer.status == 429:
            raise RegistryUnavailable(host, f"HTTP {answer.status} on {method} {path}")
        if answer.status not in (200, 404):
            raise MalformedManifest(host, reference, f"unexpected HTTP {answer.status} on {method} {path}")
        self._auth[key] = headers.get("Authorization", "")  # "": this repository needs none
        return answer

    def _authorize(self, reference: ImageReference, challenge: str) -> str:
        host = reference.api_host
        scheme, _, params_text = challenge.partition(" ")
        params = dict(_CHALLENGE.findall(params_text))
        credentials = self._credentials_for(reference)
        if scheme.lower() == "basic":
            if credentials is None:
                raise RegistryUnauthorized(host, self._source(reference), "it asks for basic credentials")
            return _basic(credentials)
        if scheme.lower() != "bearer" or not params.get("realm"):
            raise RegistryUnauthorized(
                host, self._source(reference), f"HTTP 401 with an unusable challenge {scheme or 'none'!r}"
            )
        scope = params.get("scope") or f"repository:{reference.repository}:pull"
        return f"Bearer {self._token(reference, params['realm'], params.get('service', ''), scope, credentials)}"

    def _token(
        self, reference: ImageReference, realm: str, service: str, scope: str, credentials: RegistryCredentials | None
    ) -> str:
        host = reference.api_host
        cached = self._tokens.get((realm, service, scope))
        if cached and cached[1] > self._clock():
            return cached[0]
        url = urllib.parse.urlsplit(realm)
        if (
            url.scheme not in ("https", "http")
            or not url.netloc
            or (url.scheme == "http" and not is_loopback_host(url.netloc))
        ):
            raise RegistryUnauthorized(host, self._source(reference), f"the token realm {realm!r} is not an https URL")
        query = urllib.parse.urlencode([(k, v) for k, v in (("service", service), ("scope", scope)) if v])
        path = f"{url.path or '/'}?{'&'.join(p for p in (url.query, query) if p)}"
        headers = {"Authorization": _basic(credentials)} if credentials else {}
        answer = self._send(url.netloc, "GET", path, headers, scheme=url.scheme, limit=MAX_TOKEN_BYTES)
        if answer.status in (401, 403):
            raise RegistryUnauthorized(host, self._source(reference), f"the token realm answered HTTP {answer.status}")
        if answer.status != 200:
            raise RegistryUnavailable(host, f"the token realm {url.netloc} answered HTTP {answer.status}")
        try:
            document = json.loads(answer.body)
            token = str(document.get("token") or document.get("access_token") or "")
            lifetime = int(document.get("expires_in") or 60)
        except (ValueError, TypeError, AttributeError) as exc:
            raise RegistryUnavailable(host, f"the token realm {url.netloc} answered no token") from exc
        if not token:
            raise RegistryUnavailable(host, f"the token realm {url.netloc} answered no token")
        self._tokens[(realm, service, scope)] = (token, self._clock() + max(lifetime - 10, 1))
        return token

    def _credentials_for(self, reference: ImageReference) -> RegistryCredentials | None:
        return self._credentials.get(reference.registry) or self._credentials.get(reference.api_host)

    def _source(self, reference: ImageReference) -> str:
        credentials = self._credentials_for(reference)
        return credentials.source if credentials else f"no credentials configured for {reference.registry} (anonymous)"

    def _send(
        self, host: str, method: str, path: str, headers: Mapping[str, str], *, scheme: str | None = None,
        limit: int = MAX_MANIFEST_BYTES,
    ) -> Answer:  # fmt: skip
        scheme = scheme or ("http" if self._plain_http(host) else "https")
        for _ in range(MAX_REDIRECTS + 1):
            with self._lock:
                self.requests += 1
            connection: http.client.HTTPConnection = (
                http.client.HTTPSConnection(host, timeout=self._timeout, context=self._tls)
                if scheme == "https"
                else http.client.HTTPConnection(host, timeout=self._timeout)
            )
            try:
                connection.request(method, path, headers=dict(headers))
                response = connection.getresponse()
                body = response.read(limit + 1) if method != "HEAD" else b""
                answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
            except (OSError, http.client.HTTPException) as exc:  # timeouts are OSErrors
                raise RegistryUnavailable(
                    host, f"{method} {scheme}://{host}{path.split('?')[0]}: {exc or type(exc).__name__}"
                ) from exc
            finally:
                connection.close()
            if len(answer.body) > limit:
                raise RegistryUnavailable(host, f"{method} {path}: the answer is larger than {limit} bytes")
            location = answer.headers.get("location")
            if answer.status not in (301, 302, 303, 307, 308) or not location:
                return answer
            target = urllib.parse.urlsplit(location)
            if target.netloc and (target.netloc != host or target.scheme != scheme):
                # Credentials stay with the registry that asked for them: a redirect elsewhere is refused.
                raise RegistryUnavailable(host, f"{method} {path} redirected to another host ({target.netloc})")
            path = urllib.parse.urlunsplit(("", "", target.path, target.query, ""))
        raise RegistryUnavailable(host, f"{method} {path}: more than {MAX_REDIRECTS} redirects")


def _basic(credentials: RegistryCredentials) -> str:
    pair = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")
