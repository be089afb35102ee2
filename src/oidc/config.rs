//! Fulcio's identity configuration (`OIDCIssuers`, `MetaIssuers`, `CIIssuerMetadata`), read as
//! upstream writes it: JSON with Go field names first, then YAML in kebab-case.
//!
//! Unknown keys are errors (a misspelt `issuer-claim` must not silently widen what is accepted),
//! except the top-level `define` list that upstream's `config/identity/config.yaml` uses to hold
//! YAML anchors. The upstream `github-workflow` CI metadata is built in, so a config only needs
//! `ci-provider: github-workflow`; an entry of the same name in the file replaces it whole.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::OidcError;
use super::template::Template;

/// The whole identity configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Issuer URL (exactly as in tokens' `iss`) → issuer.
    pub oidc_issuers: BTreeMap<String, OidcIssuer>,
    /// Wildcard pattern (`*` matches `[-_a-zA-Z0-9]+`) → issuer template.
    pub meta_issuers: BTreeMap<String, OidcIssuer>,
    /// CI provider name → claim-to-extension templates (built-in `github-workflow` included).
    pub ci_issuer_metadata: BTreeMap<String, IssuerMetadata>,
}

/// One configured issuer (Fulcio's `OIDCIssuer`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OidcIssuer {
    /// The expected `iss`; for entries of `OIDCIssuers` equal to the map key. Empty in a meta
    /// issuer template; filled with the token's `iss` once matched.
    pub issuer_url: String,
    /// The audience tokens must carry (`sigstore` in every public deployment).
    pub client_id: String,
    pub issuer_type: IssuerType,
    /// Name of the `CIIssuerMetadata` entry, for `ci-provider` issuers.
    pub ci_provider: String,
    /// JSONPath (`$.a.b`) of the claim holding the certificate's issuer (email issuers only).
    pub issuer_claim: String,
    /// `uri`: scheme and host subjects must have; `username`: domain appended after `!`.
    pub subject_domain: String,
    /// `spiffe`: the trust domain subjects must belong to.
    pub spiffe_trust_domain: String,
    /// Claim signed for proof of possession, if not the type's default.
    pub challenge_claim: String,
    pub description: String,
    pub contact: String,
    pub environment: String,
    /// PEM CA certificate(s) to trust for this issuer's HTTPS endpoints, in addition to the
    /// system roots.
    pub ca_cert: String,
    /// Do not require `email_verified` (trusted IdPs that omit it).
    pub skip_email_verification: bool,
    /// sigvault extension (`JWKSURL` / `jwks-url`): fetch the issuer's signing keys from this
    /// URL and skip discovery, for air-gapped installs that mirror an issuer's JWKS (and for the
    /// development stack's stand-in for GitHub Actions). Tokens must still name `issuer_url` as
    /// `iss`. Empty: discovery at `<issuer>/.well-known/openid-configuration`, as upstream.
    pub jwks_url: String,
}

/// Fulcio's issuer types. All are parsed; [`super::principal`] refuses the legacy per-vendor
/// types other than `github-workflow` (use `ci-provider` with metadata instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IssuerType {
    #[default]
    Email,
    GithubWorkflow,
    GitlabPipeline,
    BuildkiteJob,
    CodefreshWorkflow,
    ChainguardIdentity,
    Kubernetes,
    Spiffe,
    Uri,
    Username,
    CiProvider,
}

impl IssuerType {
    const ALL: [(IssuerType, &'static str); 11] = [
        (Self::Email, "email"),
        (Self::GithubWorkflow, "github-workflow"),
        (Self::GitlabPipeline, "gitlab-pipeline"),
        (Self::BuildkiteJob, "buildkite-job"),
        (Self::CodefreshWorkflow, "codefresh-workflow"),
        (Self::ChainguardIdentity, "chainguard-identity"),
        (Self::Kubernetes, "kubernetes"),
        (Self::Spiffe, "spiffe"),
        (Self::Uri, "uri"),
        (Self::Username, "username"),
        (Self::CiProvider, "ci-provider"),
    ];

    /// The config-file spelling.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("", |(_, s)| s)
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == s).map(|(t, _)| *t)
    }

    /// The claim signed for proof of possession unless `ChallengeClaim` says otherwise.
    pub fn default_challenge_claim(self) -> &'static str {
        match self {
            Self::Email => "email",
            _ => "sub",
        }
    }
}

