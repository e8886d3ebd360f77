"""OpenID Foundation "Config OP" plan (oidcc-config-certification-test-plan) against the real tsidp.

One module, ``oidcc-discovery-endpoint-verification``; the checks follow the
suite's conditions (named in the comments).  The suite's "all endpoints are
HTTPS" check (CheckDiscEndpointAllEndpointsAreHttps, and the https part of
CheckDiscEndpointDiscoveryUrl) is left out: ``tsidp --dev`` serves plain HTTP on
loopback by design.  Everything else of the module is asserted, for the static
client variant of the plan.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

URL_MEMBERS = (
    "issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "registration_endpoint",
    "revocation_endpoint", "introspection_endpoint", "end_session_endpoint", "service_documentation",
    "op_policy_uri", "op_tos_uri",
)
STRING_ARRAY_MEMBERS = (
    "scopes_supported", "response_types_supported", "response_modes_supported", "grant_types_supported",
    "acr_values_supported", "subject_types_supported", "id_token_signing_alg_values_supported",
    "id_token_encryption_alg_values_supported", "id_token_encryption_enc_values_supported",
    "userinfo_signing_alg_values_supported", "userinfo_encryption_alg_values_supported",
    "userinfo_encryption_enc_values_supported", "request_object_signing_alg_values_supported",
    "request_object_encryption_alg_values_supported", "request_object_encryption_enc_values_supported",
    "token_endpoint_auth_methods_supported", "token_endpoint_auth_signing_alg_values_supported",
    "display_values_supported", "claim_types_supported", "claims_supported", "claims_locales_supported",
    "ui_locales_supported", "code_challenge_methods_supported", "revocation_endpoint_auth_methods_supported",
    "introspection_endpoint_auth_methods_supported",
)
BOOLEAN_MEMBERS = (
    "claims_parameter_supported", "request_parameter_supported", "request_uri_parameter_supported",
    "require_request_uri_registration", "authorization_response_iss_parameter_supported",
)
OIDC_RESPONSE_TYPES = {"code", "code id_token", "id_token", "token id_token", "code id_token token", "code token"}
# RFC 5646 language tag, the shape CheckDiscEndpointLocalesSyntax accepts.
BCP47 = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")


def absolute_url(value) -> bool:
    parts = urlsplit(value) if isinstance(value, str) else None
    return bool(parts and parts.scheme in ("http", "https") and parts.netloc)


def test_oidcc_discovery_endpoint_verification(oidc_op):
    session_url = oidc_op.discovery_url
    # Fetched from 127.0.0.3, a device the tailnet does not know: discovery needs no identity.
    response = oidc_op.get(session_url, source="127.0.0.3")
    # EnsureDiscoveryEndpointResponseStatusCodeIs200, CheckDiscoveryEndpointReturnedJsonContentType
    assert response.status_code == 200, response.text[:500]
    assert response.headers.get("Content-Type", "").split(";")[0].strip() == "application/json", response.headers
    metadata = response.json()
    assert isinstance(metadata, dict)

    # CheckDiscEndpointDiscoveryUrl: the configured URL is a discovery URL.
    assert session_url.endswith("/.well-known/openid-configuration")
    # CheckDiscEndpointIssuer: issuer equals the URL prefix the document was fetched from.
    issuer = metadata.get("issuer")
    assert issuer == session_url[: -len("/.well-known/openid-configuration")], (issuer, session_url)
    # CheckDiscEndpointIssuerIsValidUrl (RFC 8414 2): absolute, no query, no fragment.
    parts = urlsplit(issuer)
    assert parts.scheme in ("http", "https") and parts.netloc and not parts.query and not parts.fragment, issuer

    # ValidateServerMetadataAgainstSchema: member types.
    for name in URL_MEMBERS:
        if name in metadata:
            assert absolute_url(metadata[name]), f"{name} is not an absolute URL: {metadata[name]!r}"
    for name in STRING_ARRAY_MEMBERS:
        if name in metadata:
            value = metadata[name]
            assert isinstance(value, list) and value and all(isinstance(v, str) and v for v in value), (name, value)
            assert len(set(value)) == len(value), f"{name} has duplicates: {value}"
    for name in BOOLEAN_MEMBERS:
        if name in metadata:
            assert isinstance(metadata[name], bool), (name, metadata[name])

    # CheckDiscEndpointAuthorizationEndpoint / TokenEndpoint / UserinfoEndpoint / RegistrationEndpoint / CheckJwksUri
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert absolute_url(metadata.get(name)), f"{name} missing: {metadata.get(name)!r}"
    if "registration_endpoint" in metadata:
        assert absolute_url(metadata["registration_endpoint"])

    # OIDCCCheckDiscEndpointResponseTypesSupported (static client): at least one OIDC response type.
    response_types = metadata.get("response_types_supported")
    assert isinstance(response_types, list) and OIDC_RESPONSE_TYPES & set(response_types), response_types
    for value in response_types:
        assert set(value.split(" ")) <= {"code", "id_token", "token", "none"}, value
    if "response_modes_supported" in metadata:
        assert set(metadata["response_modes_supported"]) <= {"query", "fragment", "form_post"}, metadata["response_modes_supported"]

    # CheckDiscEndpointSubjectTypesSupported
    subject_types = metadata.get("subject_types_supported")
    assert isinstance(subject_types, list) and subject_types and set(subject_types) <= {"public", "pairwise"}, subject_types

    # OIDCCCheckDiscEndpointIdTokenSigningAlgValuesSupported: RS256 is listed.
    algs = metadata.get("id_token_signing_alg_values_supported")
    assert isinstance(algs, list) and "RS256" in algs, algs
    # OIDCCCheckDiscEndpointUserinfoSigningAlgValuesSupported (only if present)
    if "userinfo_signing_alg_values_supported" in metadata:
        assert "RS256" in metadata["userinfo_signing_alg_values_supported"] or "none" in metadata["userinfo_signing_alg_values_supported"]

    # FetchServerKeys + ValidateJwksSequence: valid JWKS, distinct kids, no private/symmetric keys,
    # and every advertised ID token algorithm (other than none) has a key.
    jwks_response = oidc_op.get(metadata["jwks_uri"], source="127.0.0.3")
    assert jwks_response.status_code == 200, jwks_response.text[:500]
    assert jwks_response.headers.get("Content-Type", "").split(";")[0].strip() in ("application/json", "application/jwk-set+json")
    jwks = jwks_response.json()
    oidc_op.check_jwks_document(jwks)
    key_algs = {key.get("alg") for key in jwks["keys"]}
    key_types = {"RS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}
    for alg in algs:
        if alg in key_types:
            assert any(k["kty"] == key_types[alg] and k.get("alg", alg) == alg for k in jwks["keys"]), (alg, key_algs)

    # CheckDiscEndpointRequestParameterSupported / RequestUriParameterSupported / ClaimsParameterSupported:
    # booleans when present (checked above); tsidp says false to request objects (the request tests rely
    # on it) and true to the claims parameter (OIDC Core 5.5), which the OP-claims tests exercise.
    assert metadata.get("request_parameter_supported", False) is False
    assert metadata.get("request_uri_parameter_supported", True) is False  # OIDC default is true: must be explicit
    assert metadata.get("claims_parameter_supported", False) is True
    # CheckDiscEndpointRequestObjectSigningAlgValuesSupportedIncludesRS256 (only if present)
    if "request_object_signing_alg_values_supported" in metadata:
        assert "RS256" in metadata["request_object_signing_alg_values_supported"]

    # OIDCCCheckDiscEndpointClaimsSupported: an array if present (tsidp lists it), with sub.
    claims = metadata.get("claims_supported")
    assert isinstance(claims, list) and "sub" in claims, claims

    # OIDCCCheckDiscEndpointGrantTypesSupported: a non-empty array if present; and consistent with
    # what tsidp does (code flow with refresh tokens, no implicit since no id_token response types).
    grant_types = metadata.get("grant_types_supported")
    assert isinstance(grant_types, list) and grant_types, grant_types
    assert "authorization_code" in grant_types and "refresh_token" in grant_types, grant_types
    if "implicit" in grant_types:
        assert any("token" in rt.split(" ") or "id_token" in rt.split(" ") for rt in response_types)

    # CheckDiscEndpointScopesSupportedContainsOpenId + CheckDiscEndpointScopesSupportedSyntax (RFC 6749 3.3)
    scopes = metadata.get("scopes_supported")
    assert isinstance(scopes, list) and "openid" in scopes, scopes
    for scope in scopes:
        assert re.match(r"^[\x21\x23-\x5b\x5d-\x7e]+$", scope), f"invalid scope token {scope!r}"

    # CheckDiscEndpointLocalesSyntax / CheckDiscEndpointLocalesCanonicalCasing (only if present)
    for name in ("ui_locales_supported", "claims_locales_supported"):
        for tag in metadata.get(name, []):
            assert BCP47.match(tag), f"{name}: {tag!r} is not a language tag"

    # EnsureServerConfigurationCodeChallengeMethodsSupportedIsAnArray
    methods = metadata.get("code_challenge_methods_supported")
    assert isinstance(methods, list) and "S256" in methods, methods

    # token_endpoint_auth_methods_supported: known methods only, the default included.
    auth_methods = metadata.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
    assert "client_secret_basic" in auth_methods, auth_methods
    assert set(auth_methods) <= {
        "client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none",
        "tls_client_auth", "self_signed_tls_client_auth",
    }, auth_methods

    # Every endpoint is served by this issuer (same origin as the issuer).
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "registration_endpoint"):
        if name in metadata:
            assert metadata[name].startswith(issuer + "/"), (name, metadata[name])
