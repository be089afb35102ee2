//! The Fulcio-compatible certificate authority.
//!
//! For each request: verify the OIDC token ([`crate::oidc`] is the only place that can mint a
//! verified token), derive the principal, check the proof of possession (a CSR self-signature or
//! a signature over the principal's email/subject), build the leaf profile, sign a
//! precertificate with the issuing CA key through the [`Signer`] seam, submit it to the CT log
//! over HTTP, verify the SCT with the CT log's key, and sign the final certificate with the SCT
//! embedded. The precertificate and the final certificate differ only in the poison and SCT-list
//! extensions, which is what verifiers check.

pub mod server;

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use der::Encode;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use crate::http::client::Client;
use crate::oidc::{self, Verifier};
use crate::pki::ct::{self, AddChainResponse, Sct, SignedEntry};
use crate::pki::fulcio as profile;
use crate::pki::pop::{self, PublicKey};
use crate::pki::signature::verify_p256_sha256;
use crate::signer::Signer;

/// Errors, each mapped to a gRPC-style code and HTTP status as upstream Fulcio does.
#[derive(Debug, thiserror::Error)]
pub enum FulcioError {
    /// Token, key, proof or request problems: gRPC InvalidArgument (3) → HTTP 400.
    #[error("{0}")]
    InvalidArgument(String),
    /// CA or CT failure: gRPC Internal (13) → HTTP 500.
    #[error("{0}")]
    Internal(String),
    /// The CT log or HSM is unavailable: gRPC Unavailable (14) → HTTP 503.
    #[error("{0}")]
    Unavailable(String),
    /// The identity token was refused (its signature, issuer or claims): InvalidArgument.
    #[error("error processing the identity token: {0}")]
    Token(oidc::OidcError),
    /// The public key or CSR was refused (key policy, or the CSR's self-signature):
    /// InvalidArgument.
    #[error("{0}")]
    Key(pop::PopError),
    /// The proof of possession, a signature over the token's email or subject (`over`), does
    /// not verify: InvalidArgument.
    #[error(
        "the proof of possession does not verify: it must be the key's signature over the token's {over} ({source})"
    )]
    ProofOfPossession {
        over: &'static str,
        source: pop::PopError,
    },
}

impl FulcioError {
    pub fn grpc_code(&self) -> u16 {
        match self {
            Self::InvalidArgument(_)
            | Self::Token(_)
            | Self::Key(_)
            | Self::ProofOfPossession { .. } => 3,
            Self::Internal(_) => 13,
            Self::Unavailable(_) => 14,
        }
    }
    /// The HTTP status of the gRPC code, as grpc-gateway maps them (upstream Fulcio's HTTP
    /// API): so the one mapping from a refusal is [`Self::grpc_code`].
    pub fn status(&self) -> u16 {
        match self.grpc_code() {
            3 => 400,
            14 => 503,
            _ => 500,
        }
    }
}

fn invalid(m: impl Into<String>) -> FulcioError {
    FulcioError::InvalidArgument(m.into())
}

/// Where precertificates are logged.
pub struct CtLogClient {
    pub client: Client,
    /// Path prefix of the log (e.g. `/sigvault`), without trailing slash.
    pub prefix: String,
    /// The log's public key (DER SPKI) that must verify each SCT.
    pub public_key: Vec<u8>,
}

/// How the public key is proven.
pub enum KeyProof<'a> {
    /// A PKCS#10 CSR (PEM or DER) whose self-signature is the proof.
    Csr(&'a [u8]),
    /// A public key (PEM or DER SPKI) and a signature over the principal's name.
    Signature {
        public_key: &'a [u8],
        signature: &'a [u8],
    },
}

/// The CA.
pub struct Ca {
    signer: Arc<dyn Signer>,
    issuing: Certificate,
    /// Issuing CA first, root last.
    chain_pem: Vec<String>,
    chain_der: Vec<Vec<u8>>,
    verifier: Verifier,
    ct: CtLogClient,
}

impl Ca {
    /// Why the signing key's HSM keeps failing, while it does (readiness says so).
    pub fn hsm_failing(&self) -> Option<String> {
        self.signer.failing()
    }
    /// `chain` is the issuing CA certificate then its issuers up to the root. Refuses a signer
    /// whose key is not the issuing certificate's key.
    pub fn new(
        signer: Arc<dyn Signer>,
        chain: Vec<Certificate>,
        verifier: Verifier,
        ct: CtLogClient,
    ) -> Result<Self, FulcioError> {
        let issuing = chain
            .first()
            .cloned()
            .ok_or_else(|| FulcioError::Internal("the CA chain is empty".into()))?;
        if !crate::pki::cert_matches_key(&issuing, signer.public_key_der()) {
            return Err(FulcioError::Internal(
                "the HSM key does not match the issuing CA certificate; refusing to start".into(),
            ));
        }
        let mut chain_pem = Vec::new();
        let mut chain_der = Vec::new();
        for c in &chain {
            chain_pem
                .push(crate::pki::cert_pem(c).map_err(|e| FulcioError::Internal(e.to_string()))?);
            chain_der.push(
                c.to_der()
                    .map_err(|e| FulcioError::Internal(e.to_string()))?,
            );
        }
        Ok(Self {
            signer,
            issuing,
            chain_pem,
            chain_der,
            verifier,
            ct,
        })
    }

