//! RFC 8693 token exchange: the request, the response, and RFC 6749 §5.2 error codes.
//!
//! [`TokenExchangeRequest::from_form`] turns the decoded form pairs of a `POST /token`
//! into a typed request, or into the error the client should see.
//!
//! The protocol constants every Legate crate shares are defined here, once: the grant and
//! token type URIs, and [`OIDC_DISCOVERY_PATH`] (where upstream issuers publish their
//! discovery document, and where Legate publishes its own).

use std::borrow::Cow;

use serde::Serialize;

use crate::Secret;

/// `grant_type` for token exchange (RFC 8693 §2.1).
pub const GRANT_TYPE_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Token type URI of a JWT (RFC 8693 §3).
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// Token type URI of an OpenID Connect ID token (RFC 8693 §3).
pub const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// Path of an issuer's discovery document under its issuer URL (OIDC Discovery 1.0 §4).
pub const OIDC_DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// `token_type` of an issued token that is not an OAuth access token (RFC 8693 §2.2.1).
pub const TOKEN_TYPE_NOT_APPLICABLE: &str = "N_A";
/// RFC 8693 §3: an OAuth 2.0 access token (what Google and Entra issue).
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Legate's token type for AWS credentials (the member `aws_credentials` holds them).
pub const TOKEN_TYPE_AWS_CREDENTIALS: &str = "urn:legate:params:oauth:token-type:aws-credentials";
/// RFC 6750 `token_type` of a bearer access token.
pub const TOKEN_TYPE_BEARER: &str = "Bearer";
/// The longest lifetime a client may request, in seconds.
pub const MAX_REQUESTED_LIFETIME_SECS: u64 = 86_400;
/// Name of Legate's parameter for the requested lifetime, in seconds.
///
/// RFC 8693 has no lifetime parameter; unknown parameters are ignored by other servers
/// (RFC 6749 §3.2), so a client can always send it.
pub const PARAM_REQUESTED_LIFETIME: &str = "requested_lifetime";

/// The RFC 6749 §5.2 / RFC 8693 §2.2.2 error codes Legate sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthErrorCode {
    /// Malformed request, or an invalid or unacceptable subject token (RFC 8693 §2.2.2).
    InvalidRequest,
    /// Client authentication failed.
    InvalidClient,
    /// The grant is invalid.
    InvalidGrant,
    /// The client may not use this grant.
    UnauthorizedClient,
    /// `grant_type` is not token exchange.
    UnsupportedGrantType,
    /// `scope` is not acceptable.
    InvalidScope,
    /// The `audience`/`resource` is unknown or unacceptable (RFC 8693 §2.2.2).
    InvalidTarget,
    /// Something failed inside Legate (RFC 6749 §4.1.2.1).
    ServerError,
    /// Legate cannot serve the request right now.
    TemporarilyUnavailable,
    /// Legate's extension, not an RFC 6749 code: the subject or the target is over its
    /// rate limit (HTTP 429 with `Retry-After`). Clients treat it as "retry later".
    RateLimited,
}

impl OAuthErrorCode {
    /// The wire value.
    pub const fn as_str(self) -> &'static str {
        match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::UnauthorizedClient => "unauthorized_client",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::InvalidTarget => "invalid_target",
            OAuthErrorCode::ServerError => "server_error",
            OAuthErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthErrorCode::RateLimited => "rate_limited",
        }
    }
}

/// The type of the presented subject token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectTokenType {
    /// `urn:ietf:params:oauth:token-type:jwt`.
    Jwt,
    /// `urn:ietf:params:oauth:token-type:id_token`.
    IdToken,
}

impl SubjectTokenType {
    /// The type of a token type URI Legate accepts (for a subject or an actor token).
    pub fn parse(uri: &str) -> Option<Self> {
        match uri {
            TOKEN_TYPE_JWT => Some(Self::Jwt),
            TOKEN_TYPE_ID_TOKEN => Some(Self::IdToken),
            _ => None,
        }
    }
}

/// An actor token (RFC 8693 §2.1 `actor_token`, `actor_token_type`): the party acting
/// on behalf of the subject. Not yet verified.
#[derive(Debug, Clone)]
pub struct ActorToken {
    /// The presented token (secret: never logged).
    pub token: Secret<String>,
    /// Its declared type: the same types as a subject token.
    pub token_type: SubjectTokenType,
}

/// A well-formed token-exchange request. The subject token is not yet verified.
#[derive(Debug, Clone)]
pub struct TokenExchangeRequest {
    /// The presented token (secret: never logged).
    pub subject_token: Secret<String>,
    /// Its declared type.
    pub subject_token_type: SubjectTokenType,
    /// The actor token, when the client sent one.
    pub actor: Option<ActorToken>,
    /// The target name (`audience`).
    pub audience: String,
    /// The requested lifetime in seconds, if any.
    pub requested_lifetime: Option<u64>,
}

