//! The lab's Kerberos acceptor (feature `kerberos`): what a Windows WinRM listener does with
//! `Authorization: Negotiate <SPNEGO or raw krb5 token>` or `Authorization: Kerberos <token>`,
//! with the keys of the realm's keytab ([`crate::kdc`]), through MIT's GSSAPI (libgssapi).
//!
//! Tickets are checked by the real library: the key, the target principal (a ticket for another
//! host's SPN fails like `KRB_AP_ERR_NOT_US`), clock skew, expiry, replay, channel bindings.
//! Message sealing follows MS-WSMV 2.2.9.1 the Windows way: an RFC 4121 wrap token whose
//! trailer is rotated into the security header (RRC 28, EC 0, a 60-byte header with AES),
//! framed by `eems_core::sealing` under the MIME protocol of the HTTP scheme that authenticated.
//!
//! The keytab is named per credential (`gss_acquire_cred_from`), never through `KRB5_KTNAME`:
//! the lab runs inside multi-threaded test processes, where changing the environment is unsound,
//! and several realms may be alive at once.

use std::ffi::CString;
use std::path::Path;

use libgssapi::context::{CtxFlags, SecurityContext, ServerCtx};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::error::{Error as GssError, MajorFlags};
use libgssapi::oid::GSS_MECH_KRB5;
use libgssapi::util::{GssIov, GssIovType};

use eems_core::sealing::{self, Protocol};

/// What an `Authorization` token is, from its first bytes, without parsing it: a host with NTLM
/// disabled refuses NTLMSSP tokens before any library sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Ntlm,
    /// GSS-API initial token with the SPNEGO OID (1.3.6.1.5.5.2).
    Spnego,
    /// GSS-API initial token with the Kerberos OID (1.2.840.113554.1.2.2): what winrm-rs sends.
    Kerberos,
    /// A SPNEGO continuation (`NegTokenResp`, context tag 0xa1) or anything else.
    Other,
}

const NTLMSSP: &[u8] = b"NTLMSSP\0";
const OID_SPNEGO: &[u8] = &[0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
const OID_KRB5: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02,
];

pub fn token_kind(token: &[u8]) -> TokenKind {
    if token.starts_with(NTLMSSP) {
        return TokenKind::Ntlm;
    }
    // [APPLICATION 0] with a short or long DER length, then the mechanism OID.
    if token.first() != Some(&0x60) {
        return TokenKind::Other;
    }
    let len_octets = match token.get(1) {
        Some(&l) if l < 0x80 => 0,
        Some(&l) => usize::from(l & 0x7f),
        None => return TokenKind::Other,
    };
    let oid_start = 2 + len_octets;
    let rest = token.get(oid_start..).unwrap_or_default();
    if rest.starts_with(OID_SPNEGO) {
        // A SPNEGO wrapper can carry NTLM: its inner token gives it away.
        if rest.windows(NTLMSSP.len()).any(|w| w == NTLMSSP) {
            TokenKind::Ntlm
        } else {
            TokenKind::Spnego
        }
    } else if rest.starts_with(OID_KRB5) {
        TokenKind::Kerberos
    } else {
        TokenKind::Other
    }
}

