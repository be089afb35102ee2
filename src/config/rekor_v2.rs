//! `rekor-v2.toml`: the Rekor v2 service (`sigvault rekor-v2 serve`).
//!
//! It holds no key and no database of its own: each log is a tlog tree whose checkpoints the tlog
//! signs with that log's key, so the service needs only the tlog's internal API and each log's
//! published public key (to check, at start, that the tree is the log it claims to be).

use std::path::PathBuf;

use serde::Deserialize;

/// `[[rekor_v2.logs]]`: one Rekor v2 log (a shard), served at its URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekorV2LogConfig {
    /// The log's base URL as clients are given it (trust root `baseUrl`, signing config
    /// `rekorTlogUrls`), e.g. `https://log2026-1.rekor.example.org`. Its path (if any) is where
    /// this service routes the log; without the scheme it is the checkpoint origin and the
    /// name on the checkpoint signature (upstream's convention, and what sigstore-js checks).
    pub url: String,
    /// The tlog tree holding the log; its `[[tlog.trees]]` entry has origin and note_name equal
    /// to the URL without scheme, and the log's key.
    pub tree: String,
    /// The log's public key (PEM), e.g. the ceremony's rekor-v2.pub.pem: the log ID clients
    /// look the log up by, and the key the tree's checkpoints must verify with.
    pub public_key_file: PathBuf,
}

impl RekorV2LogConfig {
    /// The URL without its scheme and trailing slash: the checkpoint origin.
    pub fn origin(&self) -> &str {
        let u = self.url.trim_end_matches('/');
        u.split_once("://").map_or(u, |(_, rest)| rest)
    }

    /// The path under which this service routes the log: "" or "/a/b".
    pub fn path_prefix(&self) -> &str {
        let o = self.origin();
        o.find('/').map_or("", |i| &o[i..])
    }
}

/// `[rekor_v2]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekorV2Section {
    /// Listener (plain HTTP only on loopback; else set `tls`).
    #[serde(default = "default_listen")]
    pub listen: crate::http::ListenAddr,
    #[serde(default)]
    pub tls: Option<crate::http::TlsFiles>,
    /// tlog internal API endpoints (`unix:/path`, `http://127.0.0.1:port`, `https://host:port`).
    pub tlog: Vec<crate::http::client::Endpoint>,
    /// Client TLS for https tlog endpoints.
    #[serde(default)]
    pub tlog_tls: Option<crate::http::client::ClientTls>,
    /// Create each log's tree in the tlog at start if it does not exist yet.
    #[serde(default = "default_true")]
    pub create_trees: bool,
    /// Largest request body, bytes (an entry is at most 64 KiB in the tlog).
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    /// The logs, newest last. A retired log stays listed: its tlog tree is frozen (`frozen =
    /// true` in tlog.toml), so it refuses entries (403) and still serves its checkpoint and tiles.
    pub logs: Vec<RekorV2LogConfig>,
}

fn default_listen() -> crate::http::ListenAddr {
    crate::http::ListenAddr::Tcp(([127, 0, 0, 1], 3004).into())
}
fn default_true() -> bool {
    true
}
fn default_body() -> usize {
    128 << 10
}

/// A whole rekor-v2 config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekorV2Config {
    pub rekor_v2: RekorV2Section,
}

impl RekorV2Config {
    pub(super) fn validate(&self) -> Result<(), String> {
        let r = &self.rekor_v2;
        if r.tlog.is_empty() {
            return Err("[rekor_v2] tlog must list at least one endpoint".into());
        }
        if r.logs.is_empty() {
            return Err("[rekor_v2] needs at least one [[rekor_v2.logs]]".into());
        }
        if r.max_body_bytes < 1024 {
            return Err("[rekor_v2] max_body_bytes must be at least 1024".into());
        }
        let mut prefixes = std::collections::BTreeSet::new();
        let mut trees = std::collections::BTreeSet::new();
        for l in &r.logs {
            let scheme = l.url.split_once("://").map(|(s, _)| s);
            if !matches!(scheme, Some("http" | "https")) {
                return Err(format!(
                    "[[rekor_v2.logs]] url {:?} must start with https:// (or http:// on loopback)",
                    l.url
                ));
            }
            let o = l.origin();
            if o.is_empty()
                || o.starts_with('/')
                || o.chars().any(|c| c.is_whitespace() || c == '?' || c == '#')
            {
                return Err(format!(
                    "[[rekor_v2.logs]] url {:?}: a host[:port][/path] without spaces, query or fragment",
                    l.url
                ));
            }
            let p = l.path_prefix();
            if p.split('/').skip(1).any(|seg| {
                seg.is_empty()
                    || matches!(
                        seg,
                        "api" | "checkpoint" | "tile" | "healthz" | "readyz" | "metrics"
                    )
            }) {
                return Err(format!(
                    "[[rekor_v2.logs]] url {:?}: its path may not have empty segments or use a name the service routes (api, checkpoint, tile, healthz, readyz, metrics)",
                    l.url
                ));
            }
            if !prefixes.insert(p.to_owned()) {
                return Err(format!(
                    "[[rekor_v2.logs]] two logs have the path {:?}: each log needs its own path (or its own listener)",
                    if p.is_empty() { "/" } else { p }
                ));
            }
            if !crate::tlog::valid_tree_name(&l.tree) {
                return Err(format!(
                    "[[rekor_v2.logs]] tree {:?} must be 1-64 characters of a-z, 0-9 and '-'",
                    l.tree
                ));
            }
            if !trees.insert(l.tree.clone()) {
                return Err(format!(
                    "[[rekor_v2.logs]] tree {:?} is listed twice",
                    l.tree
                ));
            }
        }
        crate::http::check_listen(&r.listen, r.tls.as_ref())
            .map_err(|e| format!("[rekor_v2] listen: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(url: &str) -> RekorV2LogConfig {
        RekorV2LogConfig {
            url: url.into(),
            tree: "t".into(),
            public_key_file: "k.pem".into(),
        }
    }

    #[test]
    fn origin_and_prefix_come_from_the_url() {
        let l = log("https://log2026-1.rekor.example.org/");
        assert_eq!(l.origin(), "log2026-1.rekor.example.org");
        assert_eq!(l.path_prefix(), "");
        let l = log("http://127.0.0.1:3004/shard/2026");
        assert_eq!(l.origin(), "127.0.0.1:3004/shard/2026");
        assert_eq!(l.path_prefix(), "/shard/2026");
    }
}
