//! The timestamp authority's signing certificate (RFC 3161 §2.3), issued by the root CA at the
//! ceremony.
//!
//! Profile: an end-entity certificate (BasicConstraints CA:FALSE, critical), KeyUsage
//! digitalSignature (critical), ExtendedKeyUsage id-kp-timeStamping **marked critical and the
//! only purpose** (RFC 3161 §2.3 requires exactly that, and Sigstore's verifiers refuse a TSA
//! certificate with any other EKU), SKI and AKI. Clients get the chain (this certificate, root)
//! from the trusted root's `timestampAuthorities`.

use der::Decode;
use der::asn1::OctetString;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectKeyIdentifier,
};
use x509_cert::name::Name;
use x509_cert::time::Validity;

use super::{PkiError, ext_with, key_identifier, random_serial, sign_tbs};
use crate::signer::Signer;

/// Build the TSA certificate for `subject_spki_der`, issued by `issuer` and signed with the
/// issuer's key in `issuer_signer`.
pub fn build_tsa_certificate(
    subject: Name,
    subject_spki_der: &[u8],
    validity: Validity,
    issuer: &Certificate,
    issuer_signer: &dyn Signer,
) -> Result<Certificate, PkiError> {
    if !super::cert_matches_key(issuer, issuer_signer.public_key_der()) {
        return Err(PkiError::Validity(
            "the issuer's key in the HSM is not the key of the issuer certificate".into(),
        ));
    }
    let issuer_validity = &issuer.tbs_certificate.validity;
    if validity.not_after.to_unix_duration() > issuer_validity.not_after.to_unix_duration() {
        return Err(PkiError::Validity(
            "the TSA certificate would outlive the root that issues it".into(),
        ));
    }
    let spki = SubjectPublicKeyInfoOwned::from_der(subject_spki_der)?;
    let ski = key_identifier(&spki);
    let aki = key_identifier(&issuer.tbs_certificate.subject_public_key_info);
    let sig_alg = AlgorithmIdentifierOwned {
        oid: issuer_signer.algorithm().x509_oid(),
        parameters: None,
    };
    let exts: Vec<Extension> = vec![
        ext_with(&KeyUsage(KeyUsages::DigitalSignature.into()), true)?,
        ext_with(
            &BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
            true,
        )?,
        ext_with(
            &ExtendedKeyUsage(vec![const_oid::db::rfc5280::ID_KP_TIME_STAMPING]),
            true,
        )?,
        ext_with(&SubjectKeyIdentifier(OctetString::new(ski)?), false)?,
        ext_with(
            &AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(aki)?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
            false,
        )?,
    ];
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: random_serial()?,
        signature: sig_alg.clone(),
        issuer: issuer.tbs_certificate.subject.clone(),
        validity,
        subject,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(exts),
    };
    sign_tbs(tbs, sig_alg, issuer_signer)
}

/// Why a certificate cannot serve as a TSA signing certificate.
pub fn check_tsa_profile(cert: &Certificate) -> Result<(), String> {
    let tbs = &cert.tbs_certificate;
    match tbs.get::<ExtendedKeyUsage>() {
        Ok(Some((true, eku)))
            if eku.0.as_slice() == [const_oid::db::rfc5280::ID_KP_TIME_STAMPING] => {}
        Ok(Some((false, _))) => {
            return Err("its extended key usage is not marked critical (RFC 3161 §2.3)".into());
        }
        Ok(Some(_)) => {
            return Err(
                "its extended key usage must be id-kp-timeStamping and nothing else (RFC 3161 §2.3)"
                    .into(),
            );
        }
        Ok(None) => return Err("it has no extended key usage id-kp-timeStamping".into()),
        Err(e) => return Err(format!("its extended key usage does not parse: {e}")),
    }
    match tbs.get::<KeyUsage>() {
        Ok(Some((_, ku))) if ku.digital_signature() => {}
        Ok(_) => return Err("its key usage does not allow digitalSignature".into()),
        Err(e) => return Err(format!("its key usage does not parse: {e}")),
    }
    if let Ok(Some((_, bc))) = tbs.get::<BasicConstraints>() {
        if bc.ca {
            return Err("it is a CA certificate; a TSA signs with an end-entity key".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CaKind, build_ca_certificate, parse_name, validity_from_now};
    use crate::signer::test_support::SoftP256;
    use std::time::Duration;

    #[test]
    fn the_tsa_certificate_has_the_rfc3161_profile_and_chains_to_its_root() {
        let root_key = SoftP256::random();
        let root = build_ca_certificate(
            CaKind::Root,
            parse_name("CN=root,O=t").expect("name"),
            root_key.public_key_der(),
            validity_from_now(Duration::from_secs(7200)).expect("v"),
            None,
            &root_key,
        )
        .expect("root");
        let tsa_key = SoftP256::random();
        let cert = build_tsa_certificate(
            parse_name("CN=tsa,O=t").expect("name"),
            tsa_key.public_key_der(),
            validity_from_now(Duration::from_secs(3600)).expect("v"),
            &root,
            &root_key,
        )
        .expect("tsa cert");
        check_tsa_profile(&cert).expect("profile");
        assert_eq!(cert.tbs_certificate.issuer, root.tbs_certificate.subject);
        assert!(crate::pki::cert_matches_key(
            &cert,
            tsa_key.public_key_der()
        ));
        // The root's key must sign it, and the certificate may not outlive the root.
        let other = SoftP256::random();
        let v = validity_from_now(Duration::from_secs(60)).expect("v");
        let n = parse_name("CN=tsa").expect("name");
        assert!(
            build_tsa_certificate(n.clone(), tsa_key.public_key_der(), v, &root, &other).is_err()
        );
        let long = validity_from_now(Duration::from_secs(9000)).expect("v");
        assert!(
            build_tsa_certificate(n, tsa_key.public_key_der(), long, &root, &root_key).is_err()
        );
        // A CA certificate is not a TSA certificate.
        assert!(check_tsa_profile(&root).is_err());
    }
}
