//! RFC 7512 `pkcs11:` URIs, the way keys are named in sigvault configs.
//!
//! Only the path attributes that identify a key are accepted: `token`, `object`, `id`, `type`,
//! `manufacturer`, `serial`, `model`. Query attributes are refused — in particular `pin-value`,
//! because PINs are never inline; the module path comes from the `[hsm]` section.

use std::fmt;

/// A parsed `pkcs11:` key reference.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pkcs11Uri {
    /// `token=`: the token label (required by sigvault: slots are renumbered, labels are not).
    pub token: String,
    /// `object=`: the key's `CKA_LABEL`.
    pub object: Option<String>,
    /// `id=`: the key's `CKA_ID` bytes.
    pub id: Option<Vec<u8>>,
    /// `type=`: only `private` (or absent) makes sense for a signing key.
    pub object_type: Option<String>,
    /// `manufacturer=` of the token.
    pub manufacturer: Option<String>,
    /// `serial=` of the token.
    pub serial: Option<String>,
    /// `model=` of the token.
    pub model: Option<String>,
}

/// Why a URI was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    #[error("not a pkcs11: URI (it must start with \"pkcs11:\")")]
    Scheme,
    #[error(
        "pkcs11: URI query attributes are not accepted ({0}); PINs come from a pin file or credential, the module from [hsm] module"
    )]
    Query(String),
    #[error("pkcs11: URI attribute {0:?} has no '='")]
    NoEquals(String),
    #[error("pkcs11: URI attribute {0:?} is not supported (use token, object, id, type)")]
    UnknownAttribute(String),
    #[error("pkcs11: URI attribute {0:?} appears twice")]
    Duplicate(String),
    #[error("pkcs11: URI has a bad percent-escape in {0:?}")]
    BadEscape(String),
    #[error("pkcs11: URI must name the token (token=<label>)")]
    NoToken,
    #[error("pkcs11: URI must name the key by object=<label> and/or id=<bytes>")]
    NoObject,
    #[error("pkcs11: URI type={0:?} cannot name a signing key (use type=private or omit it)")]
    BadType(String),
}

fn percent_decode(s: &str) -> Result<Vec<u8>, UriError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .ok_or_else(|| UriError::BadEscape(s.into()))?;
            let hex = std::str::from_utf8(hex).map_err(|_| UriError::BadEscape(s.into()))?;
            let v = u8::from_str_radix(hex, 16).map_err(|_| UriError::BadEscape(s.into()))?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn decode_text(s: &str) -> Result<String, UriError> {
    String::from_utf8(percent_decode(s)?).map_err(|_| UriError::BadEscape(s.into()))
}

/// Percent-encode everything outside RFC 7512's unreserved set plus a few safe characters.
fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &c in bytes {
        if c.is_ascii_alphanumeric() || b"-._~:[]@!$'()*+,=&".contains(&c) {
            s.push(c as char);
        } else {
            s.push_str(&format!("%{c:02X}"));
        }
    }
    s
}

impl std::str::FromStr for Pkcs11Uri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, UriError> {
        let rest = s.strip_prefix("pkcs11:").ok_or(UriError::Scheme)?;
        if let Some((_, q)) = rest.split_once('?') {
            return Err(UriError::Query(q.into()));
        }
        let mut uri = Pkcs11Uri::default();
        let mut token = None;
        for part in rest.split(';').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| UriError::NoEquals(part.into()))?;
            let dup = || UriError::Duplicate(k.into());
            match k {
                "token" => {
                    if token.replace(decode_text(v)?).is_some() {
                        return Err(dup());
                    }
                }
                "object" => {
                    if uri.object.replace(decode_text(v)?).is_some() {
                        return Err(dup());
                    }
                }
                "id" => {
                    if uri.id.replace(percent_decode(v)?).is_some() {
                        return Err(dup());
                    }
                }
                "type" => {
                    let t = decode_text(v)?;
                    if t != "private" {
                        return Err(UriError::BadType(t));
                    }
                    if uri.object_type.replace(t).is_some() {
                        return Err(dup());
                    }
                }
                "manufacturer" => {
                    if uri.manufacturer.replace(decode_text(v)?).is_some() {
                        return Err(dup());
                    }
                }
                "serial" => {
                    if uri.serial.replace(decode_text(v)?).is_some() {
                        return Err(dup());
                    }
                }
                "model" => {
                    if uri.model.replace(decode_text(v)?).is_some() {
                        return Err(dup());
                    }
                }
                other => return Err(UriError::UnknownAttribute(other.into())),
            }
        }
        uri.token = token.filter(|t| !t.is_empty()).ok_or(UriError::NoToken)?;
        if uri.object.as_deref().is_none_or(str::is_empty)
            && uri.id.as_ref().is_none_or(Vec::is_empty)
        {
            return Err(UriError::NoObject);
        }
        Ok(uri)
    }
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pkcs11:token={}", encode(self.token.as_bytes()))?;
        for (k, v) in [
            ("manufacturer", &self.manufacturer),
            ("serial", &self.serial),
            ("model", &self.model),
            ("object", &self.object),
        ] {
            if let Some(v) = v {
                write!(f, ";{k}={}", encode(v.as_bytes()))?;
            }
        }
        if let Some(id) = &self.id {
            write!(f, ";id=")?;
            for b in id {
                write!(f, "%{b:02X}")?;
            }
        }
        if let Some(t) = &self.object_type {
            write!(f, ";type={t}")?;
        }
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for Pkcs11Uri {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc7512_examples() {
        let u: Pkcs11Uri =
            "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;object=my-key;type=private"
                .parse()
                .expect("parse");
        assert_eq!(u.token, "The Software PKCS#11 Softtoken");
        assert_eq!(u.object.as_deref(), Some("my-key"));
        let u: Pkcs11Uri = "pkcs11:token=t;id=%01%02%ff".parse().expect("parse");
        assert_eq!(u.id, Some(vec![1, 2, 0xff]));
        let round: Pkcs11Uri = u.to_string().parse().expect("roundtrip");
        assert_eq!(round, u);
    }

    #[test]
    fn refuses_what_it_must() {
        use UriError::*;
        let e = |s: &str| s.parse::<Pkcs11Uri>().expect_err(s);
        assert_eq!(e("file:foo"), Scheme);
        assert!(matches!(
            e("pkcs11:token=t;object=k?pin-value=1234"),
            Query(_)
        ));
        assert_eq!(e("pkcs11:object=k"), NoToken);
        assert_eq!(e("pkcs11:token=t"), NoObject);
        assert!(matches!(
            e("pkcs11:token=t;object=k;slot-id=3"),
            UnknownAttribute(_)
        ));
        assert!(matches!(e("pkcs11:token=t;token=u;object=k"), Duplicate(_)));
        assert!(matches!(e("pkcs11:token=t;object=%zz"), BadEscape(_)));
        assert!(matches!(e("pkcs11:token=t;object=k;type=cert"), BadType(_)));
    }
}