impl fmt::Display for IssuerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a CI provider's claims become the certificate's SAN and extensions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IssuerMetadata {
    /// Values templates may use when the token lacks the claim (claims win).
    pub default_template_values: BTreeMap<String, String>,
    pub extension_templates: ExtensionTemplates,
    /// Template of the SAN URI; must not be empty.
    pub subject_alternative_name_template: String,
}

/// One template (or claim name) per Fulcio extension; empty = not emitted. Field `oid_arc` of
/// [`ExtensionTemplates::entries`] gives the `1.3.6.1.4.1.57264.1.N` arc.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtensionTemplates {
    pub github_workflow_trigger: String,
    pub github_workflow_sha: String,
    pub github_workflow_name: String,
    pub github_workflow_repository: String,
    pub github_workflow_ref: String,
    pub build_signer_uri: String,
    pub build_signer_digest: String,
    pub runner_environment: String,
    pub source_repository_uri: String,
    pub source_repository_digest: String,
    pub source_repository_ref: String,
    pub source_repository_identifier: String,
    pub source_repository_owner_uri: String,
    pub source_repository_owner_identifier: String,
    pub build_config_uri: String,
    pub build_config_digest: String,
    pub build_trigger: String,
    pub run_invocation_uri: String,
    pub source_repository_visibility_at_signing: String,
    pub deployment_environment: String,
}

