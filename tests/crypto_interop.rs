//! Our RSA signatures against an independent implementation, the `openssl` CLI: a signature we
//! make verifies with `openssl dgst -sha256 -verify`, and one openssl makes verifies with
//! [`PublicKey::verify`]. This is what bunq's server (and its SDKs) do on the other side.

// Helpers outside #[test] functions panic to fail the test, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bunq_ipsync::bunq::{PrivateKey, PublicKey};

const BODY: &[u8] = b"{\"ip\":\"5.6.7.8\",\"status\":\"ACTIVE\"}";

fn openssl(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI must be installed to run the interop tests")
}

/// `openssl dgst -sha256 -verify` of our signature over [`BODY`] (made with a new key) against
/// `body_on_disk`, in a temp dir holding the public key, the body and the signature.
fn openssl_verify_our_signature(body_on_disk: &[u8]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate().unwrap();
    std::fs::write(dir.path().join("pub.pem"), key.public_key().to_pem()).unwrap();
    std::fs::write(dir.path().join("body"), body_on_disk).unwrap();
    let signature = STANDARD.decode(key.sign(BODY)).unwrap();
    std::fs::write(dir.path().join("sig.bin"), &signature).unwrap();
    let args = "dgst -sha256 -verify pub.pem -signature sig.bin body";
    openssl(&args.split(' ').collect::<Vec<_>>(), dir.path())
}

#[test]
fn our_signature_verifies_with_openssl() {
    let output = openssl_verify_our_signature(BODY);
    assert!(
        output.status.success(),
        "openssl rejected our signature: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn openssl_rejects_our_signature_over_other_bytes() {
    let output = openssl_verify_our_signature(b"{\"ip\":\"6.6.6.6\",\"status\":\"ACTIVE\"}");
    assert!(!output.status.success());
}

#[test]
fn openssl_signature_verifies_with_our_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate().unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        key.to_pkcs8_pem().unwrap().as_bytes(),
    )
    .unwrap();
    std::fs::write(dir.path().join("body"), BODY).unwrap();

    let output = openssl(
        &[
            "dgst", "-sha256", "-sign", "key.pem", "-out", "sig.bin", "body",
        ],
        dir.path(),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let signature = STANDARD.encode(std::fs::read(dir.path().join("sig.bin")).unwrap());

    assert_eq!(key.public_key().verify(BODY, &signature), Ok(()));
    assert!(key.public_key().verify(b"other", &signature).is_err());
}

#[test]
fn openssl_generated_key_and_public_pem_work_with_our_types() {
    // A key pair made entirely by openssl (as another SDK or bunq itself would) loads, and a
    // signature by our code with it verifies with openssl's public PEM.
    let dir = tempfile::tempdir().unwrap();
    let generated = openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "key.pem",
        ],
        dir.path(),
    );
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let public = openssl(
        &["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"],
        dir.path(),
    );
    assert!(public.status.success());

    let private_pem = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
    let public_pem = std::fs::read_to_string(dir.path().join("pub.pem")).unwrap();
    let key = PrivateKey::from_pkcs8_pem(&private_pem).unwrap();
    let theirs = PublicKey::from_pem(&public_pem).unwrap();
    assert_eq!(key.public_key(), theirs);
    assert_eq!(theirs.verify(BODY, &key.sign(BODY)), Ok(()));
}