/// Why a Kerberos exchange or a sealed message failed. Texts carry the library's words (they
/// name the cause: wrong principal, skew, expiry, integrity), never key material.
#[derive(Debug, thiserror::Error)]
pub enum KerberosFailure {
    #[error("keytab {path}: {source}")]
    Keytab { path: String, source: GssError },
    #[error("Kerberos token refused: {0}")]
    Rejected(GssError),
    #[error("ticket is for {got}, not for this host ({want})")]
    WrongTarget { got: String, want: String },
    #[error("the context negotiated a mechanism other than Kerberos")]
    NotKerberos,
    #[error("the context is not established")]
    NotEstablished,
    #[error("the client did not ask for confidentiality and integrity, so nothing can be sealed")]
    NoConfidentiality,
    #[error("malformed sealed body: {0}")]
    BadFraming(&'static str),
    #[error("sealed body failed to unwrap: {0}")]
    Unwrap(GssError),
    #[error("sealed body is not a sealed wrap token from the client")]
    NotSealed,
    #[error("unsealed length {got} differs from OriginalContent Length {want}")]
    LengthMismatch { got: usize, want: usize },
    #[error("wrap failed: {0}")]
    Wrap(GssError),
}

/// The acceptor credential of one host: the keys of `HTTP/<fqdn>@REALM` from the keytab.
/// Cheap to clone; every connection of the host starts its context from it.
#[derive(Clone)]
pub struct Acceptor {
    cred: Cred,
    spn: String,
}

impl Acceptor {
    /// Credentials from `keytab` for the service principal `spn` (`HTTP/<fqdn>@REALM`).
    pub fn from_keytab(keytab: &Path, spn: &str) -> Result<Acceptor, KerberosFailure> {
        let kt = format!("FILE:{}", keytab.display());
        let cred = acquire_from(&[("keytab", &kt)], CredUsage::Accept).map_err(|source| {
            KerberosFailure::Keytab {
                path: keytab.display().to_string(),
                source,
            }
        })?;
        Ok(Acceptor {
            cred,
            spn: spn.to_string(),
        })
    }

    pub fn spn(&self) -> &str {
        &self.spn
    }

