//! The RFC 6962 certificate-transparency log: a personality over the Merkle log service.
//!
//! Submissions are checked (chain to a configured root, precertificate poison where it belongs,
//! expiry and not-after window), appended to the tlog as a `MerkleTreeLeaf` with the chain as
//! extra data, and answered with an SCT signed by the CT key through the [`Signer`] seam — only
//! after the tlog has made the entry durable. Re-submitting the same (pre)certificate returns an
//! SCT for the stored entry (its original timestamp), never a second entry.
//!
//! Tree heads are the tlog's; the CT personality signs them as RFC 6962 STHs.

pub mod server;

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use der::{Decode, Encode};
use sha2::Digest;
use x509_cert::Certificate;

use crate::pki::ct::{self, DigitallySigned, MerkleTreeLeaf, Sct, SignedEntry};
use crate::signer::Signer;
use crate::tlog::api::{TlogClient, TlogClientError};

/// Most certificates in a submitted chain.
pub const DEFAULT_MAX_CHAIN: usize = 10;

/// What the CT log accepts.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Refuse certificates whose notAfter has passed.
    pub reject_expired: bool,
    /// Accept only certificates with notAfter ≥ this (ms since the epoch), if set.
    pub not_after_start: Option<u64>,
    /// Accept only certificates with notAfter < this (ms since the epoch), if set.
    pub not_after_limit: Option<u64>,
    /// Most certificates in a chain (leaf included).
    pub max_chain: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            reject_expired: true,
            not_after_start: None,
            not_after_limit: None,
            max_chain: DEFAULT_MAX_CHAIN,
        }
    }
}

/// Errors of the CT log, each with its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum CtLogError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the log is busy; retry later ({0})")]
    Unavailable(String),
    #[error("this log is read-only (its tree is frozen): it takes no new submissions")]
    Frozen,
    #[error("internal error: {0}")]
    Internal(String),
    /// A submitted chain that does not verify up to one of the log's roots (a signature, an
    /// issuer, a constraint), with the endpoint (`add-chain`, `add-pre-chain`).
    #[error("{what}: {source}")]
    Chain {
        what: &'static str,
        source: ct::CtError,
    },
}

impl CtLogError {
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) | Self::Chain { .. } => 400,
            Self::NotFound(_) => 404,
            Self::Unavailable(_) => 503,
            Self::Frozen => 403,
            Self::Internal(_) => 500,
        }
    }
}

impl From<TlogClientError> for CtLogError {
    fn from(e: TlogClientError) -> Self {
        match &e {
            TlogClientError::Api { status, message } if *status == 400 => {
                Self::BadRequest(message.clone())
            }
            TlogClientError::Api { status, message } if *status == 404 => {
                Self::NotFound(message.clone())
            }
            TlogClientError::Api { status: 403, .. } => Self::Frozen,
            _ if e.is_transient() => Self::Unavailable(e.to_string()),
            _ => Self::Internal(e.to_string()),
        }
    }
}

fn bad(m: impl Into<String>) -> CtLogError {
    CtLogError::BadRequest(m.into())
}

/// A signed tree head.
#[derive(Debug, Clone)]
pub struct Sth {
    pub tree_size: u64,
    pub timestamp: u64,
    pub root: [u8; 32],
    /// TLS `DigitallySigned` over the STH input.
    pub signature: Vec<u8>,
}

