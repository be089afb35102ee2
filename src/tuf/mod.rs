//! The instance's own TUF repository (The Update Framework, specification 1.0): clients
//! bootstrap from one `root.json` and then follow every change of keys, logs and URLs by
//! themselves, through the targets `trusted_root.json` and `signing_config.v0.2.json`.
//!
//! Pure parts first: [`canonical`] (the bytes TUF signs), [`key`] (ECDSA P-256 keys as TUF
//! clients read them), [`metadata`] (the four roles and their envelope), [`sign`] (signing
//! through [`crate::signer::Signer`]), [`inputs`] (what may be published). Then the state on
//! disk: [`repository`] (load and verify as a client would, write so that no client sees half a
//! publication), [`transcript`] (every key generated and signature made); the keys in their
//! tokens, [`keys`]; and the commands, [`ops`] (init, publish, refresh, rotate-root).

pub mod canonical;
pub mod inputs;
pub mod key;
pub mod keys;
pub mod metadata;
pub mod ops;
pub mod repository;
pub mod server;
pub mod sign;
pub mod status;
pub mod transcript;
