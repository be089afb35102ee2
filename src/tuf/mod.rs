//! The instance's own TUF repository (The Update Framework, specification 1.0): clients
//! bootstrap from one `root.json` and then follow every change of keys, logs and URLs by
//! themselves, through the targets `trusted_root.json` and `signing_config.v0.2.json`.
//!
//! Pure parts first: [`canonical`] (the bytes TUF signs), [`key`] (ECDSA P-256 keys as TUF
//! clients read them), [`metadata`] (the four roles and their envelope), [`sign`] (signing
//! through [`crate::signer::Signer`]), [`inputs`] (what may be published).

pub mod canonical;
pub mod inputs;
pub mod key;
pub mod metadata;
pub mod sign;