impl ExtensionTemplates {
    /// `(oid_arc, kebab-case name, template)` in OID order.
    pub fn entries(&self) -> [(u32, &'static str, &str); 20] {
        [
            (2, "github-workflow-trigger", &self.github_workflow_trigger),
            (3, "github-workflow-sha", &self.github_workflow_sha),
            (4, "github-workflow-name", &self.github_workflow_name),
            (
                5,
                "github-workflow-repository",
                &self.github_workflow_repository,
            ),
            (6, "github-workflow-ref", &self.github_workflow_ref),
            (9, "build-signer-uri", &self.build_signer_uri),
            (10, "build-signer-digest", &self.build_signer_digest),
            (11, "runner-environment", &self.runner_environment),
            (12, "source-repository-uri", &self.source_repository_uri),
            (
                13,
                "source-repository-digest",
                &self.source_repository_digest,
            ),
            (14, "source-repository-ref", &self.source_repository_ref),
            (
                15,
                "source-repository-identifier",
                &self.source_repository_identifier,
            ),
            (
                16,
                "source-repository-owner-uri",
                &self.source_repository_owner_uri,
            ),
            (
                17,
                "source-repository-owner-identifier",
                &self.source_repository_owner_identifier,
            ),
            (18, "build-config-uri", &self.build_config_uri),
            (19, "build-config-digest", &self.build_config_digest),
            (20, "build-trigger", &self.build_trigger),
            (21, "run-invocation-uri", &self.run_invocation_uri),
            (
                22,
                "source-repository-visibility-at-signing",
                &self.source_repository_visibility_at_signing,
            ),
            (23, "deployment-environment", &self.deployment_environment),
        ]
    }
}

/// Name of the built-in CI metadata entry for GitHub Actions.
pub const GITHUB_WORKFLOW: &str = "github-workflow";

/// Upstream's `github-workflow` entry of `config/identity/config.yaml`.
pub fn github_workflow_metadata() -> IssuerMetadata {
    let s = |v: &str| v.to_owned();
    IssuerMetadata {
        default_template_values: BTreeMap::from([
            (s("url"), s("https://github.com")),
            (s("environment"), s("")),
        ]),
        extension_templates: ExtensionTemplates {
            github_workflow_trigger: s("event_name"),
            github_workflow_sha: s("sha"),
            github_workflow_name: s("workflow"),
            github_workflow_repository: s("repository"),
            github_workflow_ref: s("ref"),
            build_signer_uri: s("{{ .url }}/{{ .job_workflow_ref }}"),
            build_signer_digest: s("job_workflow_sha"),
            runner_environment: s("runner_environment"),
            source_repository_uri: s("{{ .url }}/{{ .repository }}"),
            source_repository_digest: s("sha"),
            source_repository_ref: s("ref"),
            source_repository_identifier: s("repository_id"),
            source_repository_owner_uri: s("{{ .url }}/{{ .repository_owner }}"),
            source_repository_owner_identifier: s("repository_owner_id"),
            build_config_uri: s("{{ .url }}/{{ .workflow_ref }}"),
            build_config_digest: s("workflow_sha"),
            build_trigger: s("event_name"),
            run_invocation_uri: s(
                "{{ .url }}/{{ .repository }}/actions/runs/{{ .run_id }}/attempts/{{ .run_attempt }}",
            ),
            source_repository_visibility_at_signing: s("repository_visibility"),
            deployment_environment: s("environment"),
        },
        subject_alternative_name_template: s("{{ .url }}/{{ .job_workflow_ref }}"),
    }
}

// ---- wire forms ------------------------------------------------------------------------------
// One set of structs serves both forms: the JSON (Go field) name is the primary name and the
// YAML kebab-case name an alias.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(rename = "OIDCIssuers", alias = "oidc-issuers", default)]
    oidc_issuers: Option<BTreeMap<String, RawIssuer>>,
    #[serde(rename = "MetaIssuers", alias = "meta-issuers", default)]
    meta_issuers: Option<BTreeMap<String, RawIssuer>>,
    #[serde(rename = "CIIssuerMetadata", alias = "ci-issuer-metadata", default)]
    ci_issuer_metadata: Option<BTreeMap<String, RawMetadata>>,
    /// Anchor holder in upstream's YAML; ignored.
    #[serde(default)]
    #[allow(dead_code)]
    define: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    #[serde(rename = "IssuerURL", alias = "issuer-url", default)]
    issuer_url: Option<String>,
    #[serde(rename = "ClientID", alias = "client-id", default)]
    client_id: Option<String>,
    #[serde(rename = "Type", alias = "type", default)]
    issuer_type: Option<String>,
    #[serde(rename = "CIProvider", alias = "ci-provider", default)]
    ci_provider: Option<String>,
    #[serde(rename = "IssuerClaim", alias = "issuer-claim", default)]
    issuer_claim: Option<String>,
    #[serde(rename = "SubjectDomain", alias = "subject-domain", default)]
    subject_domain: Option<String>,
    #[serde(rename = "SPIFFETrustDomain", alias = "spiffe-trust-domain", default)]
    spiffe_trust_domain: Option<String>,
    #[serde(rename = "ChallengeClaim", alias = "challenge-claim", default)]
    challenge_claim: Option<String>,
    #[serde(rename = "Description", alias = "description", default)]
    description: Option<String>,
    #[serde(rename = "Contact", alias = "contact", default)]
    contact: Option<String>,
    #[serde(rename = "Environment", alias = "environment", default)]
    environment: Option<String>,
    #[serde(rename = "CACert", alias = "ca-cert", default)]
    ca_cert: Option<String>,
    #[serde(
        rename = "SkipEmailVerification",
        alias = "skip-email-verification",
        default
    )]
    skip_email_verification: Option<bool>,
    #[serde(rename = "JWKSURL", alias = "jwks-url", default)]
    jwks_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetadata {
    #[serde(
        rename = "DefaultTemplateValues",
        alias = "default-template-values",
        default
    )]
    default_template_values: Option<BTreeMap<String, String>>,
    #[serde(rename = "ExtensionTemplates", alias = "extension-templates", default)]
    extension_templates: Option<RawExtensions>,
    #[serde(
        rename = "SubjectAlternativeNameTemplate",
        alias = "subject-alternative-name-template",
        default
    )]
    subject_alternative_name_template: Option<String>,
}