    /// PEM of the issuing CA and its issuers (trustBundle, rootCert).
    /// The issuing CA's subject, for logs.
    pub fn issuer_name(&self) -> String {
        self.issuing.tbs_certificate.subject.to_string()
    }
    pub fn chain_pem(&self) -> &[String] {
        &self.chain_pem
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Issue a certificate: returns the leaf PEM.
    pub async fn issue(&self, token: &str, proof: KeyProof<'_>) -> Result<String, FulcioError> {
        let verified = self
            .verifier
            .verify(token)
            .await
            .map_err(FulcioError::Token)?;
        let principal = oidc::principal(&verified).map_err(|e| invalid(e.to_string()))?;
        let key: PublicKey = match proof {
            KeyProof::Csr(csr) => pop::verify_csr(csr).map_err(FulcioError::Key)?,
            KeyProof::Signature {
                public_key,
                signature,
            } => {
                let key = pop::parse_public_key(public_key).map_err(FulcioError::Key)?;
                pop::verify_pop(&key, principal.pop_subject.as_bytes(), signature).map_err(
                    |source| FulcioError::ProofOfPossession {
                        over: if matches!(principal.san, oidc::San::Email(_)) {
                            "email"
                        } else {
                            "subject"
                        },
                        source,
                    },
                )?;
                key
            }
        };
        let spki = key.spki_der();
        let sig_alg = spki::AlgorithmIdentifierOwned {
            oid: self.signer.algorithm().x509_oid(),
            parameters: None,
        };
        let serial =
            crate::pki::random_serial().map_err(|e| FulcioError::Internal(e.to_string()))?;
        let serial_hex = hex::encode(serial.as_bytes());
        let exts: Vec<profile::SigstoreExtension> = principal
            .extensions
            .iter()
            .map(|e| profile::SigstoreExtension {
                oid_arc: e.oid_arc,
                value: e.value.clone(),
            })
            .collect();
        let san = match &principal.san {
            oidc::San::Email(e) => profile::San::Email(e.clone()),
            oidc::San::Uri(u) => profile::San::Uri(u.clone()),
            oidc::San::OtherName { type_id, value } => profile::San::OtherName {
                type_id: type_id
                    .parse()
                    .map_err(|_| FulcioError::Internal(format!("bad otherName type {type_id}")))?,
                value: value.clone(),
            },
        };
        let tbs = profile::leaf_tbs(
            &self.issuing,
            &spki,
            &san,
            &exts,
            profile::validity_for(SystemTime::now()),
            serial,
            sig_alg.clone(),
        )
        .map_err(|e| FulcioError::Internal(e.to_string()))?;

        // Precertificate → SCT.
        let precert = crate::pki::sign_tbs(
            profile::precert(&tbs),
            sig_alg.clone(),
            self.signer.as_ref(),
        )
        .map_err(|e| FulcioError::Unavailable(format!("signing the precertificate failed: {e}")))?;
        let sct = self.log_precert(&precert).await?;

        // Final certificate with the SCT embedded.
        let final_tbs = profile::with_scts(&tbs, std::slice::from_ref(&sct))
            .map_err(|e| FulcioError::Internal(e.to_string()))?;
        let cert = crate::pki::sign_tbs(final_tbs, sig_alg, self.signer.as_ref()).map_err(|e| {
            FulcioError::Unavailable(format!("signing the certificate failed: {e}"))
        })?;
        // The SCT must verify over the final certificate as clients rebuild it.
        let rebuilt =
            ct::final_cert_tbs_for_sct(&cert).map_err(|e| FulcioError::Internal(e.to_string()))?;
        let logged = ct::precert_tbs(&precert).map_err(|e| FulcioError::Internal(e.to_string()))?;
        if rebuilt != logged {
            return Err(FulcioError::Internal(
                "the final certificate does not match the logged precertificate".into(),
            ));
        }
        let pem = crate::pki::cert_pem(&cert).map_err(|e| FulcioError::Internal(e.to_string()))?;
        // The CA's audit trail: one line per certificate, what an investigation needs to find
        // it (serial, identity, key) and its SCT. Never the token.
        tracing::info!(
            target: "sigvault::audit",
            serial = %serial_hex,
            // Claims come from the token: Debug form, so a newline in one cannot forge a line.
            identity = ?principal.san.to_string(),
            oidc_issuer = %verified.issuer(),
            cert_issuer = ?principal.cert_issuer,
            key_sha256 = %hex::encode(Sha256::digest(&spki)),
            sct_timestamp = sct.timestamp,
            "issued a certificate"
        );
        Ok(pem)
    }

    /// Readiness: the CT log answers `get-sth` with a tree head signed by the configured log
    /// key (a certificate cannot be issued without its SCT). Returns the tree size.
    pub async fn ct_log_ready(&self) -> Result<u64, FulcioError> {
        #[derive(serde::Deserialize)]
        struct Sth {
            tree_size: u64,
            timestamp: u64,
            sha256_root_hash: String,
            tree_head_signature: String,
        }
        let resp = self
            .ct
            .client
            .request(
                axum::http::Method::GET,
                &format!("{}/ct/v1/get-sth", self.ct.prefix),
                None,
            )
            .await
            .map_err(|e| FulcioError::Unavailable(format!("the CT log is unreachable: {e}")))?;
        if !resp.status.is_success() {
            let msg = String::from_utf8_lossy(&resp.body).replace('\n', " ");
            return Err(FulcioError::Unavailable(format!(
                "the CT log answered get-sth with {}: {msg}",
                resp.status
            )));
        }
        let unreadable =
            |e: String| FulcioError::Unavailable(format!("the CT log sent an unreadable STH: {e}"));
        let sth: Sth = serde_json::from_slice(&resp.body).map_err(|e| unreadable(e.to_string()))?;
        let root: [u8; 32] = B64
            .decode(&sth.sha256_root_hash)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| unreadable("sha256_root_hash is not 32 bytes of base64".into()))?;
        let sig = B64
            .decode(&sth.tree_head_signature)
            .map_err(|e| unreadable(e.to_string()))
            .and_then(|d| ct::DigitallySigned::decode(&d).map_err(|e| unreadable(e.to_string())))?;
        verify_p256_sha256(
            &self.ct.public_key,
            &ct::sth_signed_data(sth.timestamp, sth.tree_size, &root),
            &sig.signature,
        )
        .map_err(|_| {
            FulcioError::Unavailable(
                "the CT log's tree head does not verify with the configured CT log key".into(),
            )
        })?;
        Ok(sth.tree_size)
    }

