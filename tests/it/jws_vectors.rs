//! Wycheproof signature vectors through the exact primitive that verifies our JWTs
//! (`jsonwebtoken::crypto::verify` with the aws-lc provider): RS256 = RSASSA-PKCS1-v1_5 with SHA-256
//! on 2048-bit keys, ES256 = ECDSA P-256 SHA-256 with IEEE P1363 (r || s) signatures, as JWS encodes them.
//!
//! Wycheproof's `json_web_signature_test.json` itself is not shipped by any package registry we can
//! install from (the `wycheproof` crate carries the primitive-level files only), so its JWS-level cases
//! (`alg` confusion, `none`, key-type mismatch, foreign `jku`/`jwk`) are covered by tests/it/auth.rs
//! against our verifier, and the signature-level cases by the vectors here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use wycheproof::TestResult;

/// Runs one vector; `Acceptable` vectors may go either way, so only valid/invalid are counted.
fn check(key: &DecodingKey, alg: Algorithm, msg: &[u8], sig: &[u8], result: TestResult, id: usize) -> (usize, usize) {
    let verified = jsonwebtoken::crypto::verify(&URL_SAFE_NO_PAD.encode(sig), msg, key, alg).unwrap_or(false);
    match result {
        TestResult::Valid => {
            assert!(verified, "tcId {id}: a valid signature was rejected");
            (1, 0)
        }
        TestResult::Invalid => {
            assert!(!verified, "tcId {id}: an invalid signature was accepted");
            (0, 1)
        }
        TestResult::Acceptable => (0, 0),
    }
}

#[test]
fn wycheproof_rsa_pkcs1_2048_sha256_vectors_verify_as_rs256() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let set = TestSet::load(TestName::Rsa2048Sha256).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for group in &set.test_groups {
        let key = DecodingKey::from_rsa_pem(group.pem.as_bytes()).unwrap();
        for t in &group.tests {
            let (v, i) = check(&key, Algorithm::RS256, &t.msg, &t.sig, t.result, t.tc_id);
            valid += v;
            invalid += i;
        }
    }
    assert!(valid >= 5 && invalid >= 50, "checked {valid} valid and {invalid} invalid vectors");
}

#[test]
fn wycheproof_ecdsa_p256_sha256_p1363_vectors_verify_as_es256() {
    use wycheproof::ecdsa::{TestName, TestSet};
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for group in &set.test_groups {
        let key = DecodingKey::from_ec_pem(group.pem.as_bytes()).unwrap();
        for t in &group.tests {
            let (v, i) = check(&key, Algorithm::ES256, &t.msg, &t.sig, t.result, t.tc_id);
            valid += v;
            invalid += i;
        }
    }
    assert!(valid >= 50 && invalid >= 50, "checked {valid} valid and {invalid} invalid vectors");
}
