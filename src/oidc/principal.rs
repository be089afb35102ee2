//! From a verified token to the certificate identity: SAN, certificate issuer, the name signed
//! for proof of possession, and the Sigstore extension values (sigstore/fulcio `pkg/identity`, `docs/oid-info.md`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::config::{IssuerMetadata, IssuerType, parse_url};
use super::template::{EvalError, Template};
use super::{OidcError, VerifiedToken};

/// otherName type-id of the `username` SAN (`<sub>!<SubjectDomain>`, UTF8String).
pub const USERNAME_OTHER_NAME_OID: &str = "1.3.6.1.4.1.57264.1.7";

/// Claims the legacy `github-workflow` issuer type requires (upstream `pkg/identity/github`).
pub const GITHUB_WORKFLOW_REQUIRED_CLAIMS: [&str; 16] = [
    "job_workflow_ref",
    "sha",
    "event_name",
    "repository",
    "workflow",
    "ref",
    "job_workflow_sha",
    "runner_environment",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "repository_visibility",
    "workflow_ref",
    "workflow_sha",
    "run_id",
    "run_attempt",
];

/// The certificate's single Subject Alternative Name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    /// rfc822Name
    Email(String),
    /// uniformResourceIdentifier
    Uri(String),
    /// otherName; `type_id` is [`USERNAME_OTHER_NAME_OID`], `value` a UTF8String.
    OtherName {
        type_id: &'static str,
        value: String,
    },
}

/// As logs show it: `email:...`, `uri:...`, `othername:...`.
impl std::fmt::Display for San {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Email(e) => write!(f, "email:{e}"),
            Self::Uri(u) => write!(f, "uri:{u}"),
            Self::OtherName { value, .. } => write!(f, "othername:{value}"),
        }
    }
}

/// One Sigstore extension `1.3.6.1.4.1.57264.1.<oid_arc>` and its string value. Arcs 1–6 are
/// encoded as raw bytes, 8 and above as DER UTF8String (by the certificate builder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigstoreExtension {
    pub oid_arc: u32,
    pub value: String,
}

/// The identity a certificate is issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub san: San,
    /// Value of extensions 1 and 8: `iss`, or the `IssuerClaim` result.
    pub cert_issuer: String,
    /// What the proof of possession signs: `email` for email issuers, `sub` otherwise.
    pub pop_subject: String,
    /// Non-empty extension values in ascending arc order (1, 2–6, 8, 9–23, 24).
    pub extensions: Vec<SigstoreExtension>,
}

/// Map a verified token to its certificate identity, per the issuer's type.
pub fn principal(token: &VerifiedToken) -> Result<Principal, OidcError> {
    let claims = token.claims();
    let cfg = token.issuer_config();
    let iss = token.issuer();
    let sub = opt_string(claims, "sub")?;
    let (san, cert_issuer, pop_subject, ci) = match cfg.issuer_type {
        IssuerType::Email => {
            let email = require_string(claims, "email")?;
            check_email_shape(&email)?;
            if !cfg.skip_email_verification && !email_verified(claims) {
                return Err(OidcError::EmailNotVerified(email));
            }
            let cert_issuer = if cfg.issuer_claim.is_empty() {
                iss.to_owned()
            } else {
                lookup_path(claims, &cfg.issuer_claim)?
            };
            (San::Email(email.clone()), cert_issuer, email, Vec::new())
        }
        IssuerType::GithubWorkflow | IssuerType::CiProvider => {
            let sub = sub.clone().ok_or_else(|| missing("sub"))?;
            if cfg.issuer_type == IssuerType::GithubWorkflow {
                for claim in GITHUB_WORKFLOW_REQUIRED_CLAIMS {
                    if claims.get(claim).is_none_or(Value::is_null) {
                        return Err(missing(claim));
                    }
                }
            }
            let meta = token.ci_metadata().ok_or_else(|| {
                OidcError::Config(format!("no ci-issuer-metadata for issuer {iss}"))
            })?;
            let (san, exts) = apply_ci_templates(meta, claims)?;
            (San::Uri(san), iss.to_owned(), sub, exts)
        }
        IssuerType::Kubernetes => {
            let sub = sub.clone().ok_or_else(|| missing("sub"))?;
            let k8s = claims
                .get("kubernetes.io")
                .and_then(Value::as_object)
                .ok_or_else(|| missing("kubernetes.io"))?;
            let ns = nested_str(k8s, &["namespace"])
                .ok_or_else(|| missing("kubernetes.io.namespace"))?;
            let sa = nested_str(k8s, &["serviceaccount", "name"])
                .ok_or_else(|| missing("kubernetes.io.serviceaccount.name"))?;
            let san = format!("https://kubernetes.io/namespaces/{ns}/serviceaccounts/{sa}");
            (San::Uri(san), iss.to_owned(), sub, Vec::new())
        }
        IssuerType::Spiffe => {
            let sub = sub.clone().ok_or_else(|| missing("sub"))?;
            check_spiffe_id(&sub, &cfg.spiffe_trust_domain)?;
            (San::Uri(sub.clone()), iss.to_owned(), sub, Vec::new())
        }
        IssuerType::Uri => {
            let sub = sub.clone().ok_or_else(|| missing("sub"))?;
            check_uri_subject(&sub, &cfg.subject_domain)?;
            (San::Uri(sub.clone()), iss.to_owned(), sub, Vec::new())
        }
        IssuerType::Username => {
            let sub = sub.clone().ok_or_else(|| missing("sub"))?;
            let bad = |reason: &str| OidcError::InvalidClaim {
                claim: "sub".into(),
                reason: reason.into(),
            };
            if sub.contains('!') {
                return Err(bad("a username must not contain '!'"));
            }
            if check_email_shape(&sub).is_ok() {
                return Err(bad("a username must not be an email address"));
            }
            if sub.chars().any(char::is_control) {
                return Err(bad("a username must not contain control characters"));
            }
            let san = San::OtherName {
                type_id: USERNAME_OTHER_NAME_OID,
                value: format!("{sub}!{}", cfg.subject_domain),
            };
            (san, iss.to_owned(), sub, Vec::new())
        }
        other @ (IssuerType::GitlabPipeline
        | IssuerType::BuildkiteJob
        | IssuerType::CodefreshWorkflow
        | IssuerType::ChainguardIdentity) => return Err(OidcError::UnsupportedIssuerType(other)),
    };

    let mut extensions = Vec::with_capacity(ci.len() + 3);
    let mut push = |oid_arc: u32, value: &str| {
        if !value.is_empty() {
            extensions.push(SigstoreExtension {
                oid_arc,
                value: value.to_owned(),
            });
        }
    };
    push(1, &cert_issuer);
    for (arc, v) in ci.iter().filter(|(arc, _)| *arc < 8) {
        push(*arc, v);
    }
    push(8, &cert_issuer);
    for (arc, v) in ci.iter().filter(|(arc, _)| *arc > 8) {
        push(*arc, v);
    }
    push(24, sub.as_deref().unwrap_or(""));
    Ok(Principal {
        san,
        cert_issuer,
        pop_subject,
        extensions,
    })
}

