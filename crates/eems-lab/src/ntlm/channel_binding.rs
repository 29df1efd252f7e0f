//! Channel binding (RFC 5929 tls-server-end-point).

use super::md5;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
use x509_cert::der::Decode;
use x509_cert::der::oid::{ObjectIdentifier, db::rfc5912 as alg};

/// Not in the OID database, which names only the SHA-2 variants of ECDSA.
const ECDSA_WITH_SHA_1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.1");

/// MD5 of the `gss_channel_bindings_struct` a client puts in MsvAvChannelBindings for this
/// certificate, or `None` when no hash applies (Ed25519, RSA-PSS, unparsable DER).
pub fn channel_binding_hash(cert_der: &[u8]) -> Option<[u8; 16]> {
    let app = tls_server_end_point(cert_der)?;
    let zero = 0u32.to_le_bytes();
    Some(md5(&[
        &zero,
        &zero,
        &zero,
        &zero,
        &(app.len() as u32).to_le_bytes(),
        &app,
    ]))
}

/// RFC 5929 `tls-server-end-point` channel-binding data of a certificate: the application
/// data of the GSS channel bindings, which a Kerberos AP-REQ over HTTPS carries (and whose
/// MD5 in a struct NTLM carries). `None` when no hash applies.
pub fn tls_server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    let cert = x509_cert::Certificate::from_der(cert_der).ok()?;
    let digest: Vec<u8> = match cert.signature_algorithm().oid {
        // MD5 and SHA-1 are upgraded to SHA-256 by RFC 5929 §4.1.
        alg::MD_5_WITH_RSA_ENCRYPTION
        | alg::SHA_1_WITH_RSA_ENCRYPTION
        | ECDSA_WITH_SHA_1
        | alg::SHA_256_WITH_RSA_ENCRYPTION
        | alg::ECDSA_WITH_SHA_256 => Sha256::digest(cert_der).to_vec(),
        alg::SHA_224_WITH_RSA_ENCRYPTION | alg::ECDSA_WITH_SHA_224 => {
            Sha224::digest(cert_der).to_vec()
        }
        alg::SHA_384_WITH_RSA_ENCRYPTION | alg::ECDSA_WITH_SHA_384 => {
            Sha384::digest(cert_der).to_vec()
        }
        alg::SHA_512_WITH_RSA_ENCRYPTION | alg::ECDSA_WITH_SHA_512 => {
            Sha512::digest(cert_der).to_vec()
        }
        _ => return None,
    };
    let mut app = b"tls-server-end-point:".to_vec();
    app.extend_from_slice(&digest);
    Some(app)
}