macro_rules! raw_extensions {
    ($($field:ident = $json:literal / $yaml:literal),* $(,)?) => {
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct RawExtensions {
            /// Upstream's struct has it, but the issuer always comes from the token.
            #[serde(rename = "Issuer", alias = "issuer", default)]
            #[allow(dead_code)]
            issuer: Option<IgnoredAny>,
            $(
                #[serde(rename = $json, alias = $yaml, default)]
                $field: Option<String>,
            )*
        }

        impl From<RawExtensions> for ExtensionTemplates {
            fn from(r: RawExtensions) -> Self {
                ExtensionTemplates {
                    $($field: r.$field.unwrap_or_default(),)*
                }
            }
        }
    };
}

raw_extensions! {
    github_workflow_trigger = "GithubWorkflowTrigger" / "github-workflow-trigger",
    github_workflow_sha = "GithubWorkflowSHA" / "github-workflow-sha",
    github_workflow_name = "GithubWorkflowName" / "github-workflow-name",
    github_workflow_repository = "GithubWorkflowRepository" / "github-workflow-repository",
    github_workflow_ref = "GithubWorkflowRef" / "github-workflow-ref",
    build_signer_uri = "BuildSignerURI" / "build-signer-uri",
    build_signer_digest = "BuildSignerDigest" / "build-signer-digest",
    runner_environment = "RunnerEnvironment" / "runner-environment",
    source_repository_uri = "SourceRepositoryURI" / "source-repository-uri",
    source_repository_digest = "SourceRepositoryDigest" / "source-repository-digest",
    source_repository_ref = "SourceRepositoryRef" / "source-repository-ref",
    source_repository_identifier = "SourceRepositoryIdentifier" / "source-repository-identifier",
    source_repository_owner_uri = "SourceRepositoryOwnerURI" / "source-repository-owner-uri",
    source_repository_owner_identifier =
        "SourceRepositoryOwnerIdentifier" / "source-repository-owner-identifier",
    build_config_uri = "BuildConfigURI" / "build-config-uri",
    build_config_digest = "BuildConfigDigest" / "build-config-digest",
    build_trigger = "BuildTrigger" / "build-trigger",
    run_invocation_uri = "RunInvocationURI" / "run-invocation-uri",
    source_repository_visibility_at_signing =
        "SourceRepositoryVisibilityAtSigning" / "source-repository-visibility-at-signing",
    deployment_environment = "DeploymentEnvironment" / "deployment-environment",
}

// ---- parsing and validation ------------------------------------------------------------------

/// Parse and validate Fulcio's identity config: JSON first, then YAML (as upstream does).
pub fn parse_identity_config(text: &str) -> Result<IdentityConfig, OidcError> {
    let raw: RawConfig = match serde_json::from_str(text) {
        Ok(raw) => raw,
        Err(json_err) => match serde_yaml::from_str(text) {
            Ok(raw) => raw,
            // Report the error of the form the author evidently meant.
            Err(_) if text.trim_start().starts_with('{') => {
                return Err(config_err(format!("not valid JSON: {json_err}")));
            }
            Err(yaml_err) => return Err(config_err(format!("not valid YAML: {yaml_err}"))),
        },
    };
    let mut ci_issuer_metadata =
        BTreeMap::from([(GITHUB_WORKFLOW.to_owned(), github_workflow_metadata())]);
    for (name, m) in raw.ci_issuer_metadata.unwrap_or_default() {
        ci_issuer_metadata.insert(
            name,
            IssuerMetadata {
                default_template_values: m.default_template_values.unwrap_or_default(),
                extension_templates: m.extension_templates.unwrap_or_default().into(),
                subject_alternative_name_template: m
                    .subject_alternative_name_template
                    .unwrap_or_default(),
            },
        );
    }
    let mut oidc_issuers = BTreeMap::new();
    for (key, raw) in raw.oidc_issuers.unwrap_or_default() {
        let iss = convert_issuer(raw, &key)?;
        oidc_issuers.insert(key, iss);
    }
    let mut meta_issuers = BTreeMap::new();
    for (key, raw) in raw.meta_issuers.unwrap_or_default() {
        let iss = convert_issuer(raw, &key)?;
        meta_issuers.insert(key, iss);
    }
    let config = IdentityConfig {
        oidc_issuers,
        meta_issuers,
        ci_issuer_metadata,
    };
    config.validate()?;
    Ok(config)
}