fn missing(claim: &str) -> OidcError {
    OidcError::MissingClaim(claim.to_owned())
}

fn opt_string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, OidcError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(OidcError::InvalidClaim {
            claim: name.into(),
            reason: "must be a string".into(),
        }),
    }
}

fn require_string(claims: &Map<String, Value>, name: &str) -> Result<String, OidcError> {
    opt_string(claims, name)?.ok_or_else(|| missing(name))
}

fn nested_str<'a>(obj: &'a Map<String, Value>, path: &[&str]) -> Option<&'a str> {
    let (last, init) = path.split_last()?;
    let mut cur = obj;
    for p in init {
        cur = cur.get(*p)?.as_object()?;
    }
    cur.get(*last)?.as_str().filter(|s| !s.is_empty())
}

/// `email_verified` is true (bool, or the strings "true"/"True" some IdPs send).
fn email_verified(claims: &Map<String, Value>) -> bool {
    match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "True",
        _ => false,
    }
}

/// The address shape an rfc822Name may hold ([`crate::pki::check_email_address`]).
fn check_email_shape(email: &str) -> Result<(), OidcError> {
    crate::pki::check_email_address(email).map_err(|reason| OidcError::InvalidClaim {
        claim: "email".into(),
        reason: reason.into(),
    })
}

/// Parse the `$.a.b` JSONPath form of `IssuerClaim` into its segments.
pub(crate) fn parse_json_path(path: &str) -> Result<Vec<&str>, String> {
    let rest = path
        .strip_prefix("$.")
        .ok_or_else(|| format!("issuer-claim {path:?} must be a JSONPath of the form $.a.b"))?;
    let segs: Vec<_> = rest.split('.').collect();
    if segs
        .iter()
        .any(|s| s.is_empty() || s.contains(['[', ']', '*', ' ']))
    {
        return Err(format!(
            "issuer-claim {path:?}: only dotted member names are supported ($.a.b)"
        ));
    }
    Ok(segs)
}

fn lookup_path(claims: &Map<String, Value>, path: &str) -> Result<String, OidcError> {
    let segs = parse_json_path(path).map_err(OidcError::Config)?;
    let name = segs.join(".");
    nested_str(claims, &segs)
        .map(str::to_owned)
        .ok_or(OidcError::MissingClaim(name))
}

/// A claim as text for templates: strings as is, numbers without exponent, booleans as
/// `true`/`false`, objects and arrays as compact JSON; null counts as absent.
fn claim_text(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            // Rust's f64 Display never uses an exponent.
            (_, _, Some(f)) => f.to_string(),
            _ => n.to_string(),
        },
        other => other.to_string(),
    })
}

