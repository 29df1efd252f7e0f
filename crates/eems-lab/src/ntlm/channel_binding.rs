//! Channel binding (RFC 5929 tls-server-end-point) as NTLM carries it.

use super::md5;
use eems_core::channel_binding::tls_server_end_point;

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
