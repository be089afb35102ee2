//! sigvault: an HSM-centric Sigstore appliance. See README.md.
//!
//! Module cut (pure leaves first): [`signer`] is the one seam for signing; [`hsm`] is its only
//! production implementation (PKCS#11); [`pki`] builds certificates; [`config`] reads the strict
//! TOML files; [`ceremony`] is the offline key ceremony; [`cmd`] wires the command line.

pub mod ceremony;
pub mod cmd;
pub mod config;
pub mod ctlog;
pub mod fulcio;
pub mod fuzz;
pub mod hsm;
pub mod http;
pub mod merkle;
pub mod metrics;
pub mod note;
pub mod oidc;
pub mod pki;
pub mod rekor;
pub mod rekor_v2;
pub mod signer;
pub mod store;
pub mod tlog;
pub mod trust;
pub mod tsa;
pub mod tuf;