fn config_err(reason: impl Into<String>) -> OidcError {
    OidcError::Config(reason.into())
}

fn convert_issuer(raw: RawIssuer, key: &str) -> Result<OidcIssuer, OidcError> {
    let type_name = raw.issuer_type.unwrap_or_default();
    let issuer_type = IssuerType::parse(&type_name).ok_or_else(|| {
        let known: Vec<_> = IssuerType::ALL.iter().map(|(_, n)| *n).collect();
        config_err(format!(
            "issuer {key}: unknown type {type_name:?} (one of: {})",
            known.join(", ")
        ))
    })?;
    Ok(OidcIssuer {
        issuer_url: raw.issuer_url.unwrap_or_default(),
        client_id: raw.client_id.unwrap_or_default(),
        issuer_type,
        ci_provider: raw.ci_provider.unwrap_or_default(),
        issuer_claim: raw.issuer_claim.unwrap_or_default(),
        subject_domain: raw.subject_domain.unwrap_or_default(),
        spiffe_trust_domain: raw.spiffe_trust_domain.unwrap_or_default(),
        challenge_claim: raw.challenge_claim.unwrap_or_default(),
        description: raw.description.unwrap_or_default(),
        contact: raw.contact.unwrap_or_default(),
        environment: raw.environment.unwrap_or_default(),
        ca_cert: raw.ca_cert.unwrap_or_default(),
        skip_email_verification: raw.skip_email_verification.unwrap_or(false),
        jwks_url: raw.jwks_url.unwrap_or_default(),
    })
}

impl IdentityConfig {
    /// The configuration for a token's `iss`: the exact `OIDCIssuers` entry, else the first
    /// matching `MetaIssuers` pattern (in pattern order), instantiated for `iss`.
    pub fn issuer_for(&self, iss: &str) -> Option<OidcIssuer> {
        if let Some(i) = self.oidc_issuers.get(iss) {
            return Some(i.clone());
        }
        self.meta_issuers
            .iter()
            .find(|(pattern, _)| meta_matches(pattern, iss))
            .map(|(_, template)| OidcIssuer {
                issuer_url: iss.to_owned(),
                ..template.clone()
            })
    }

    fn validate(&self) -> Result<(), OidcError> {
        for (key, iss) in &self.oidc_issuers {
            let at = |m: String| config_err(format!("issuer {key}: {m}"));
            if iss.issuer_url.is_empty() {
                return Err(at("issuer-url (IssuerURL) is required".into()));
            }
            if iss.issuer_url != *key {
                return Err(at(format!(
                    "issuer-url {:?} must equal the entry's key",
                    iss.issuer_url
                )));
            }
            check_issuer_url(key).map_err(at)?;
            self.validate_issuer(iss).map_err(at)?;
            if iss.issuer_type == IssuerType::Spiffe {
                check_trust_domain(&iss.spiffe_trust_domain).map_err(at)?;
            }
            if iss.issuer_type == IssuerType::Uri {
                check_uri_subject_domain(&iss.subject_domain, key).map_err(at)?;
            }
            if iss.issuer_type == IssuerType::Username {
                check_username_subject_domain(&iss.subject_domain, key).map_err(at)?;
            }
        }
        for (pattern, iss) in &self.meta_issuers {
            let at = |m: String| config_err(format!("meta issuer {pattern}: {m}"));
            if !pattern.contains('*') {
                return Err(at(
                    "a meta issuer pattern needs a '*' (list fixed URLs under oidc-issuers)".into(),
                ));
            }
            check_issuer_url(&pattern.replace('*', "x")).map_err(at)?;
            if iss.issuer_type == IssuerType::Spiffe {
                return Err(at(
                    "SPIFFE meta issuers are not supported (one trust domain \
                     cannot belong to many issuers)"
                        .into(),
                ));
            }
            self.validate_issuer(iss).map_err(at)?;
        }
        for (name, m) in &self.ci_issuer_metadata {
            let at = |m: String| config_err(format!("ci-issuer-metadata {name}: {m}"));
            if m.subject_alternative_name_template.trim().is_empty() {
                return Err(at(
                    "subject-alternative-name-template must not be empty".into()
                ));
            }
            Template::parse(&m.subject_alternative_name_template)
                .map_err(|e| at(format!("subject-alternative-name-template: {e}")))?;
            for (_, ext, t) in m.extension_templates.entries() {
                Template::parse(t).map_err(|e| at(format!("extension-templates {ext}: {e}")))?;
            }
        }
        Ok(())
    }

