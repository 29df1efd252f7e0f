//! Channel binding of an HTTPS connection (RFC 5929 `tls-server-end-point`): what a Kerberos
//! AP-REQ carries as the application data of its GSS channel bindings, and what NTLM hashes
//! into MsvAvChannelBindings, so that a ticket taken over one TLS connection cannot be
//! replayed on another (Exchange's and WinRM's Extended Protection). One implementation for
//! the scanner (initiator) and the lab (acceptor).

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
use x509_cert::der::Decode;
use x509_cert::der::oid::{ObjectIdentifier, db::rfc5912 as alg};

/// Not in the OID database, which names only the SHA-2 variants of ECDSA.
const ECDSA_WITH_SHA_1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.1");

/// `tls-server-end-point:` and the hash of the DER certificate the server presented, with
/// the certificate's own signature hash (MD5 and SHA-1 upgraded to SHA-256, RFC 5929 §4.1).
/// `None` when RFC 5929 defines no hash (Ed25519, RSA-PSS) or the DER does not parse.
pub fn tls_server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    let cert = x509_cert::Certificate::from_der(cert_der).ok()?;
    let digest: Vec<u8> = match cert.signature_algorithm().oid {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_binding_for_what_is_not_a_certificate() {
        assert_eq!(tls_server_end_point(b"\x30\x03\x02\x01\x00"), None);
        assert_eq!(tls_server_end_point(&[]), None);
    }
}
