//! Writing DER by hand (X.690 §8.1): one tag-length-value, for the few places that assemble
//! DER byte for byte rather than through the der crate (canonical SubjectPublicKeyInfo in
//! src/pki/signature/key.rs, the TBSCertificate surgery in src/pki/ct.rs).

/// DER tag-length-value (definite, minimal length).
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}