    /// Checks shared by fixed and meta issuers.
    fn validate_issuer(&self, iss: &OidcIssuer) -> Result<(), String> {
        if iss.client_id.is_empty() {
            return Err("client-id (ClientID) is required (usually \"sigstore\")".into());
        }
        if !iss.issuer_claim.is_empty() {
            if iss.issuer_type != IssuerType::Email {
                return Err("only email issuers can use issuer-claim (IssuerClaim)".into());
            }
            super::principal::parse_json_path(&iss.issuer_claim)?;
        }
        if iss.issuer_type == IssuerType::CiProvider {
            if iss.ci_provider.is_empty() {
                return Err("type ci-provider needs ci-provider (CIProvider)".into());
            }
            if !self.ci_issuer_metadata.contains_key(&iss.ci_provider) {
                let known: Vec<_> = self.ci_issuer_metadata.keys().map(String::as_str).collect();
                return Err(format!(
                    "ci-provider {:?} has no ci-issuer-metadata entry (known: {})",
                    iss.ci_provider,
                    known.join(", ")
                ));
            }
        } else if !iss.ci_provider.is_empty() {
            return Err(format!(
                "ci-provider is only used with type ci-provider, not {}",
                iss.issuer_type
            ));
        }
        let jwks = &iss.jwks_url;
        if !(jwks.is_empty() || jwks.starts_with("https://") || jwks.starts_with("http://")) {
            return Err("jwks-url (JWKSURL) must be an http:// or https:// URL".into());
        }
        if !iss.ca_cert.is_empty() {
            let found = rustls_pemfile::certs(&mut iss.ca_cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("ca-cert (CACert) is not valid PEM: {e}"))?;
            if found.is_empty() {
                return Err("ca-cert (CACert) holds no PEM CERTIFICATE".into());
            }
        }
        Ok(())
    }
}

/// Upstream's meta-issuer regex, `^quote(pattern)$` with `*` → `[-_a-zA-Z0-9]+`, evaluated
/// directly.
pub(crate) fn meta_matches(pattern: &str, s: &str) -> bool {
    fn wild(c: u8) -> bool {
        c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
    }
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => {
                let max = s.iter().take_while(|c| wild(**c)).count();
                (1..=max).any(|n| go(rest, &s[n..]))
            }
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    go(pattern.as_bytes(), s.as_bytes())
}

/// Scheme, host and port of an absolute `http(s)` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlParts {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
}

pub(crate) fn parse_url(s: &str) -> Result<UrlParts, String> {
    let uri: axum::http::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    let scheme = uri
        .scheme_str()
        .ok_or_else(|| format!("{s:?} has no scheme"))?
        .to_ascii_lowercase();
    let auth = uri
        .authority()
        .ok_or_else(|| format!("{s:?} has no host"))?;
    if auth.as_str().contains('@') {
        return Err(format!("{s:?} must not contain user information"));
    }
    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
    Ok(UrlParts {
        scheme,
        host: host.to_ascii_lowercase(),
        port: auth.port_u16(),
        path_and_query: uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
    })
}