/// Expand the CI provider's SAN and extension templates; returns the SAN and `(arc, value)`.
fn apply_ci_templates(
    meta: &IssuerMetadata,
    claims: &Map<String, Value>,
) -> Result<(String, Vec<(u32, String)>), OidcError> {
    let mut data: BTreeMap<String, String> = meta.default_template_values.clone();
    for (k, v) in claims {
        if let Some(t) = claim_text(v) {
            data.insert(k.clone(), t);
        }
    }
    let expand = |template: &str| -> Result<String, OidcError> {
        if template.contains("{{") {
            let t = Template::parse(template)
                .map_err(|e| OidcError::Config(format!("template {template:?}: {e}")))?;
            t.execute(&data)
                .map_err(|EvalError::Missing(k)| missing(&k))
        } else {
            data.get(template).cloned().ok_or_else(|| missing(template))
        }
    };
    if meta.subject_alternative_name_template.trim().is_empty() {
        return Err(OidcError::Config(
            "subject-alternative-name-template is empty".into(),
        ));
    }
    let san = expand(&meta.subject_alternative_name_template)?;
    check_uri_shape(&san).map_err(|reason| OidcError::InvalidClaim {
        claim: "subject alternative name".into(),
        reason,
    })?;
    let mut exts = Vec::new();
    for (arc, _, template) in meta.extension_templates.entries() {
        if template.trim().is_empty() {
            continue;
        }
        exts.push((arc, expand(template)?));
    }
    Ok((san, exts))
}

/// An absolute URI without spaces or control characters.
fn check_uri_shape(uri: &str) -> Result<(), String> {
    let (scheme, rest) = uri
        .split_once(':')
        .ok_or_else(|| format!("{uri:?} is not an absolute URI"))?;
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok || rest.is_empty() {
        return Err(format!("{uri:?} is not an absolute URI"));
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{uri:?} contains spaces or control characters"));
    }
    Ok(())
}

fn check_spiffe_id(sub: &str, trust_domain: &str) -> Result<(), OidcError> {
    let bad = |reason: String| OidcError::InvalidClaim {
        claim: "sub".into(),
        reason,
    };
    let want = trust_domain
        .strip_prefix("spiffe://")
        .unwrap_or(trust_domain);
    let rest = sub
        .strip_prefix("spiffe://")
        .ok_or_else(|| bad("not a SPIFFE ID (spiffe://trust-domain/path)".into()))?;
    let (td, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if td != want {
        return Err(bad(format!(
            "SPIFFE ID is not in trust domain {want:?} (got {td:?})"
        )));
    }
    if !path.is_empty() {
        for seg in path[1..].split('/') {
            let ok = !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b".-_".contains(&c));
            if !ok {
                return Err(bad(format!("SPIFFE ID path segment {seg:?} is invalid")));
            }
        }
    }
    Ok(())
}

fn check_uri_subject(sub: &str, subject_domain: &str) -> Result<(), OidcError> {
    let bad = |reason: String| OidcError::InvalidClaim {
        claim: "sub".into(),
        reason,
    };
    if check_email_shape(sub).is_ok() {
        return Err(bad("a uri subject must not be an email address".into()));
    }
    check_uri_shape(sub).map_err(&bad)?;
    let s = parse_url(sub).map_err(&bad)?;
    let d = parse_url(subject_domain).map_err(OidcError::Config)?;
    if s.scheme != d.scheme {
        return Err(bad(format!(
            "subject URI scheme {:?} must be {:?}",
            s.scheme, d.scheme
        )));
    }
    if s.host != d.host {
        return Err(bad(format!(
            "subject host {:?} must be {:?}",
            s.host, d.host
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_shapes() {
        assert!(check_email_shape("dev@example.com").is_ok());
        for bad in [
            "dev",
            "@example.com",
            "dev@",
            "a b@example.com",
            "a@b@c.d",
            "a@localhost",
        ] {
            assert!(check_email_shape(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_have_no_exponent() {
        assert_eq!(
            claim_text(&serde_json::json!(1234567890123_u64)).as_deref(),
            Some("1234567890123")
        );
        assert_eq!(
            claim_text(&serde_json::json!(1e21)).as_deref(),
            Some("1000000000000000000000")
        );
        assert_eq!(claim_text(&serde_json::json!(null)), None);
    }

    #[test]
    fn spiffe_ids() {
        assert!(check_spiffe_id("spiffe://example.org/ns/a", "example.org").is_ok());
        assert!(check_spiffe_id("spiffe://other.org/ns/a", "example.org").is_err());
        assert!(check_spiffe_id("spiffe://example.org/ns/../a", "example.org").is_err());
        assert!(check_spiffe_id("https://example.org/a", "example.org").is_err());
    }

    #[test]
    fn json_paths() {
        assert_eq!(
            parse_json_path("$.federated_claims.connector_id"),
            Ok(vec!["federated_claims", "connector_id"])
        );
        assert!(parse_json_path("federated_claims").is_err());
        assert!(parse_json_path("$.a[0]").is_err());
    }
}
