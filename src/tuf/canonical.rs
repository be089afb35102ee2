//! Canonical JSON, the byte form TUF signs: OLPC canonical JSON as securesystemslib,
//! python-tuf, tuf-js and go-tuf compute it before they verify a signature.
//!
//! The rules (<http://wiki.laptop.org/go/Canonical_JSON>): object keys sorted, no whitespace,
//! integers only (no floats), and in strings only `\` and `"` are escaped; every other
//! character, newlines and non-ASCII included, is written as its raw UTF-8 bytes. That makes
//! the output *not* JSON in general (a PEM public key puts raw newlines inside a string), which
//! is why it is only ever signed and hashed, never written to a file: the files clients fetch
//! are ordinary JSON, and each client re-derives these bytes from what it parsed.
//!
//! Keys are sorted by their UTF-8 bytes, which orders strings the way Python (by code point) and
//! JavaScript (by UTF-16 unit, for the ASCII keys TUF uses) do.

use serde_json::Value;

/// A value canonical JSON cannot represent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// Canonical JSON has no floating-point numbers (`1.5`, `1e3`, or `1.0` as parsed).
    #[error("canonical JSON has no floating-point numbers (found {0})")]
    Float(String),
}

/// The canonical JSON bytes of `value`.
pub fn encode(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::new();
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                out.extend_from_slice(n.to_string().as_bytes());
            } else {
                return Err(CanonicalError::Float(n.to_string()));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sorted here rather than trusting the map's order: serde_json keeps insertion order
            // when any crate in the build enables its `preserve_order` feature.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write(v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for b in s.bytes() {
        if b == b'\\' || b == b'"' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enc(v: Value) -> String {
        String::from_utf8(encode(&v).expect("encode")).expect("utf-8")
    }

    #[test]
    fn the_securesystemslib_examples() {
        // The doctests of securesystemslib's encode_canonical.
        assert_eq!(enc(json!("")), r#""""#);
        assert_eq!(enc(json!([1, 2, 3])), "[1,2,3]");
        assert_eq!(enc(json!([])), "[]");
        assert_eq!(enc(json!({"A": [99]})), r#"{"A":[99]}"#);
        assert_eq!(enc(json!({"x": 3, "y": 2})), r#"{"x":3,"y":2}"#);
    }

    #[test]
    fn keys_are_sorted_at_every_depth_and_nothing_is_spaced() {
        let v = json!({"b": {"z": true, "a": null}, "a": [false, {"d": -1, "c": 18446744073709551615u64}]});
        assert_eq!(
            enc(v),
            r#"{"a":[false,{"c":18446744073709551615,"d":-1}],"b":{"a":null,"z":true}}"#
        );
        // Byte order: upper case before lower case, "_type" after upper-case keys.
        assert_eq!(
            enc(json!({"b": 1, "_type": 2, "B": 3, "a": 4})),
            r#"{"B":3,"_type":2,"a":4,"b":1}"#
        );
    }

    #[test]
    fn only_backslash_and_quote_are_escaped() {
        let pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n";
        let out = encode(&json!({"public": pem})).expect("encode");
        let mut want = b"{\"public\":\"".to_vec();
        want.extend_from_slice(pem.as_bytes()); // raw newlines, no \n escapes
        want.extend_from_slice(b"\"}");
        assert_eq!(out, want);
        assert_eq!(enc(json!("a\"b\\c")), r#""a\"b\\c""#);
        // Control characters and non-ASCII are raw bytes too.
        assert_eq!(
            encode(&json!("\t\u{1}é")).expect("e"),
            "\"\t\u{1}é\"".as_bytes()
        );
    }

    #[test]
    fn floats_are_refused() {
        for v in [json!(1.5), json!({"a": [1e3]}), json!(1.0)] {
            assert!(matches!(encode(&v), Err(CanonicalError::Float(_))), "{v}");
        }
        let parsed: Value = serde_json::from_str("2.0").expect("json");
        assert!(encode(&parsed).is_err(), "a parsed 2.0 is a float");
    }
}
