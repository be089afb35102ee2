//! The timestamp authority (`sigvault tsa serve`): RFC 3161 timestamp tokens signed by a key that
//! never leaves its PKCS#11 token.
//!
//! Stateless by design: one HSM signature per token, no database; serial
//! numbers are unique without coordination ([`serial`]); several instances may run behind one
//! load balancer. A token is only issued while the kernel says the clock is synchronised
//! ([`clock`]), the TSA certificate is valid, and the request is one the TSA grants
//! ([`request`]). What the token looks like on the wire is [`token`]; the HTTP API is
//! [`server`].

pub mod clock;
pub mod request;
pub mod serial;
pub mod server;
pub mod token;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use const_oid::ObjectIdentifier;
use der::asn1::GeneralizedTime;
use x509_cert::Certificate;

use crate::signer::{SignError, Signer};
use clock::{ClockPolicy, ClockReading, ClockSource};
use request::{Failure, Refusal, Request};
use serial::SerialSource;
use token::{TokenError, TokenMaker};

/// Sigstore's timestamp policy OID, upstream timestamp-authority's default.
pub const DEFAULT_POLICY: &str = "1.3.6.1.4.1.57264.2";

/// What the operator decides (from `[tsa]` in tsa.toml).
#[derive(Debug, Clone)]
pub struct TsaOptions {
    /// The policy of tokens whose request names none.
    pub policy: ObjectIdentifier,
    /// Further policies a request may ask for.
    pub accepted_policies: Vec<ObjectIdentifier>,
    /// The accuracy every token states: genTime ± this.
    pub accuracy: Duration,
    pub clock: ClockPolicy,
}

/// Why no token was issued.
#[derive(Debug, thiserror::Error)]
pub enum TsaError {
    /// A request the TSA does not grant (400, status rejection).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The clock cannot be vouched for (503, timeNotAvailable).
    #[error("{0}")]
    TimeUnavailable(String),
    /// The HSM did not sign (503, systemFailure).
    #[error("the HSM did not sign the timestamp: {0}")]
    Hsm(SignError),
    /// Anything else on our side (500, systemFailure).
    #[error("{0}")]
    Internal(String),
}

impl TsaError {
    /// The `PKIFailureInfo` bit the rejection carries.
    pub fn failure(&self) -> Failure {
        match self {
            Self::Refused(r) => r.failure,
            Self::TimeUnavailable(_) => Failure::TimeNotAvailable,
            Self::Hsm(_) | Self::Internal(_) => Failure::SystemFailure,
        }
    }

    /// The HTTP status: the client's fault is 400, ours 503 (retry later) or 500.
    pub fn status(&self) -> u16 {
        match self {
            Self::Refused(_) => 400,
            Self::TimeUnavailable(_) | Self::Hsm(_) => 503,
            Self::Internal(_) => 500,
        }
    }
}

impl From<TokenError> for TsaError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Sign(s) => Self::Hsm(s),
            TokenError::Der(d) => Self::Internal(format!("cannot encode the token: {d}")),
        }
    }
}

/// A token issued: the DER `TimeStampResp` and what the audit line records.
#[derive(Debug, Clone)]
pub struct Issued {
    pub der: Vec<u8>,
    /// The serial as lowercase hex (as `openssl ts -reply -text` shows it, without `0x`).
    pub serial_hex: String,
    /// genTime, RFC 3339.
    pub gen_time: String,
    pub policy: ObjectIdentifier,
}

/// The timestamp authority: one key, its certificate chain, the clock rule.
pub struct Tsa {
    maker: TokenMaker,
    options: TsaOptions,
    clock: Box<dyn ClockSource>,
    serials: SerialSource,
    not_before: u64,
    not_after: u64,
    chain_pem: String,
}