    /// A fresh context for one connection.
    pub fn context(&self) -> AcceptContext {
        AcceptContext {
            ctx: ServerCtx::new(Some(self.cred.clone())),
            spn: self.spn.clone(),
            done: false,
        }
    }
}

/// Credentials from an MIT credential store (`keytab`, `ccache`, `client_keytab`, `rcache`),
/// named explicitly instead of through the process environment.
pub fn acquire_from(store: &[(&str, &str)], usage: CredUsage) -> Result<Cred, GssError> {
    use libgssapi_sys as sys;
    let call_error = || GssError {
        major: MajorFlags::GSS_S_CALL_INACCESSIBLE_READ,
        minor: 0,
    };
    let owned: Vec<(CString, CString)> = store
        .iter()
        .map(|(k, v)| Ok((CString::new(*k)?, CString::new(*v)?)))
        .collect::<Result<_, std::ffi::NulError>>()
        .map_err(|_| call_error())?;
    let mut elements: Vec<sys::gss_key_value_element_desc> = owned
        .iter()
        .map(|(k, v)| sys::gss_key_value_element_desc {
            key: k.as_ptr(),
            value: v.as_ptr(),
        })
        .collect();
    let set = sys::gss_key_value_set_desc {
        count: u32::try_from(elements.len()).map_err(|_| call_error())?,
        elements: elements.as_mut_ptr(),
    };
    let usage = match usage {
        CredUsage::Accept => sys::GSS_C_ACCEPT,
        CredUsage::Initiate => sys::GSS_C_INITIATE,
        CredUsage::Both => sys::GSS_C_BOTH,
    };
    let mut minor: sys::OM_uint32 = 0;
    let mut cred: sys::gss_cred_id_t = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call (`owned` and `elements` outlive it); a null
    // name, mechanism set and outputs mean "default" / "not wanted" in RFC 5588's extension.
    // On success the credential is ours to release, which `Cred::from_c` takes over.
    let major = unsafe {
        sys::gss_acquire_cred_from(
            &mut minor,
            std::ptr::null_mut(),
            sys::_GSS_C_INDEFINITE,
            std::ptr::null_mut(),
            usage as sys::gss_cred_usage_t,
            &set,
            &mut cred,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if major == sys::GSS_S_COMPLETE {
        // SAFETY: a credential the library just returned, released exactly once by `Cred`.
        Ok(unsafe { Cred::from_c(cred) })
    } else {
        Err(GssError {
            major: MajorFlags::from_bits_retain(major),
            minor,
        })
    }
}

/// One connection's security context: established by [`Self::step`], then it seals and
/// unseals that connection's bodies.
pub struct AcceptContext {
    ctx: ServerCtx,
    spn: String,
    done: bool,
}

impl AcceptContext {
    /// Feeds the client's token (Kerberos or SPNEGO; with `channel_bindings`, the RFC 5929
    /// application data over HTTPS). Returns the token to send back (the AP-REP when the
    /// client asked for mutual authentication, or a SPNEGO continuation). The context is
    /// established when [`Self::is_established`] says so.
    pub fn step(
        &mut self,
        token: &[u8],
        channel_bindings: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, KerberosFailure> {
        let out = self
            .ctx
            .step(token, channel_bindings)
            .map_err(KerberosFailure::Rejected)?
            .map(|b| b.to_vec());
        if self.ctx.is_complete() {
            if self.ctx.mechanism().ok() != Some(GSS_MECH_KRB5) {
                return Err(KerberosFailure::NotKerberos);
            }
            let target = self
                .ctx
                .target_name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            if !target.eq_ignore_ascii_case(&self.spn) {
                return Err(KerberosFailure::WrongTarget {
                    got: target,
                    want: self.spn.clone(),
                });
            }
            self.done = true;
        }
        Ok(out)
    }

    pub fn is_established(&self) -> bool {
        self.done
    }

    /// The authenticated client, e.g. `administrator@LAB.LOCAL`.
    pub fn client_principal(&self) -> Option<String> {
        if !self.done {
            return None;
        }
        self.ctx.source_name().ok().map(|n| n.to_string())
    }

    /// Whether the client's token carried channel bindings that matched (MIT's
    /// `GSS_C_CHANNEL_BOUND_FLAG`): a token without any is accepted by the library, so a
    /// listener with `CbtHardeningLevel=Strict` must check this itself.
    pub fn channel_bound(&self) -> bool {
        const GSS_C_CHANNEL_BOUND_FLAG: u32 = 0x800;
        self.done
            && self
                .ctx
                .flags()
                .is_ok_and(|f| f.bits() & GSS_C_CHANNEL_BOUND_FLAG != 0)
    }

    fn check_sealing(&self) -> Result<(), KerberosFailure> {
        if !self.done {
            return Err(KerberosFailure::NotEstablished);
        }
        let flags = self.ctx.flags().unwrap_or(CtxFlags::empty());
        if !flags.contains(CtxFlags::GSS_C_CONF_FLAG | CtxFlags::GSS_C_INTEG_FLAG) {
            return Err(KerberosFailure::NoConfidentiality);
        }
        Ok(())
    }

    /// Unseals a `multipart/encrypted` request body sealed under `protocol`: the security
    /// header and the data form one RFC 4121 token, which the library unwraps (undoing the
    /// rotation); the plaintext must be as long as announced.
    pub fn unseal(&mut self, body: &[u8], protocol: Protocol) -> Result<Vec<u8>, KerberosFailure> {
        self.check_sealing()?;
        let frame = sealing::parse(body, protocol, |n| (16..=1024).contains(&n))
            .map_err(KerberosFailure::BadFraming)?;
        // Sent by the initiator (flag bit 0 clear), sealed (bit 1 set).
        match frame.header {
            [0x05, 0x04, flags, ..] if flags & 0x01 == 0 && flags & 0x02 != 0 => {}
            _ => return Err(KerberosFailure::NotSealed),
        }
        let mut token = Vec::with_capacity(frame.header.len() + frame.data.len());
        token.extend_from_slice(frame.header);
        token.extend_from_slice(frame.data);
        let plain = self
            .ctx
            .unwrap(&token)
            .map_err(KerberosFailure::Unwrap)?
            .to_vec();
        if plain.len() != frame.length {
            return Err(KerberosFailure::LengthMismatch {
                got: plain.len(),
                want: frame.length,
            });
        }
        Ok(plain)
    }

    /// Seals a response the way Windows does: `gss_wrap_iov` with header, data and padding
    /// but no trailer buffer, so MIT rotates the trailer into the header (RRC) exactly as SSPI
    /// lays it out, and the data part is the ciphertext alone.
    pub fn seal(
        &mut self,
        plaintext: &[u8],
        protocol: Protocol,
    ) -> Result<Vec<u8>, KerberosFailure> {
        self.check_sealing()?;
        let mut data = plaintext.to_vec();
        let (header, padding) = {
            let mut iov = [
                GssIov::new_alloc(GssIovType::Header),
                GssIov::new(GssIovType::Data, &mut data),
                GssIov::new_alloc(GssIovType::Padding),
            ];
            self.ctx
                .wrap_iov(true, &mut iov)
                .map_err(KerberosFailure::Wrap)?;
            (iov[0].to_vec(), iov[2].to_vec())
        };
        data.extend_from_slice(&padding);
        Ok(sealing::frame(protocol, data.len(), &header, &data))
    }
}

#[cfg(test)]
mod tests {
    //! Against the real KDC of [`crate::kdc`] and a real client context from the same
    //! library, its credentials from a ticket cache the MIT `kinit` filled. Ignored (visibly)
    //! when the MIT tools are missing.
    use super::*;
    use crate::kdc::{Realm, RealmSpec};
    use libgssapi::context::ClientCtx;
    use libgssapi::name::Name;
    use libgssapi::oid::{GSS_MECH_SPNEGO, GSS_NT_KRB5_PRINCIPAL, Oid};

    async fn realm() -> Realm {
        let fleet = crate::testkit::demo_fleet(62);
        Realm::start(RealmSpec::for_fleet(&fleet).unwrap())
            .await
            .unwrap()
    }

    /// A kinit'ed cache holding a service ticket for `spn`, so the client context needs no
    /// KDC lookup of its own (which would need KRB5_CONFIG in this process's environment).
    async fn client_cred(realm: &Realm, spn: &str) -> Cred {
        let cc = realm.dir().join("client.ccache");
        realm
            .kinit(&realm.user_principal(), &realm.spec().password, &cc, None)
            .await
            .unwrap();
        realm.kvno(spn, &cc).await.unwrap();
        acquire_from(
            &[("ccache", &format!("FILE:{}", cc.display()))],
            CredUsage::Initiate,
        )
        .unwrap()
    }

    fn client(cred: &Cred, spn: &str, mech: Oid<'static>) -> ClientCtx {
        let name = Name::new(spn.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).unwrap();
        ClientCtx::new(
            Some(cred.clone()),
            name,
            CtxFlags::GSS_C_MUTUAL_FLAG
                | CtxFlags::GSS_C_CONF_FLAG
                | CtxFlags::GSS_C_INTEG_FLAG
                | CtxFlags::GSS_C_SEQUENCE_FLAG,
            Some(mech),
        )
    }

    /// Runs the handshake: the client's first token, the acceptor's answer, the client's
    /// final step. Returns the token kind the client sent.
    fn handshake(c: &mut ClientCtx, s: &mut AcceptContext) -> TokenKind {
        let first = c.step(None, None).unwrap().unwrap().to_vec();
        let kind = token_kind(&first);
        let mut reply = s.step(&first, None).unwrap();
        while let Some(tok) = reply {
            match c.step(Some(&tok), None).unwrap() {
                Some(next) => reply = s.step(&next, None).unwrap(),
                None => reply = None,
            }
        }
        assert!(c.is_complete());
        assert!(s.is_established());
        kind
    }

    /// What a Windows-style client does to seal (as winrm-rs and pyspnego do with MIT):
    /// wrap_iov without a trailer buffer, header then ciphertext.
    fn client_seal(c: &mut ClientCtx, plain: &[u8], protocol: Protocol) -> Vec<u8> {
        let mut data = plain.to_vec();
        let header = {
            let mut iov = [
                GssIov::new_alloc(GssIovType::Header),
                GssIov::new(GssIovType::Data, &mut data),
                GssIov::new_alloc(GssIovType::Padding),
            ];
            c.wrap_iov(true, &mut iov).unwrap();
            iov[0].to_vec()
        };
        sealing::frame(protocol, data.len(), &header, &data)
    }

    #[tokio::test]
    #[cfg_attr(
        eems_no_kdc,
        ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
    )]
    async fn kerberos_and_spnego_tokens_authenticate_and_seal_both_ways_under_both_protocols() {
        let realm = realm().await;
        let host = realm.spec().hosts[0].clone();
        let spn = realm.service_principal(&host);
        let cred = client_cred(&realm, &spn).await;
        let acceptor = Acceptor::from_keytab(&realm.keytab(), &spn).unwrap();
        for (mech, kind) in [
            (GSS_MECH_KRB5, TokenKind::Kerberos),
            (GSS_MECH_SPNEGO, TokenKind::Spnego),
        ] {
            for protocol in [Protocol::Spnego, Protocol::Kerberos] {
                let mut c = client(&cred, &spn, mech);
                let mut s = acceptor.context();
                assert_eq!(handshake(&mut c, &mut s), kind);
                assert_eq!(
                    s.client_principal().as_deref(),
                    Some(realm.user_principal().as_str())
                );
                for i in 0..3 {
                    let req =
                        format!("<s:Envelope>request {i} --Encrypted Boundary--</s:Envelope>");
                    let sealed = client_seal(&mut c, req.as_bytes(), protocol);
                    assert_eq!(s.unseal(&sealed, protocol).unwrap(), req.as_bytes());
                    // The other protocol's name is refused: Windows answers it with 415.
                    let other = match protocol {
                        Protocol::Spnego => Protocol::Kerberos,
                        Protocol::Kerberos => Protocol::Spnego,
                    };
                    assert!(matches!(
                        s.unseal(&sealed, other),
                        Err(KerberosFailure::BadFraming(_))
                    ));

                    let resp = format!("<s:Envelope>response {i}</s:Envelope>");
                    let sealed = s.seal(resp.as_bytes(), protocol).unwrap();
                    let frame = sealing::parse(&sealed, protocol, |_| true).unwrap();
                    // Windows layout, which winrm-rs 2.0.1 checks: an acceptor's sealed wrap
                    // token (flags: sent by acceptor, sealed; MIT also sets AcceptorSubkey),
                    // EC 0, RRC 28, a 60-byte header, data exactly the plaintext length.
                    assert_eq!(&frame.header[..2], &[0x05, 0x04]);
                    assert_eq!(frame.header[2] & 0x03, 0x03, "flags {:#x}", frame.header[2]);
                    assert_eq!(&frame.header[4..6], &[0, 0], "EC");
                    assert_eq!(&frame.header[6..8], &[0, 28], "RRC");
                    assert_eq!(frame.header.len(), 60);
                    assert_eq!(frame.data.len(), resp.len());
                    let mut token = frame.header.to_vec();
                    token.extend_from_slice(frame.data);
                    assert_eq!(&*c.unwrap(&token).unwrap(), resp.as_bytes());
                }
                // A flipped ciphertext byte fails the integrity check.
                let mut sealed = client_seal(&mut c, b"<s:Envelope/>", protocol);
                let at = sealed.len() - "--Encrypted Boundary--\r\n".len() - 1;
                sealed[at] ^= 1;
                assert!(matches!(
                    s.unseal(&sealed, protocol),
                    Err(KerberosFailure::Unwrap(_))
                ));
            }
        }
    }

    #[tokio::test]
    #[cfg_attr(
        eems_no_kdc,
        ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
    )]
    async fn a_ticket_for_another_host_is_refused() {
        let realm = realm().await;
        let hosts = realm.spec().hosts.clone();
        let (ours, theirs) = (
            realm.service_principal(&hosts[0]),
            realm.service_principal(&hosts[1]),
        );
        let cred = client_cred(&realm, &theirs).await;
        let acceptor = Acceptor::from_keytab(&realm.keytab(), &ours).unwrap();
        let mut c = client(&cred, &theirs, GSS_MECH_KRB5);
        let first = c.step(None, None).unwrap().unwrap().to_vec();
        let err = acceptor.context().step(&first, None).unwrap_err();
        assert!(
            matches!(&err, KerberosFailure::WrongTarget { got, .. } if got.eq_ignore_ascii_case(&theirs)),
            "{err}"
        );
        // Garbage is refused by the library, not a panic.
        let err = acceptor
            .context()
            .step(b"\x60\x03\x06\x01\x00", None)
            .unwrap_err();
        assert!(matches!(err, KerberosFailure::Rejected(_)), "{err}");
    }