/// The CT log.
pub struct CtLog {
    signer: Arc<dyn Signer>,
    log_id: [u8; 32],
    roots: Vec<Certificate>,
    roots_der: Vec<Vec<u8>>,
    tlog: TlogClient,
    tree: String,
    policy: Policy,
    sth: Mutex<Option<Sth>>,
    /// How long appends to the Merkle log service took, for `/metrics`.
    append_latency: crate::metrics::Histogram,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn not_after_ms(c: &Certificate) -> u64 {
    c.tbs_certificate
        .validity
        .not_after
        .to_unix_duration()
        .as_millis() as u64
}

impl CtLog {
    /// Why the signing key's HSM keeps failing, while it does (readiness says so).
    pub fn hsm_failing(&self) -> Option<String> {
        self.signer.failing()
    }
    pub fn new(
        signer: Arc<dyn Signer>,
        roots: Vec<Certificate>,
        tlog: TlogClient,
        tree: String,
        policy: Policy,
    ) -> Result<Self, CtLogError> {
        if roots.is_empty() {
            return Err(CtLogError::Internal(
                "the CT log needs at least one root".into(),
            ));
        }
        let roots_der = roots
            .iter()
            .map(|r| r.to_der().map_err(|e| CtLogError::Internal(e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            log_id: ct::log_id(signer.public_key_der()),
            signer,
            roots,
            roots_der,
            tlog,
            tree,
            policy,
            sth: Mutex::new(None),
            append_latency: Default::default(),
        })
    }

    pub fn log_id(&self) -> [u8; 32] {
        self.log_id
    }

    pub fn public_key(&self) -> &[u8] {
        self.signer.public_key_der()
    }

    /// DER of the accepted roots (get-roots).
    pub fn roots_der(&self) -> &[Vec<u8>] {
        &self.roots_der
    }

    fn digitally_signed(&self, data: &[u8]) -> Result<DigitallySigned, CtLogError> {
        let sig = self
            .signer
            .sign(data)
            .map_err(|e| CtLogError::Unavailable(format!("signing failed: {e}")))?;
        Ok(DigitallySigned {
            hash_alg: 4,
            sig_alg: 3,
            signature: sig,
        })
    }

    /// Parse, check and log a chain; returns the SCT. `precert` selects add-pre-chain.
    pub async fn add_chain(
        &self,
        chain_der: Vec<Vec<u8>>,
        precert: bool,
    ) -> Result<Sct, CtLogError> {
        let what = if precert {
            "add-pre-chain"
        } else {
            "add-chain"
        };
        if chain_der.is_empty() {
            return Err(bad(format!("{what}: the chain is empty")));
        }
        if chain_der.len() > self.policy.max_chain {
            return Err(bad(format!(
                "{what}: the chain has {} certificates; at most {} are accepted",
                chain_der.len(),
                self.policy.max_chain
            )));
        }
        let mut chain = Vec::with_capacity(chain_der.len());
        for (i, der) in chain_der.iter().enumerate() {
            let c = Certificate::from_der(der).map_err(|e| {
                bad(format!(
                    "{what}: chain[{i}] is not a DER X.509 certificate: {e}"
                ))
            })?;
            chain.push(c);
        }
        let leaf = &chain[0];
        let is_pre = ct::is_precert(leaf).map_err(|e| bad(format!("{what}: {e}")))?;
        match (precert, is_pre) {
            (true, false) => {
                return Err(bad(
                    "add-pre-chain: the first certificate has no critical CT poison extension; submit final certificates to add-chain",
                ));
            }
            (false, true) => {
                return Err(bad(
                    "add-chain: the first certificate is a precertificate (CT poison extension); submit it to add-pre-chain",
                ));
            }
            _ => {}
        }
        let root_idx = ct::verify_chain(&chain, &self.roots)
            .map_err(|source| CtLogError::Chain { what, source })?;
        let na = not_after_ms(leaf);
        let now = now_ms();
        if self.policy.reject_expired && na < now {
            return Err(bad(format!("{what}: the certificate has expired")));
        }
        if self.policy.not_after_start.is_some_and(|s| na < s)
            || self.policy.not_after_limit.is_some_and(|l| na >= l)
        {
            return Err(bad(format!(
                "{what}: the certificate's notAfter is outside this log's accepted window"
            )));
        }
        // The chain as stored: the submitted chain after the leaf, with the root appended when the
        // submitter left it out.
        let mut rest: Vec<Vec<u8>> = chain_der[1..].to_vec();
        let root_der = &self.roots_der[root_idx];
        if rest.last() != Some(root_der) && chain_der.last() != Some(root_der) {
            rest.push(root_der.clone());
        }
        let (entry, extra) = if precert {
            let issuer = chain.get(1).ok_or_else(|| {
                bad("add-pre-chain: the chain must include the precertificate's issuer")
            })?;
            let tbs = ct::precert_tbs(leaf).map_err(|e| bad(format!("{what}: {e}")))?;
            (
                SignedEntry::Precert {
                    issuer_key_hash: ct::issuer_key_hash(issuer),
                    tbs,
                },
                ct::encode_precert_extra_data(&chain_der[0], &rest),
            )
        } else {
            (
                SignedEntry::X509(chain_der[0].clone()),
                ct::encode_x509_extra_data(&rest),
            )
        };
        let leaf_rec = MerkleTreeLeaf {
            timestamp: now,
            entry: entry.clone(),
            extensions: Vec::new(),
        };
        let identity = identity_hash(&entry);
        let appending = std::time::Instant::now();
        let res = self
            .tlog
            .append_with_extra(
                &self.tree,
                &leaf_rec.encode(),
                Some(&identity),
                Some(&extra),
                false,
            )
            .await?;
        self.append_latency.observe(appending.elapsed());
        let timestamp = if res.duplicate {
            // An SCT for the stored entry, with its original timestamp.
            let e = self
                .tlog
                .entries(&self.tree, res.index, res.index + 1)
                .await?;
            let stored = e
                .entries
                .first()
                .ok_or_else(|| CtLogError::Internal("duplicate entry not readable".into()))?;
            let data = b64d(&stored.data).map_err(CtLogError::Internal)?;
            let stored = MerkleTreeLeaf::decode(&data).map_err(|e| {
                CtLogError::Internal(format!("stored entry {} is not a CT leaf: {e}", res.index))
            })?;
            if stored.entry != entry {
                return Err(CtLogError::Internal("identity hash collision".into()));
            }
            stored.timestamp
        } else {
            now
        };
        let signature = self.digitally_signed(&ct::sct_signed_data(timestamp, &entry, &[]))?;
        Ok(Sct {
            version: 0,
            log_id: self.log_id,
            timestamp,
            extensions: Vec::new(),
            signature,
        })
    }

    /// Latency of appends to the Merkle log service.
    pub fn tlog_append_latency(&self) -> &crate::metrics::Histogram {
        &self.append_latency
    }

    /// The latest STH, re-signed when the tree has grown.
    pub async fn sth(&self) -> Result<Sth, CtLogError> {
        let head = self.tlog.head(&self.tree).await?;
        if let Some(s) = self.sth.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if s.tree_size == head.tree_size {
                return Ok(s.clone());
            }
        }
        let root: [u8; 32] = hex::decode(&head.root_hash)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| CtLogError::Internal("tlog sent a bad root hash".into()))?;
        let timestamp = now_ms();
        let sig = self.digitally_signed(&ct::sth_signed_data(timestamp, head.tree_size, &root))?;
        let sth = Sth {
            tree_size: head.tree_size,
            timestamp,
            root,
            signature: sig.encode(),
        };
        let mut cur = self.sth.lock().unwrap_or_else(|p| p.into_inner());
        // Keep the larger tree if two requests raced.
        if cur.as_ref().is_none_or(|c| c.tree_size < sth.tree_size) {
            *cur = Some(sth.clone());
        }
        Ok(cur.clone().unwrap_or(sth))
    }

    pub fn tlog(&self) -> &TlogClient {
        &self.tlog
    }

    pub fn tree(&self) -> &str {
        &self.tree
    }
}

/// What makes two submissions "the same": the entry without its timestamp.
pub fn identity_hash(entry: &SignedEntry) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    match entry {
        SignedEntry::X509(der) => {
            h.update([0u8, 0]);
            h.update(der);
        }
        SignedEntry::Precert {
            issuer_key_hash,
            tbs,
        } => {
            h.update([0u8, 1]);
            h.update(issuer_key_hash);
            h.update(tbs);
        }
    }
    h.finalize().into()
}

fn b64d(s: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_refusal_is_a_400_naming_the_endpoint() {
        let e = CtLogError::Chain {
            what: "add-chain",
            source: ct::CtError::EmptyChain,
        };
        assert_eq!(e.status(), 400);
        assert_eq!(
            e.to_string(),
            format!("add-chain: {}", ct::CtError::EmptyChain)
        );
    }
}
