//! The lab's PKI, made fresh at every start: one CA (ECDSA P-256 / SHA-256, what an AD CS
//! issuing CA commonly hands out) and one leaf per host whose SAN carries every name a client
//! may use for it (short name, FQDN, IP address: rustls ignores the CN).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The CA that signs every host certificate of one lab run.
pub struct LabPki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

/// What one HTTPS listener serves.
pub struct HostTls {
    pub config: Arc<rustls::ServerConfig>,
    pub cert_der: Vec<u8>,
    /// The MsvAvChannelBindings value a client computes for this certificate.
    pub channel_binding: Option<[u8; 16]>,
}

impl LabPki {
    pub fn new(org: &str) -> anyhow::Result<LabPki> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{org} Lab Root CA"));
        let cert = params.self_signed(&key)?;
        Ok(LabPki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Issues the leaf of one host and builds its server configuration.
    pub fn host(&self, name: &str, fqdn: &str, ip: Ipv4Addr) -> anyhow::Result<HostTls> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut sans = vec![name.to_string(), fqdn.to_string(), ip.to_string()];
        sans.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        let mut params = CertificateParams::new(sans).map_err(|e| {
            anyhow::anyhow!("host {name}: cannot put its names in a certificate: {e}")
        })?;
        params.distinguished_name.push(DnType::CommonName, fqdn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_der = cert.der().to_vec();
        let config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )?;
        Ok(HostTls {
            config: Arc::new(config),
            channel_binding: crate::ntlm::channel_binding_hash(&cert_der),
            cert_der,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_is_bindable_and_ca_is_pem() {
        let pki = LabPki::new("Contoso").unwrap();
        assert!(pki.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let h = pki
            .host("EX01", "ex01.lab.local", Ipv4Addr::new(127, 0, 77, 1))
            .unwrap();
        assert!(h.channel_binding.is_some());
    }
}
