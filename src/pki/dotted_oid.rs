//! An object identifier written as dotted decimal text (a TSA policy in a config or a JSON
//! timestamp request), parsed without trusting `const_oid` with an unbounded arc: its parser
//! multiplies an arc's digits up unchecked (const-oid 0.9 `parser.rs`), a panic with overflow
//! checks on and a silently wrong OID without. So each arc is checked to fit the `u32` an arc is
//! first; only then does `const_oid`, which enforces its own rules (a first arc of 0 to 2, a
//! second of at most 39, the length limit), see the text. Found by AFL on the `tsa-json` target
//! (tests/fuzz/regressions/tsa-json/).

use const_oid::ObjectIdentifier;

/// `text` as an OID, or `None` if it is not one `const_oid` can hold.
pub fn parse(text: &str) -> Option<ObjectIdentifier> {
    let mut arcs = 0;
    for arc in text.split('.') {
        if arc.is_empty() || !arc.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        arc.parse::<u32>().ok()?;
        arcs += 1;
    }
    if arcs < 2 {
        return None;
    }
    ObjectIdentifier::new(text).ok()
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn dotted_oids_parse_and_oversized_arcs_are_refused_without_a_panic() {
        assert_eq!(
            parse("1.3.6.1.4.1.57264.2").map(|o| o.to_string()),
            Some("1.3.6.1.4.1.57264.2".into())
        );
        assert!(parse("2.5.4.3").is_some());
        for bad in [
            "1.3.6.1111111111111111111.4.1.57264.2",
            "1.333333333333333333333333333333.6.1",
            "1.3.6.4294967296",
            "2.4294967216",
            "2.999.3",
            "3.1",
            "1",
            "",
            "1..2",
            "1.2.",
            "+1.2",
            "1.-2",
            "1.2 ",
            "1.٣",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}
