//! OIDC identity tokens for the Fulcio-compatible CA: Fulcio's identity config, token
//! verification with go-oidc semantics, and the mapping from a verified token to the
//! certificate's identity ([`Principal`]).
//!
//! The flow is `parse_identity_config` → [`Verifier::new`] → [`Verifier::verify`] (the only way
//! to obtain a [`VerifiedToken`]) → [`principal`]. Discovery documents and JWKS are read by this
//! module itself over [`crate::http::client::Client`]; `jsonwebtoken` only checks signatures.
//!
//! Every [`OidcError`] is a client problem (Fulcio answers HTTP 400 with the message) except
//! [`OidcError::Config`]. No message or log line contains the token.

pub mod config;
mod principal;
mod template;
mod verify;

pub use config::{
    ExtensionTemplates, GITHUB_WORKFLOW, IdentityConfig, IssuerMetadata, IssuerType, OidcIssuer,
    github_workflow_metadata, parse_identity_config,
};
pub use principal::{
    GITHUB_WORKFLOW_REQUIRED_CLAIMS, Principal, San, SigstoreExtension, USERNAME_OTHER_NAME_OID,
    principal,
};
pub use verify::{DEFAULT_ALLOWED_ALGS, VerifiedToken, Verifier, VerifierOptions};
pub(crate) use verify::{parse_jwk_for_fuzzing, parse_jws_for_fuzzing, token_for_fuzzing};

/// Re-exported so callers can name algorithms in [`VerifierOptions::allowed_algs`].
pub use jsonwebtoken::Algorithm;

/// Why a token (or the identity config) was refused. Messages are written for the client that
/// sent the token; none contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// The identity configuration is invalid (operator error, not a client one).
    #[error("identity config: {0}")]
    Config(String),
    #[error("malformed identity token: {0}")]
    Malformed(String),
    #[error("identity token issuer {0:?} is not configured on this CA")]
    UnknownIssuer(String),
    #[error("identity token issuer {issuer:?} is not allowed: {reason}")]
    InsecureIssuer { issuer: String, reason: String },
    #[error(
        "issuer type {0} is not supported by sigvault (configure it as type ci-provider with ci-issuer-metadata)"
    )]
    UnsupportedIssuerType(IssuerType),
    #[error("OIDC discovery for issuer {issuer:?} failed: {reason}")]
    Discovery { issuer: String, reason: String },
    #[error(
        "OIDC discovery for issuer {expected:?} returned issuer {got:?}; they must be identical"
    )]
    IssuerMismatch { expected: String, got: String },
    #[error("fetching the signing keys (JWKS) of issuer {issuer:?} failed: {reason}")]
    Jwks { issuer: String, reason: String },
    #[error("identity token is signed with a key unknown to issuer {issuer:?} (kid {kid:?})")]
    UnknownKid { issuer: String, kid: String },
    #[error("identity token algorithm {alg:?} is not allowed: {reason}")]
    AlgNotAllowed { alg: String, reason: String },
    #[error("identity token signature is invalid")]
    BadSignature,
    #[error("identity token has expired")]
    Expired,
    #[error("identity token is not valid yet (nbf is more than 5 minutes ahead)")]
    NotYetValid,
    #[error("identity token audience does not include {expected:?}")]
    WrongAudience { expected: String },
    #[error("email address {0:?} is not verified by the identity provider (email_verified)")]
    EmailNotVerified(String),
    #[error("identity token lacks required claim {0:?}")]
    MissingClaim(String),
    #[error("identity token claim {claim:?} is invalid: {reason}")]
    InvalidClaim { claim: String, reason: String },
}

impl OidcError {
    /// True for problems of the token or its issuer (answer 400); false for our own config.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, OidcError::Config(_))
    }
}