/// Why a token-exchange request is malformed; carries the error code for the wire.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{description}")]
pub struct RequestError {
    /// The OAuth error code.
    pub code: OAuthErrorCode,
    /// A description safe to show the client (no echo of secrets).
    pub description: Cow<'static, str>,
}

impl RequestError {
    fn new(code: OAuthErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }
}

/// The most distinct unknown parameters a request may carry.
pub const MAX_UNKNOWN_PARAMS: usize = 16;

impl TokenExchangeRequest {
    /// Builds a request from decoded `application/x-www-form-urlencoded` pairs.
    ///
    /// RFC 6749 §3.2: "Request and response parameters MUST NOT be included more than
    /// once" — this holds for every parameter, including ones Legate does not know,
    /// which are otherwise ignored. At most [`MAX_UNKNOWN_PARAMS`] distinct unknown
    /// parameters are accepted, so the bookkeeping is bounded.
    pub fn from_form<'a>(
        pairs: impl IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
    ) -> Result<Self, RequestError> {
        use OAuthErrorCode::{InvalidRequest, InvalidScope, InvalidTarget, UnsupportedGrantType};

        let mut grant_type = None;
        let mut subject_token = None;
        let mut subject_token_type = None;
        let mut audience = None;
        let mut lifetime = None;
        let mut requested_token_type = None;
        let mut actor_token = None;
        let mut actor_token_type = None;
        let mut unknown: Vec<Cow<'a, str>> = Vec::new();
        for (name, value) in pairs {
            let slot = match name.as_ref() {
                "grant_type" => &mut grant_type,
                "subject_token" => &mut subject_token,
                "subject_token_type" => &mut subject_token_type,
                "audience" => &mut audience,
                PARAM_REQUESTED_LIFETIME => &mut lifetime,
                "requested_token_type" => &mut requested_token_type,
                "resource" => {
                    return Err(RequestError::new(
                        InvalidTarget,
                        "`resource` is not supported: name the target in `audience`",
                    ));
                }
                "scope" => {
                    return Err(RequestError::new(InvalidScope, "`scope` is not supported"));
                }
                "actor_token" => &mut actor_token,
                "actor_token_type" => &mut actor_token_type,
                _ => {
                    if unknown.contains(&name) {
                        return Err(RequestError::new(
                            InvalidRequest,
                            "a request parameter is repeated",
                        ));
                    }
                    if unknown.len() >= MAX_UNKNOWN_PARAMS {
                        return Err(RequestError::new(
                            InvalidRequest,
                            "too many unknown request parameters",
                        ));
                    }
                    unknown.push(name);
                    continue;
                }
            };
            if slot.is_some() {
                let msg = match name.as_ref() {
                    "audience" => {
                        return Err(RequestError::new(
                            InvalidTarget,
                            "only one `audience` is supported",
                        ));
                    }
                    "grant_type" => "parameter `grant_type` is repeated",
                    "subject_token" => "parameter `subject_token` is repeated",
                    "subject_token_type" => "parameter `subject_token_type` is repeated",
                    "requested_token_type" => "parameter `requested_token_type` is repeated",
                    "actor_token" => "parameter `actor_token` is repeated",
                    "actor_token_type" => "parameter `actor_token_type` is repeated",
                    _ => "parameter `requested_lifetime` is repeated",
                };
                return Err(RequestError::new(InvalidRequest, msg));
            }
            *slot = Some(value.into_owned());
        }

        match grant_type.as_deref() {
            Some(GRANT_TYPE_TOKEN_EXCHANGE) => {}
            Some(_) => {
                return Err(RequestError::new(
                    UnsupportedGrantType,
                    "only the token-exchange grant type is supported",
                ));
            }
            None => return Err(RequestError::new(InvalidRequest, "missing `grant_type`")),
        }
        let subject_token = match subject_token {
            Some(t) if !t.is_empty() => Secret::new(t),
            _ => return Err(RequestError::new(InvalidRequest, "missing `subject_token`")),
        };
        let subject_token_type = match subject_token_type.as_deref() {
            Some(t) => SubjectTokenType::parse(t).ok_or_else(|| {
                RequestError::new(
                    InvalidRequest,
                    "unsupported `subject_token_type`: use the jwt or id_token token type",
                )
            })?,
            None => {
                return Err(RequestError::new(
                    InvalidRequest,
                    "missing `subject_token_type`",
                ));
            }
        };
        // RFC 8693 §2.1: `actor_token_type` is REQUIRED when `actor_token` is present and
        // MUST NOT be included otherwise.
        let actor = match (actor_token, actor_token_type) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(RequestError::new(
                    InvalidRequest,
                    "`actor_token` without `actor_token_type`",
                ));
            }
            (None, Some(_)) => {
                return Err(RequestError::new(
                    InvalidRequest,
                    "`actor_token_type` without `actor_token`",
                ));
            }
            (Some(token), Some(kind)) => {
                if token.is_empty() {
                    return Err(RequestError::new(InvalidRequest, "empty `actor_token`"));
                }
                let token_type = SubjectTokenType::parse(&kind).ok_or_else(|| {
                    RequestError::new(
                        InvalidRequest,
                        "unsupported `actor_token_type`: use the jwt or id_token token type",
                    )
                })?;
                Some(ActorToken {
                    token: Secret::new(token),
                    token_type,
                })
            }
        };
        match requested_token_type.as_deref() {
            None | Some(TOKEN_TYPE_JWT) => {}
            Some(_) => {
                return Err(RequestError::new(
                    InvalidRequest,
                    "unsupported `requested_token_type`: only the jwt token type is issued",
                ));
            }
        }
        let audience = match audience {
            Some(a) if !a.is_empty() => a,
            _ => {
                return Err(RequestError::new(
                    InvalidRequest,
                    "missing `audience`: name the target",
                ));
            }
        };
        let requested_lifetime = match lifetime {
            None => None,
            Some(s) => match s.parse::<u64>() {
                Ok(v)
                    if (1..=MAX_REQUESTED_LIFETIME_SECS).contains(&v)
                        && s.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    Some(v)
                }
                _ => {
                    return Err(RequestError::new(
                        InvalidRequest,
                        "`requested_lifetime` must be a whole number of seconds from 1 to 86400",
                    ));
                }
            },
        };
        Ok(Self {
            subject_token,
            subject_token_type,
            actor,
            audience,
            requested_lifetime,
        })
    }
}