    /// Over HTTPS the AP-REQ carries RFC 5929 channel bindings (`tls-server-end-point:` and
    /// the certificate hash): the acceptor takes the ones of its own certificate and refuses a
    /// token bound to another (a relayed one).
    #[tokio::test]
    #[cfg_attr(
        eems_no_kdc,
        ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
    )]
    async fn channel_bindings_must_match_the_acceptors_certificate() {
        let realm = realm().await;
        let spn = realm.service_principal(&realm.spec().hosts[0]);
        let cred = client_cred(&realm, &spn).await;
        let acceptor = Acceptor::from_keytab(&realm.keytab(), &spn).unwrap();
        let ours = b"tls-server-end-point:\x01\x02\x03";
        let theirs = b"tls-server-end-point:\x09\x09\x09";

        let mut c = client(&cred, &spn, GSS_MECH_KRB5);
        let first = c.step(None, Some(ours)).unwrap().unwrap().to_vec();
        let mut s = acceptor.context();
        let reply = s.step(&first, Some(ours)).unwrap().unwrap();
        assert!(c.step(Some(&reply), Some(ours)).unwrap().is_none());
        assert!(s.is_established() && s.channel_bound());

        // No bindings at all: the library accepts, and says the context is not bound.
        let mut c = client(&cred, &spn, GSS_MECH_KRB5);
        let first = c.step(None, None).unwrap().unwrap().to_vec();
        let mut s = acceptor.context();
        s.step(&first, Some(ours)).unwrap();
        assert!(s.is_established() && !s.channel_bound());

        let mut c = client(&cred, &spn, GSS_MECH_KRB5);
        let first = c.step(None, Some(theirs)).unwrap().unwrap().to_vec();
        let err = acceptor.context().step(&first, Some(ours)).unwrap_err();
        assert!(matches!(err, KerberosFailure::Rejected(_)), "{err}");
    }

    /// The KDC's clock an hour ahead: MIT clients adopt the KDC's time (`kdc_timesync`), so
    /// their authenticators are an hour ahead of this acceptor's clock, which refuses them as
    /// a Windows server whose clock drifted from its domain's would.
    #[tokio::test]
    #[cfg_attr(
        eems_no_kdc,
        ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
    )]
    async fn an_authenticator_an_hour_off_is_refused_as_clock_skew() {
        let mut spec = RealmSpec::for_fleet(&crate::testkit::demo_fleet(65)).unwrap();
        spec.kdc_clock_offset_secs = 3600;
        let realm = Realm::start(spec).await.unwrap();
        let spn = realm.service_principal(&realm.spec().hosts[0]);
        let cred = client_cred(&realm, &spn).await;
        let acceptor = Acceptor::from_keytab(&realm.keytab(), &spn).unwrap();
        let mut c = client(&cred, &spn, GSS_MECH_KRB5);
        let first = c.step(None, None).unwrap().unwrap().to_vec();
        let err = acceptor.context().step(&first, None).unwrap_err();
        // MIT checks the ticket's start time first: a clock behind the KDC's sees a ticket
        // that is not yet valid (KRB_AP_ERR_TKT_NYV), a smaller skew "Clock skew too great".
        let text = err.to_string();
        assert!(
            text.contains("Ticket not yet valid") || text.contains("Clock skew too great"),
            "{text}"
        );
    }

    #[test]
    fn token_kinds() {
        assert_eq!(token_kind(b"NTLMSSP\0\x01\0\0\0"), TokenKind::Ntlm);
        let mut spnego_ntlm = vec![0x60, 0x40];
        spnego_ntlm.extend_from_slice(OID_SPNEGO);
        spnego_ntlm.extend_from_slice(b"\xa0\x30....NTLMSSP\0\x01");
        assert_eq!(token_kind(&spnego_ntlm), TokenKind::Ntlm);
        let mut spnego = vec![0x60, 0x82, 0x01, 0x00];
        spnego.extend_from_slice(OID_SPNEGO);
        spnego.extend_from_slice(b"\xa0\x30");
        assert_eq!(token_kind(&spnego), TokenKind::Spnego);
        let mut krb = vec![0x60, 0x81, 0x90];
        krb.extend_from_slice(OID_KRB5);
        assert_eq!(token_kind(&krb), TokenKind::Kerberos);
        assert_eq!(token_kind(b"\xa1\x10"), TokenKind::Other);
        assert_eq!(token_kind(b""), TokenKind::Other);
        assert_eq!(token_kind(b"\x60"), TokenKind::Other);
    }
}