impl Tsa {
    /// Check the chain (TSA certificate first, then its issuers up to the root) against the key
    /// in the HSM and the RFC 3161 profile, and get ready to issue. Refuses a key that is not
    /// the certificate's, a certificate without the timeStamping profile, or a chain that does
    /// not link.
    pub fn new(
        signer: Arc<dyn Signer>,
        chain: Vec<Certificate>,
        options: TsaOptions,
        clock: Box<dyn ClockSource>,
    ) -> Result<Self, String> {
        let cert = chain
            .first()
            .cloned()
            .ok_or("the certificate chain is empty: list the TSA certificate first")?;
        if !crate::pki::cert_matches_key(&cert, signer.public_key_der()) {
            return Err(
                "the TSA key in the HSM does not match the first certificate of cert_chain (the TSA certificate)"
                    .into(),
            );
        }
        crate::pki::tsa::check_tsa_profile(&cert)
            .map_err(|e| format!("the TSA certificate cannot sign timestamps: {e}"))?;
        if chain.len() < 2 {
            return Err(
                "cert_chain must hold the TSA certificate and its root (clients need both)".into(),
            );
        }
        for pair in chain.windows(2) {
            crate::pki::ct::verify_issued_by(&pair[0], &pair[1]).map_err(|e| {
                format!(
                    "cert_chain does not link: {} is not issued by {}: {e}",
                    pair[0].tbs_certificate.subject, pair[1].tbs_certificate.subject
                )
            })?;
        }
        let mut chain_pem = String::new();
        for c in &chain {
            chain_pem.push_str(&crate::pki::cert_pem(c).map_err(|e| e.to_string())?);
        }
        let validity = &cert.tbs_certificate.validity;
        let not_before = validity.not_before.to_unix_duration().as_secs();
        let not_after = validity.not_after.to_unix_duration().as_secs();
        let maker = TokenMaker::new(signer, cert).map_err(|e| e.to_string())?;
        let serials = SerialSource::new().map_err(|e| format!("no randomness for serials: {e}"))?;
        Ok(Self {
            maker,
            options,
            clock,
            serials,
            not_before,
            not_after,
            chain_pem,
        })
    }

    /// The chain as served at `/api/v1/timestamp/certchain`: PEM, TSA certificate first.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    pub fn options(&self) -> &TsaOptions {
        &self.options
    }

    /// The kernel clock's state now, for metrics (`None` if it cannot be read).
    pub fn clock_reading(&self) -> Option<ClockReading> {
        self.clock.read().ok()
    }

    /// `Ok` while tokens can be issued; otherwise why not (clock, certificate, HSM).
    pub fn readiness(&self) -> Result<(), String> {
        if let Some(why) = self.options.clock.refusal(self.clock.as_ref()) {
            return Err(why);
        }
        self.certificate_valid(now_secs())?;
        if let Some(why) = self.maker.signer().failing() {
            return Err(why);
        }
        Ok(())
    }

    fn certificate_valid(&self, now: u64) -> Result<(), String> {
        if now < self.not_before {
            return Err("the TSA certificate is not valid yet (check the clock)".into());
        }
        if now > self.not_after {
            return Err(
                "the TSA certificate has expired: renew it (a new TSA certificate from the root)"
                    .into(),
            );
        }
        Ok(())
    }

    fn check_policy(&self, asked: Option<ObjectIdentifier>) -> Result<ObjectIdentifier, Refusal> {
        let Some(p) = asked else {
            return Ok(self.options.policy);
        };
        if p == self.options.policy || self.options.accepted_policies.contains(&p) {
            Ok(p)
        } else {
            Err(Refusal::new(
                request::Failure::UnacceptedPolicy,
                format!(
                    "policy {p} is not served here (this TSA issues under {})",
                    std::iter::once(&self.options.policy)
                        .chain(&self.options.accepted_policies)
                        .map(|o| o.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        }
    }

    /// Issue a token for `req`, or say why not. Nothing is signed unless every check passed.
    pub fn timestamp(&self, req: &Request) -> Result<Issued, TsaError> {
        let policy = self.check_policy(req.policy)?;
        if let Some(why) = self.options.clock.refusal(self.clock.as_ref()) {
            return Err(TsaError::TimeUnavailable(why));
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|_| TsaError::TimeUnavailable("the clock is before 1970".into()))?;
        let secs = now.as_secs();
        self.certificate_valid(secs)
            .map_err(TsaError::TimeUnavailable)?;
        // genTime in whole seconds (truncated; the stated accuracy covers the fraction).
        let gen_time = GeneralizedTime::from_unix_duration(Duration::from_secs(secs))
            .map_err(|e| TsaError::Internal(format!("genTime: {e}")))?;
        let serial = self.serials.next(now.as_nanos() as u64);
        let accuracy_ms = u32::try_from(self.options.accuracy.as_millis()).unwrap_or(u32::MAX);
        let der = self
            .maker
            .grant(req, policy, &serial, gen_time, accuracy_ms)?;
        Ok(Issued {
            der,
            serial_hex: hex::encode(serial),
            gen_time: time::OffsetDateTime::from_unix_timestamp(secs as i64)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default(),
            policy,
        })
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