    /// Submit the precertificate to the CT log and check the SCT it returns.
    async fn log_precert(&self, precert: &Certificate) -> Result<Sct, FulcioError> {
        let pre_der = precert
            .to_der()
            .map_err(|e| FulcioError::Internal(e.to_string()))?;
        let mut chain = vec![B64.encode(&pre_der)];
        chain.extend(self.chain_der.iter().map(|d| B64.encode(d)));
        let body = serde_json::json!({ "chain": chain })
            .to_string()
            .into_bytes();
        let resp = self
            .ct
            .client
            .request(
                axum::http::Method::POST,
                &format!("{}/ct/v1/add-pre-chain", self.ct.prefix),
                Some((body, "application/json")),
            )
            .await
            .map_err(|e| FulcioError::Unavailable(format!("the CT log is unreachable: {e}")))?;
        if !resp.status.is_success() {
            let msg = String::from_utf8_lossy(&resp.body).replace('\n', " ");
            return Err(
                if resp.status.as_u16() == 503 || resp.status.as_u16() == 429 {
                    FulcioError::Unavailable(format!("the CT log is busy: {msg}"))
                } else {
                    FulcioError::Internal(format!(
                        "the CT log refused the precertificate ({}): {msg}",
                        resp.status
                    ))
                },
            );
        }
        let acr: AddChainResponse = serde_json::from_slice(&resp.body).map_err(|e| {
            FulcioError::Internal(format!("the CT log sent an unreadable SCT: {e}"))
        })?;
        let sct = Sct::try_from(&acr)
            .map_err(|e| FulcioError::Internal(format!("bad SCT from the CT log: {e}")))?;
        let entry = SignedEntry::Precert {
            issuer_key_hash: ct::issuer_key_hash(&self.issuing),
            tbs: ct::precert_tbs(precert).map_err(|e| FulcioError::Internal(e.to_string()))?,
        };
        if sct.log_id != ct::log_id(&self.ct.public_key) {
            return Err(FulcioError::Internal(
                "the SCT comes from a different CT log than configured".into(),
            ));
        }
        verify_p256_sha256(
            &self.ct.public_key,
            &sct.signed_data(&entry),
            &sct.signature.signature,
        )
        .map_err(|_| FulcioError::Internal("the CT log's SCT signature does not verify".into()))?;
        Ok(sct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_proof_refusals_are_invalid_argument() {
        let e = FulcioError::ProofOfPossession {
            over: "email",
            source: pop::PopError::BadSignature("ECDSA P-256".into()),
        };
        assert_eq!((e.status(), e.grpc_code()), (400, 3));
        assert_eq!(
            e.to_string(),
            "the proof of possession does not verify: it must be the key's signature over the token's email (signature could not be verified with the ECDSA P-256 public key)"
        );
        let e = FulcioError::Key(pop::PopError::MissingCsr);
        assert_eq!((e.status(), e.grpc_code()), (400, 3));
        assert_eq!(e.to_string(), "certificate signing request not provided");
        let e = FulcioError::Token(oidc::OidcError::BadSignature);
        assert_eq!((e.status(), e.grpc_code()), (400, 3));
        assert!(
            e.to_string()
                .starts_with("error processing the identity token: "),
            "{e}"
        );
    }
}