/// A successful token-exchange response (RFC 8693 §2.2.1).
#[derive(Debug, Clone, Serialize)]
pub struct TokenExchangeResponse {
    /// The issued token.
    pub access_token: String,
    /// Its type URI.
    pub issued_token_type: &'static str,
    /// `N_A` when the issued token is not an OAuth access token, `Bearer` when it is.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// AWS targets: the credentials in the shape of AWS `credential_process` output
    /// (version 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_credentials: Option<serde_json::Value>,
}

/// An error response (RFC 6749 §5.2), with Legate's request id for support.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorResponse {
    /// The error code.
    pub error: OAuthErrorCode,
    /// A human-readable description that reveals nothing internal.
    pub error_description: String,
    /// Matches the `request_id` of the audit event.
    pub request_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&'static str, &'static str)]) -> Result<TokenExchangeRequest, RequestError> {
        TokenExchangeRequest::from_form(pairs.iter().map(|(k, v)| (Cow::from(*k), Cow::from(*v))))
    }

    const OK: [(&str, &str); 4] = [
        ("grant_type", GRANT_TYPE_TOKEN_EXCHANGE),
        ("subject_token", "a.b.c"),
        ("subject_token_type", TOKEN_TYPE_JWT),
        ("audience", "deploy-api"),
    ];

    #[test]
    fn a_complete_request_parses() {
        let mut p = OK.to_vec();
        p.push(("requested_lifetime", "300"));
        p.push(("unknown", "ignored"));
        let r = form(&p).unwrap();
        assert_eq!(r.audience, "deploy-api");
        assert_eq!(r.requested_lifetime, Some(300));
        assert_eq!(r.subject_token.expose(), "a.b.c");
    }

    /// Stops parameter smuggling past RFC 6749 §3.2: a repeated parameter Legate does
    /// not read today (one a later version or a proxy might read) is refused too, so
    /// two parsers can never disagree on which copy counts.
    #[test]
    fn repeated_unknown_parameters_are_rejected() {
        let mut pairs = OK.to_vec();
        pairs.push(("client_id", "a"));
        pairs.push(("client_id", "b"));
        let err = form(&pairs).unwrap_err();
        assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
        assert_eq!(err.description, "a request parameter is repeated");
        let mut pairs = OK.to_vec();
        for i in 0..=MAX_UNKNOWN_PARAMS {
            let name: &'static str = Box::leak(format!("x{i}").into_boxed_str());
            pairs.push((name, "v"));
        }
        let err = form(&pairs).unwrap_err();
        assert_eq!(err.description, "too many unknown request parameters");
        let mut pairs = OK.to_vec();
        pairs.push(("client_id", "a"));
        assert!(form(&pairs).is_ok(), "one unknown parameter is ignored");
    }

    #[test]
    fn repeated_parameters_are_rejected() {
        let mut p = OK.to_vec();
        p.push(("subject_token", "x.y.z"));
        assert_eq!(form(&p).unwrap_err().code, OAuthErrorCode::InvalidRequest);
        let mut p = OK.to_vec();
        p.push(("audience", "other"));
        assert_eq!(form(&p).unwrap_err().code, OAuthErrorCode::InvalidTarget);
    }

    #[test]
    fn wrong_grant_type_is_unsupported() {
        let mut p = OK.to_vec();
        p[0] = ("grant_type", "client_credentials");
        assert_eq!(
            form(&p).unwrap_err().code,
            OAuthErrorCode::UnsupportedGrantType
        );
        assert_eq!(
            form(&OK[1..]).unwrap_err().code,
            OAuthErrorCode::InvalidRequest
        );
    }

    #[test]
    fn missing_or_bad_fields_are_invalid_requests() {
        for drop in 1..4 {
            let p: Vec<_> = OK
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != drop)
                .map(|(_, p)| *p)
                .collect();
            assert_eq!(
                form(&p).unwrap_err().code,
                OAuthErrorCode::InvalidRequest,
                "{drop}"
            );
        }
        let mut p = OK.to_vec();
        p[2] = (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:saml2",
        );
        assert_eq!(form(&p).unwrap_err().code, OAuthErrorCode::InvalidRequest);
        for bad in ["0", "-5", "+5", "1.5", "86401", "abc", ""] {
            let mut p = OK.to_vec();
            p.push(("requested_lifetime", bad));
            assert_eq!(
                form(&p).unwrap_err().code,
                OAuthErrorCode::InvalidRequest,
                "{bad}"
            );
        }
    }

    #[test]
    fn resource_and_scope_are_refused_explicitly() {
        let mut p = OK.to_vec();
        p.push(("resource", "https://x"));
        assert_eq!(form(&p).unwrap_err().code, OAuthErrorCode::InvalidTarget);
        let mut p = OK.to_vec();
        p.push(("scope", "all"));
        assert_eq!(form(&p).unwrap_err().code, OAuthErrorCode::InvalidScope);
    }

    #[test]
    fn an_actor_token_with_its_type_parses() {
        for (uri, kind) in [
            (TOKEN_TYPE_JWT, SubjectTokenType::Jwt),
            (TOKEN_TYPE_ID_TOKEN, SubjectTokenType::IdToken),
        ] {
            let mut p = OK.to_vec();
            p.push(("actor_token", "d.e.f"));
            p.push(("actor_token_type", uri));
            let actor = form(&p).unwrap().actor.unwrap();
            assert_eq!(actor.token.expose(), "d.e.f");
            assert_eq!(actor.token_type, kind);
        }
        assert!(form(&OK).unwrap().actor.is_none());
    }

    /// Stops a half-specified actor (RFC 8693 §2.1: `actor_token_type` is required with
    /// `actor_token` and must not appear without it) from being read either way, and a
    /// repeated actor parameter from letting two parsers pick different copies.
    #[test]
    fn actor_parameters_must_come_as_a_single_pair() {
        let cases: [&[(&str, &str)]; 6] = [
            &[("actor_token_type", TOKEN_TYPE_JWT)],
            &[("actor_token", "d.e.f")],
            &[("actor_token", ""), ("actor_token_type", TOKEN_TYPE_JWT)],
            &[
                ("actor_token", "d.e.f"),
                ("actor_token_type", "urn:ietf:params:oauth:token-type:saml2"),
            ],
            &[
                ("actor_token", "d.e.f"),
                ("actor_token", "g.h.i"),
                ("actor_token_type", TOKEN_TYPE_JWT),
            ],
            &[
                ("actor_token", "d.e.f"),
                ("actor_token_type", TOKEN_TYPE_JWT),
                ("actor_token_type", TOKEN_TYPE_JWT),
            ],
        ];
        for extra in cases {
            let mut p = OK.to_vec();
            p.extend_from_slice(extra);
            let err = form(&p).unwrap_err();
            assert_eq!(err.code, OAuthErrorCode::InvalidRequest, "{extra:?}");
            assert!(err.description.contains("actor_token"), "{err}");
        }
    }

    #[test]
    fn error_codes_serialise_to_rfc_names() {
        assert_eq!(
            serde_json::to_string(&OAuthErrorCode::InvalidTarget).unwrap(),
            "\"invalid_target\""
        );
        assert_eq!(
            OAuthErrorCode::UnsupportedGrantType.as_str(),
            "unsupported_grant_type"
        );
    }
}