pub(crate) fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// Issuer URLs must be `https://`, or `http://` on a loopback host (local test IdPs).
pub(crate) fn check_issuer_url(url: &str) -> Result<UrlParts, String> {
    let parts = parse_url(url)?;
    if url.contains('#') {
        return Err(format!("issuer URL {url:?} must not have a fragment"));
    }
    match parts.scheme.as_str() {
        "https" => Ok(parts),
        "http" if is_loopback_host(&parts.host) => Ok(parts),
        "http" => Err(format!(
            "issuer URL {url:?} uses plain http, which is only allowed for loopback hosts \
             (localhost, 127.0.0.1, ::1) used by local test IdPs; use https://"
        )),
        other => Err(format!(
            "issuer URL {url:?} has unsupported scheme {other:?}"
        )),
    }
}

fn check_trust_domain(td: &str) -> Result<(), String> {
    if td.is_empty() {
        return Err("spiffe issuers must set spiffe-trust-domain (SPIFFETrustDomain)".into());
    }
    let td = td.strip_prefix("spiffe://").unwrap_or(td);
    if td.is_empty()
        || !td
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b".-_".contains(&c))
    {
        return Err(format!(
            "spiffe trust domain {td:?} is invalid (lowercase letters, digits, '.', '-', '_')"
        ));
    }
    Ok(())
}

/// Upstream's rule: hosts match exactly or share their last two labels.
pub(crate) fn same_registered_domain(subject: &str, issuer: &str) -> Result<(), String> {
    if subject == issuer {
        return Ok(());
    }
    let s: Vec<_> = subject.split('.').collect();
    let i: Vec<_> = issuer.split('.').collect();
    if s.len() < 2 {
        return Err(format!(
            "hostname {subject:?} is too short (needs two labels)"
        ));
    }
    if i.len() < 2 {
        return Err(format!(
            "hostname {issuer:?} is too short (needs two labels)"
        ));
    }
    if s[s.len() - 2..] == i[i.len() - 2..] {
        Ok(())
    } else {
        Err(format!(
            "top-level and second-level domains of {subject:?} and the issuer {issuer:?} differ"
        ))
    }
}

fn check_uri_subject_domain(domain: &str, issuer_url: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("uri issuers must set subject-domain (SubjectDomain)".into());
    }
    let d = parse_url(domain)
        .map_err(|e| format!("subject-domain for a uri issuer must contain a scheme: {e}"))?;
    let i = parse_url(issuer_url)?;
    if d.scheme != i.scheme {
        return Err(format!(
            "subject-domain scheme {:?} and issuer scheme {:?} differ",
            d.scheme, i.scheme
        ));
    }
    same_registered_domain(&d.host, &i.host)
}

fn check_username_subject_domain(domain: &str, issuer_url: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("username issuers must set subject-domain (SubjectDomain)".into());
    }
    if domain.contains("://") || domain.contains('/') || domain.contains(':') {
        return Err(format!(
            "subject-domain {domain:?} for a username issuer must be a bare domain, without \
             scheme"
        ));
    }
    let i = parse_url(issuer_url)?;
    same_registered_domain(domain, &i.host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_patterns_are_anchored() {
        let p = "https://token.actions.githubusercontent.com/*";
        assert!(meta_matches(
            p,
            "https://token.actions.githubusercontent.com/acme-corp"
        ));
        assert!(!meta_matches(
            p,
            "https://token.actions.githubusercontent.com/a/b"
        ));
        assert!(!meta_matches(
            p,
            "https://token.actions.githubusercontent.com/"
        ));
        assert!(!meta_matches(
            p,
            "http://evil?https://token.actions.githubusercontent.com/x"
        ));
        let eks = "https://oidc.eks.*.amazonaws.com/id/*";
        assert!(meta_matches(
            eks,
            "https://oidc.eks.us-west-2.amazonaws.com/id/B0C3"
        ));
        assert!(!meta_matches(
            eks,
            "https://oidc.eks.evil.com/x.amazonaws.com/id/B0"
        ));
    }

    #[test]
    fn issuer_urls() {
        assert!(check_issuer_url("https://dex.example/auth").is_ok());
        assert!(check_issuer_url("http://127.0.0.1:5556/dex").is_ok());
        assert!(check_issuer_url("http://localhost:5556").is_ok());
        let e = check_issuer_url("http://dex.example").expect_err("plain http");
        assert!(e.contains("loopback"), "{e}");
    }
}
