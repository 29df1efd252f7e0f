//! NTLMv2 acceptor (MS-NLMP 3.2.5.1.2) and MS-WSMV message sealing (MS-NLMP 3.4, with
//! extended session security, 128-bit keys and key exchange).
//!
//! Written against the specification and checked with its §4.2.4 vectors; every comparison of a
//! secret-derived value is constant time. State that belongs to a TCP connection ([`Challenge`],
//! [`Session`]) is owned by the caller's per-connection state, never looked up by address.

use crate::fleet::AccountSpec;
use crate::sealing;
use md4::Md4;
use md5::{Digest, Md5};

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
const REQUEST_TARGET: u32 = 0x0000_0004;
const NEGOTIATE_SIGN: u32 = 0x0000_0010;
const NEGOTIATE_SEAL: u32 = 0x0000_0020;
const NEGOTIATE_NTLM: u32 = 0x0000_0200;
const NEGOTIATE_ALWAYS_SIGN: u32 = 0x0000_8000;
const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
const NEGOTIATE_EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
const NEGOTIATE_VERSION: u32 = 0x0200_0000;
const NEGOTIATE_128: u32 = 0x2000_0000;
const NEGOTIATE_KEY_EXCH: u32 = 0x4000_0000;
const NEGOTIATE_56: u32 = 0x8000_0000;

/// Bits the server grants only when the client asked for them (MS-NLMP 3.2.5.1.1).
const NEGOTIABLE: u32 = NEGOTIATE_SIGN
    | NEGOTIATE_SEAL
    | NEGOTIATE_EXTENDED_SESSIONSECURITY
    | NEGOTIATE_128
    | NEGOTIATE_KEY_EXCH
    | NEGOTIATE_56;
/// Bits a Windows acceptor always sets in its CHALLENGE.
const SERVER_ALWAYS: u32 = NEGOTIATE_UNICODE
    | REQUEST_TARGET
    | NEGOTIATE_NTLM
    | NEGOTIATE_ALWAYS_SIGN
    | TARGET_TYPE_DOMAIN
    | NEGOTIATE_TARGET_INFO
    | NEGOTIATE_VERSION;

const AV_EOL: u16 = 0;
const AV_NB_COMPUTER: u16 = 1;
const AV_NB_DOMAIN: u16 = 2;
const AV_DNS_COMPUTER: u16 = 3;
const AV_DNS_DOMAIN: u16 = 4;
const AV_DNS_TREE: u16 = 5;
const AV_FLAGS: u16 = 6;
const AV_TIMESTAMP: u16 = 7;
const AV_CHANNEL_BINDINGS: u16 = 10;
const AV_FLAG_MIC_PRESENT: u32 = 0x2;

/// Windows Server 2019 (10.0.17763), NTLM revision 15: what `Version` says in a real CHALLENGE.
const SERVER_VERSION: [u8; 8] = [10, 0, 0x63, 0x45, 0, 0, 0, 0x0f];

/// The MIC sits after the fixed header and the 8-byte Version field.
const MIC_OFFSET: usize = 72;

/// HTTP `Content-Type` of a sealed body (MS-WSMV 2.2.9.1).
pub const SEALED_CONTENT_TYPE: &str = sealing::Protocol::Spnego.content_type();

/// Why a message was refused. Texts name the cause, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NtlmFailure {
    #[error("malformed NTLM message: {0}")]
    Malformed(&'static str),
    #[error("expected an NTLM message of type {expected}, got type {got}")]
    WrongMessageType { expected: u32, got: u32 },
    #[error("anonymous NTLM authentication is not accepted")]
    Anonymous,
    #[error("NTLMv1 responses are not accepted")]
    NtlmV1,
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("wrong password for {0:?} (NTProofStr mismatch)")]
    WrongPassword(String),
    #[error("key exchange negotiated but no EncryptedRandomSessionKey was sent")]
    MissingSessionKey,
    #[error("MIC mismatch")]
    BadMic,
    #[error("channel binding mismatch")]
    BadChannelBinding,
    #[error("channel binding required (CbtHardeningLevel=Strict) but absent")]
    MissingChannelBinding,
    #[error("bad sealed body framing: {0}")]
    BadFraming(&'static str),
    #[error("sealed message signature did not verify (sequence {0})")]
    BadSignature(u32),
}

/// `Service/Auth/CbtHardeningLevel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CbtPolicy {
    None,
    Relaxed,
    Strict,
}

impl CbtPolicy {
    /// Parses the WinRM setting name, case-insensitively as `winrm set` does.
    pub fn parse(s: &str) -> Option<CbtPolicy> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Some(CbtPolicy::None),
            "relaxed" => Some(CbtPolicy::Relaxed),
            "strict" => Some(CbtPolicy::Strict),
            _ => None,
        }
    }
}

/// The names a host announces in its CHALLENGE.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    pub nb_domain: String,
    pub nb_computer: String,
    pub dns_domain: String,
    pub dns_computer: String,
}

/// What the acceptor keeps between its CHALLENGE and the client's AUTHENTICATE: the raw
/// messages (the MIC covers them byte for byte) and the server challenge.
#[derive(Clone)]
pub struct Challenge {
    type1: Vec<u8>,
    type2: Vec<u8>,
    server_challenge: [u8; 8],
    flags: u32,
    nb_domain: String,
    dns_domain: String,
}

impl std::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenge")
            .field("flags", &format_args!("{:#010x}", self.flags))
            .finish_non_exhaustive()
    }
}

/// A successful AUTHENTICATE: the names as the client sent them and the sealing session.
#[derive(Debug)]
pub struct Authenticated {
    pub domain: String,
    pub user: String,
    pub session: Session,
}

// ---------------------------------------------------------------------------------------------
// Primitives

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..16].copy_from_slice(&md5(&[key]));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let mut inner = Md5::new();
    inner.update(&ipad);
    for p in parts {
        inner.update(p);
    }
    let inner: [u8; 16] = inner.finalize().into();
    md5(&[&opad, &inner])
}

/// RC4 keystream. One instance per direction lives for the whole connection.
#[derive(Clone)]
struct Rc4 {
    s: [u8; 256],
    i: u8,
    j: u8,
}

impl Rc4 {
    fn new(key: &[u8]) -> Rc4 {
        let mut s = [0u8; 256];
        for (n, v) in s.iter_mut().enumerate() {
            *v = n as u8;
        }
        let mut j: u8 = 0;
        for n in 0..256 {
            j = j.wrapping_add(s[n]).wrapping_add(key[n % key.len()]);
            s.swap(n, j as usize);
        }
        Rc4 { s, i: 0, j: 0 }
    }

    fn apply(&mut self, data: &mut [u8]) {
        for b in data {
            self.i = self.i.wrapping_add(1);
            self.j = self.j.wrapping_add(self.s[self.i as usize]);
            self.s.swap(self.i as usize, self.j as usize);
            let k = self.s[self.s[self.i as usize].wrapping_add(self.s[self.j as usize]) as usize];
            *b ^= k;
        }
    }
}

/// Constant-time equality (the length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn nt_hash(password: &str) -> [u8; 16] {
    Md4::digest(utf16le(password)).into()
}

/// NTOWFv2 with the names exactly as the client sent them: upper-casing the domain here is
/// a classic acceptor bug that only shows with a lower-case domain.
fn ntowf_v2(password: &str, user: &str, domain: &str) -> [u8; 16] {
    let ident = utf16le(&format!("{}{}", user.to_uppercase(), domain));
    hmac_md5(&nt_hash(password), &[&ident])
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// A security buffer (len u16, maxlen u16, offset u32) of `msg` at `at`.
fn buffer(msg: &[u8], at: usize) -> Result<&[u8], NtlmFailure> {
    let bad = NtlmFailure::Malformed("security buffer out of range");
    let len = u16_at(msg, at).ok_or(bad.clone())? as usize;
    let off = u32_at(msg, at + 4).ok_or(bad.clone())? as usize;
    if len == 0 {
        return Ok(&[]);
    }
    msg.get(off..off.checked_add(len).ok_or(bad.clone())?)
        .ok_or(bad)
}

fn message_type(msg: &[u8]) -> Result<u32, NtlmFailure> {
    if msg.get(..8) != Some(SIGNATURE.as_slice()) {
        return Err(NtlmFailure::Malformed("no NTLMSSP signature"));
    }
    u32_at(msg, 8).ok_or(NtlmFailure::Malformed("truncated header"))
}

/// The NTLM message type of a token (1, 2 or 3), if it is an NTLM message at all.
pub fn token_type(token: &[u8]) -> Option<u32> {
    message_type(token).ok()
}

fn decode_str(raw: &[u8], unicode: bool) -> Result<String, NtlmFailure> {
    if unicode {
        if !raw.len().is_multiple_of(2) {
            return Err(NtlmFailure::Malformed("odd-length UTF-16 string"));
        }
        let units: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&units).map_err(|_| NtlmFailure::Malformed("invalid UTF-16 string"))
    } else {
        // OEM strings: the lab only ever meets ASCII there.
        Ok(raw.iter().map(|&b| b as char).collect())
    }
}

/// Windows FILETIME (100 ns since 1601) for now.
fn filetime_now() -> u64 {
    let since_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (since_unix.as_secs() + 11_644_473_600) * 10_000_000
        + u64::from(since_unix.subsec_nanos()) / 100
}

fn av_pair(out: &mut Vec<u8>, id: u16, value: &[u8]) {
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
}

/// Iterates the AV pairs of a TargetInfo-shaped list, stopping at MsvAvEOL.
fn av_pairs(mut list: &[u8]) -> Result<Vec<(u16, &[u8])>, NtlmFailure> {
    let mut out = Vec::new();
    // A well-formed list has a handful of pairs; the bound stops a crafted endless one.
    for _ in 0..64 {
        let id = u16_at(list, 0).ok_or(NtlmFailure::Malformed("AV pair list not terminated"))?;
        let len = u16_at(list, 2).ok_or(NtlmFailure::Malformed("truncated AV pair"))? as usize;
        if id == AV_EOL {
            return Ok(out);
        }
        let value = list
            .get(4..4 + len)
            .ok_or(NtlmFailure::Malformed("truncated AV pair"))?;
        out.push((id, value));
        list = &list[4 + len..];
    }
    Err(NtlmFailure::Malformed("too many AV pairs"))
}

// ---------------------------------------------------------------------------------------------
// CHALLENGE

/// Answers a NEGOTIATE with a Windows-like CHALLENGE. The Type 1 version field is not
/// checked: clients fill it with odd values and Windows ignores it.
pub fn challenge(type1: &[u8], id: &ServerIdentity) -> Result<(Vec<u8>, Challenge), NtlmFailure> {
    let got = message_type(type1)?;
    if got != 1 {
        return Err(NtlmFailure::WrongMessageType { expected: 1, got });
    }
    let client_flags = u32_at(type1, 12).ok_or(NtlmFailure::Malformed("NEGOTIATE too short"))?;
    let flags = SERVER_ALWAYS | (client_flags & NEGOTIABLE);
    let server_challenge: [u8; 8] = rand::random();

    let target_name = utf16le(&id.nb_domain);
    let mut info = Vec::new();
    av_pair(&mut info, AV_NB_DOMAIN, &utf16le(&id.nb_domain));
    av_pair(&mut info, AV_NB_COMPUTER, &utf16le(&id.nb_computer));
    av_pair(&mut info, AV_DNS_DOMAIN, &utf16le(&id.dns_domain));
    av_pair(&mut info, AV_DNS_COMPUTER, &utf16le(&id.dns_computer));
    av_pair(&mut info, AV_DNS_TREE, &utf16le(&id.dns_domain));
    av_pair(&mut info, AV_TIMESTAMP, &filetime_now().to_le_bytes());
    av_pair(&mut info, AV_EOL, &[]);

    const HEADER: usize = 56;
    let mut msg = Vec::with_capacity(HEADER + target_name.len() + info.len());
    msg.extend_from_slice(SIGNATURE);
    msg.extend_from_slice(&2u32.to_le_bytes());
    push_buffer_fields(&mut msg, target_name.len(), HEADER);
    msg.extend_from_slice(&flags.to_le_bytes());
    msg.extend_from_slice(&server_challenge);
    msg.extend_from_slice(&[0u8; 8]);
    push_buffer_fields(&mut msg, info.len(), HEADER + target_name.len());
    msg.extend_from_slice(&SERVER_VERSION);
    msg.extend_from_slice(&target_name);
    msg.extend_from_slice(&info);

    let ch = Challenge {
        type1: type1.to_vec(),
        type2: msg.clone(),
        server_challenge,
        flags,
        nb_domain: id.nb_domain.clone(),
        dns_domain: id.dns_domain.clone(),
    };
    Ok((msg, ch))
}

fn push_buffer_fields(msg: &mut Vec<u8>, len: usize, offset: usize) {
    msg.extend_from_slice(&(len as u16).to_le_bytes());
    msg.extend_from_slice(&(len as u16).to_le_bytes());
    msg.extend_from_slice(&(offset as u32).to_le_bytes());
}

// ---------------------------------------------------------------------------------------------
// AUTHENTICATE

/// Whether `a` is the account designated by the names a client sent: `DOMAIN` may be the
/// NetBIOS or DNS domain, or empty (the host's own); a UPN comes whole in `user` with an empty
/// domain. `DOMAIN\\user` inside the user name designates nothing: Windows takes the backslash
/// as part of the name.
pub fn account_matches(a: &AccountSpec, id: &ServerIdentity, domain: &str, user: &str) -> bool {
    matches(a, &id.nb_domain, &id.dns_domain, domain, user)
}

fn matches(a: &AccountSpec, nb_domain: &str, dns_domain: &str, domain: &str, user: &str) -> bool {
    if user.contains('\\') {
        return false;
    }
    if domain.is_empty()
        && let Some((name, suffix)) = user.split_once('@')
    {
        return a.user.eq_ignore_ascii_case(name)
            && (suffix.eq_ignore_ascii_case(dns_domain) || suffix.eq_ignore_ascii_case(&a.domain));
    }
    a.user.eq_ignore_ascii_case(user)
        && (domain.is_empty()
            || a.domain.eq_ignore_ascii_case(domain)
            || (domain.eq_ignore_ascii_case(dns_domain)
                && a.domain.eq_ignore_ascii_case(nb_domain)))
}

/// Verifies an AUTHENTICATE against `accounts` (MS-NLMP 3.2.5.1.2). `expected_cb` is the
/// channel-binding hash of the TLS connection the message came on (`None` over plain HTTP).
pub fn authenticate(
    ch: &Challenge,
    type3: &[u8],
    accounts: &[AccountSpec],
    expected_cb: Option<[u8; 16]>,
    cbt: CbtPolicy,
) -> Result<Authenticated, NtlmFailure> {
    let got = message_type(type3)?;
    if got != 3 {
        return Err(NtlmFailure::WrongMessageType { expected: 3, got });
    }
    let nt = buffer(type3, 20)?;
    let domain_raw = buffer(type3, 28)?;
    let user_raw = buffer(type3, 36)?;
    let enc_key = buffer(type3, 52)?;
    let flags = u32_at(type3, 60).ok_or(NtlmFailure::Malformed("AUTHENTICATE too short"))?;
    // A client that grants fewer bits than offered gets what it asked for; never more than
    // the CHALLENGE offered.
    let negotiated = flags & ch.flags;
    let unicode = flags & NEGOTIATE_UNICODE != 0;
    let domain = decode_str(domain_raw, unicode)?;
    let user = decode_str(user_raw, unicode)?;

    if user.is_empty() && nt.is_empty() {
        return Err(NtlmFailure::Anonymous);
    }
    if nt.len() == 24 {
        return Err(NtlmFailure::NtlmV1);
    }
    // NTProofStr (16) + blob header (28) + at least MsvAvEOL (4).
    if nt.len() < 48 {
        return Err(NtlmFailure::Malformed("NTLMv2 response too short"));
    }
    let (proof, blob) = nt.split_at(16);
    if blob[0] != 1 || blob[1] != 1 {
        return Err(NtlmFailure::Malformed("unknown NTLMv2 blob version"));
    }
    let pairs = av_pairs(&blob[28..])?;

    let shown = if domain.is_empty() {
        user.clone()
    } else {
        format!("{domain}\\{user}")
    };
    let candidates: Vec<&AccountSpec> = accounts
        .iter()
        .filter(|a| matches(a, &ch.nb_domain, &ch.dns_domain, &domain, &user))
        .collect();
    if candidates.is_empty() {
        return Err(NtlmFailure::UnknownUser(shown));
    }
    let mut key_nt = None;
    for account in candidates {
        let k = ntowf_v2(&account.password, &user, &domain);
        let expected = hmac_md5(&k, &[&ch.server_challenge, blob]);
        if ct_eq(&expected, proof) {
            key_nt = Some(k);
            break;
        }
    }
    let key_nt = key_nt.ok_or_else(|| NtlmFailure::WrongPassword(shown.clone()))?;

    // NTLMv2 with extended session security: KeyExchangeKey = SessionBaseKey.
    let key_exchange_key = hmac_md5(&key_nt, &[proof]);
    let exported = if negotiated & NEGOTIATE_KEY_EXCH != 0 {
        if enc_key.len() != 16 {
            return Err(NtlmFailure::MissingSessionKey);
        }
        let mut k = [0u8; 16];
        k.copy_from_slice(enc_key);
        Rc4::new(&key_exchange_key).apply(&mut k);
        k
    } else {
        key_exchange_key
    };

    let av_flags = pairs
        .iter()
        .find(|(id, _)| *id == AV_FLAGS)
        .and_then(|(_, v)| u32_at(v, 0))
        .unwrap_or(0);
    if av_flags & AV_FLAG_MIC_PRESENT != 0 {
        let mic = type3
            .get(MIC_OFFSET..MIC_OFFSET + 16)
            .ok_or(NtlmFailure::Malformed(
                "MIC announced but message too short",
            ))?;
        let mut zeroed = type3.to_vec();
        zeroed[MIC_OFFSET..MIC_OFFSET + 16].fill(0);
        let expected = hmac_md5(&exported, &[&ch.type1, &ch.type2, &zeroed]);
        if !ct_eq(&expected, mic) {
            return Err(NtlmFailure::BadMic);
        }
    }

    let sent_cb = pairs
        .iter()
        .find(|(id, _)| *id == AV_CHANNEL_BINDINGS)
        .map(|(_, v)| *v)
        .filter(|v| v.iter().any(|&b| b != 0));
    if let Some(expected) = expected_cb {
        match (cbt, sent_cb) {
            (CbtPolicy::None, _) => {}
            (CbtPolicy::Strict, None) => return Err(NtlmFailure::MissingChannelBinding),
            (CbtPolicy::Relaxed, None) => {}
            (_, Some(sent)) => {
                if !ct_eq(sent, &expected) {
                    return Err(NtlmFailure::BadChannelBinding);
                }
            }
        }
    }

    Ok(Authenticated {
        domain,
        user,
        session: Session::new(&exported, negotiated, Role::Acceptor),
    })
}

// ---------------------------------------------------------------------------------------------
// Channel binding (RFC 5929 tls-server-end-point)

fn der_next(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, head) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let content = b.get(head..head.checked_add(len)?)?;
    Some((tag, content, &b[head + len..]))
}

/// The certificate's signatureAlgorithm OID (content bytes).
fn signature_oid(cert_der: &[u8]) -> Option<&[u8]> {
    let (tag, cert, _) = der_next(cert_der)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _tbs, rest) = der_next(cert)?;
    let (tag, alg, _) = der_next(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, oid, _) = der_next(alg)?;
    (tag == 0x06).then_some(oid)
}

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
    use sha2::{Sha224, Sha256, Sha384, Sha512};
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    let oid = signature_oid(cert_der)?;
    enum H {
        S224,
        S256,
        S384,
        S512,
    }
    let h = if let Some(last) = oid.strip_prefix(RSA) {
        match last {
            // md5WithRSA, sha1WithRSA: upgraded to SHA-256 by RFC 5929 §4.1.
            [4] | [5] | [11] => H::S256,
            [12] => H::S384,
            [13] => H::S512,
            [14] => H::S224,
            _ => return None,
        }
    } else if let Some(last) = oid.strip_prefix(ECDSA) {
        match last {
            [1] | [3, 2] => H::S256,
            [3, 1] => H::S224,
            [3, 3] => H::S384,
            [3, 4] => H::S512,
            _ => return None,
        }
    } else {
        return None;
    };
    let digest: Vec<u8> = match h {
        H::S224 => Sha224::digest(cert_der).to_vec(),
        H::S256 => Sha256::digest(cert_der).to_vec(),
        H::S384 => Sha384::digest(cert_der).to_vec(),
        H::S512 => Sha512::digest(cert_der).to_vec(),
    };
    let mut app = b"tls-server-end-point:".to_vec();
    app.extend_from_slice(&digest);
    Some(app)
}

// ---------------------------------------------------------------------------------------------
// Sealing

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Acceptor,
    #[cfg(test)]
    Initiator,
}

/// One direction of a sealing session.
struct Direction {
    sign_key: [u8; 16],
    rc4: Rc4,
    seq: u32,
}

/// Sealing state of one authenticated connection. The RC4 streams continue across messages
/// and are never reset: a Windows peer rejects anything else.
pub struct Session {
    send: Direction,
    recv: Direction,
    key_exch: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("send_seq", &self.send.seq)
            .field("recv_seq", &self.recv.seq)
            .finish_non_exhaustive()
    }
}

const C2S_SIGN: &[u8] = b"session key to client-to-server signing key magic constant\0";
const C2S_SEAL: &[u8] = b"session key to client-to-server sealing key magic constant\0";
const S2C_SIGN: &[u8] = b"session key to server-to-client signing key magic constant\0";
const S2C_SEAL: &[u8] = b"session key to server-to-client sealing key magic constant\0";

fn seal_key(exported: &[u8; 16], flags: u32, magic: &[u8]) -> [u8; 16] {
    let weakened: &[u8] = if flags & NEGOTIATE_128 != 0 {
        exported
    } else if flags & NEGOTIATE_56 != 0 {
        &exported[..7]
    } else {
        &exported[..5]
    };
    md5(&[weakened, magic])
}

impl Session {
    fn new(exported: &[u8; 16], flags: u32, role: Role) -> Session {
        let c2s = Direction {
            sign_key: md5(&[exported, C2S_SIGN]),
            rc4: Rc4::new(&seal_key(exported, flags, C2S_SEAL)),
            seq: 0,
        };
        let s2c = Direction {
            sign_key: md5(&[exported, S2C_SIGN]),
            rc4: Rc4::new(&seal_key(exported, flags, S2C_SEAL)),
            seq: 0,
        };
        let key_exch = flags & NEGOTIATE_KEY_EXCH != 0;
        match role {
            Role::Acceptor => Session {
                send: s2c,
                recv: c2s,
                key_exch,
            },
            #[cfg(test)]
            Role::Initiator => Session {
                send: c2s,
                recv: s2c,
                key_exch,
            },
        }
    }

    /// Seals one message: returns the 16-byte signature and the ciphertext.
    fn seal(&mut self, plaintext: &[u8]) -> ([u8; 16], Vec<u8>) {
        let d = &mut self.send;
        let seq = d.seq.to_le_bytes();
        let mac = hmac_md5(&d.sign_key, &[&seq, plaintext]);
        let mut data = plaintext.to_vec();
        d.rc4.apply(&mut data);
        let mut checksum = [0u8; 8];
        checksum.copy_from_slice(&mac[..8]);
        if self.key_exch {
            d.rc4.apply(&mut checksum);
        }
        let mut sig = [0u8; 16];
        sig[0] = 1;
        sig[4..12].copy_from_slice(&checksum);
        sig[12..].copy_from_slice(&seq);
        d.seq = d.seq.wrapping_add(1);
        (sig, data)
    }

    fn unseal(&mut self, sig: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, NtlmFailure> {
        let d = &mut self.recv;
        let expected_seq = d.seq;
        let mut data = ciphertext.to_vec();
        d.rc4.apply(&mut data);
        let mut checksum = [0u8; 8];
        checksum.copy_from_slice(&sig[4..12]);
        if self.key_exch {
            d.rc4.apply(&mut checksum);
        }
        d.seq = d.seq.wrapping_add(1);
        let seq = expected_seq.to_le_bytes();
        let mac = hmac_md5(&d.sign_key, &[&seq, &data]);
        let ok =
            sig[..4] == [1, 0, 0, 0] && ct_eq(&sig[12..16], &seq) && ct_eq(&mac[..8], &checksum);
        if ok {
            Ok(data)
        } else {
            Err(NtlmFailure::BadSignature(expected_seq))
        }
    }

    /// Parses a `multipart/encrypted` body by length (see [`sealing::parse`]) and unseals it.
    pub fn unseal_body(&mut self, body: &[u8]) -> Result<Vec<u8>, NtlmFailure> {
        let f = sealing::parse(body, sealing::Protocol::Spnego, |n| n == 16)
            .map_err(NtlmFailure::BadFraming)?;
        self.unseal(f.header, f.data)
    }

    /// Seals `plaintext` in the exact framing Windows emits.
    pub fn seal_body(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let (sig, data) = self.seal(plaintext);
        sealing::frame(sealing::Protocol::Spnego, plaintext.len(), &sig, &data)
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
pub(crate) mod test_client {
    //! A minimal NTLMv2 initiator, only for the acceptor's tests.
    use super::*;

    pub const CLIENT_FLAGS: u32 = 0xE208_8235;

    pub fn type1() -> Vec<u8> {
        let mut m = SIGNATURE.to_vec();
        m.extend_from_slice(&1u32.to_le_bytes());
        m.extend_from_slice(&CLIENT_FLAGS.to_le_bytes());
        m.extend_from_slice(&[0u8; 16]);
        // An odd version, as winrm-rs sends: the acceptor must not care.
        m.extend_from_slice(&[0x00, 0x0c, 0x01, 0x00, 0x00, 0x00, 0x00, 0x0f]);
        m
    }

    pub struct Options<'a> {
        pub user: &'a str,
        pub domain: &'a str,
        pub password: &'a str,
        pub cb: Option<[u8; 16]>,
        pub corrupt_mic: bool,
    }

    /// Lays out an AUTHENTICATE: LM, NT, domain, user, workstation and session-key buffers,
    /// with a zeroed MIC slot at offset 72 when `mic_slot`.
    pub fn assemble_type3(
        fields: &[Vec<u8>; 6],
        flags: u32,
        version: [u8; 8],
        mic_slot: bool,
    ) -> Vec<u8> {
        let mut msg = SIGNATURE.to_vec();
        msg.extend_from_slice(&3u32.to_le_bytes());
        let mut off = if mic_slot {
            MIC_OFFSET + 16
        } else {
            MIC_OFFSET
        };
        for f in fields {
            push_buffer_fields(&mut msg, f.len(), off);
            off += f.len();
        }
        msg.extend_from_slice(&flags.to_le_bytes());
        msg.extend_from_slice(&version);
        if mic_slot {
            msg.extend_from_slice(&[0; 16]);
        }
        for f in fields {
            msg.extend_from_slice(f);
        }
        msg
    }

    /// Builds a Type 3 for `type2` and returns it with the initiator's sealing session.
    pub fn type3(type1: &[u8], type2: &[u8], o: &Options) -> (Vec<u8>, Session) {
        let flags = u32_at(type2, 20).unwrap() & CLIENT_FLAGS;
        let server_challenge = &type2[24..32];
        let info = buffer(type2, 40).unwrap();
        let pairs = av_pairs(info).unwrap();
        let mut list = Vec::new();
        for (id, v) in &pairs {
            av_pair(&mut list, *id, v);
        }
        av_pair(&mut list, AV_FLAGS, &AV_FLAG_MIC_PRESENT.to_le_bytes());
        if let Some(cb) = o.cb {
            av_pair(&mut list, AV_CHANNEL_BINDINGS, &cb);
        }
        av_pair(&mut list, AV_EOL, &[]);
        let ts = pairs
            .iter()
            .find(|(id, _)| *id == AV_TIMESTAMP)
            .map(|(_, v)| v.to_vec())
            .unwrap();
        let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
        blob.extend_from_slice(&ts);
        blob.extend_from_slice(&[0xaa; 8]);
        blob.extend_from_slice(&[0; 4]);
        blob.extend_from_slice(&list);
        blob.extend_from_slice(&[0; 4]);
        let k = ntowf_v2(o.password, o.user, o.domain);
        let proof = hmac_md5(&k, &[server_challenge, &blob]);
        let mut nt = proof.to_vec();
        nt.extend_from_slice(&blob);
        let kek = hmac_md5(&k, &[&proof]);
        let exported = [0x55u8; 16];
        let mut enc = exported;
        Rc4::new(&kek).apply(&mut enc);

        let fields: [Vec<u8>; 6] = [
            vec![0; 24],
            nt,
            utf16le(o.domain),
            utf16le(o.user),
            utf16le("WS"),
            enc.to_vec(),
        ];
        let mut msg = assemble_type3(&fields, flags, SERVER_VERSION, true);
        let mut mic = hmac_md5(&exported, &[type1, type2, &msg]);
        if o.corrupt_mic {
            mic[0] ^= 1;
        }
        msg[MIC_OFFSET..MIC_OFFSET + 16].copy_from_slice(&mic);
        (msg, Session::new(&exported, flags, Role::Initiator))
    }
}

#[cfg(test)]
mod tests {
    use super::test_client::{Options, assemble_type3, type1, type3};
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn id() -> ServerIdentity {
        ServerIdentity {
            nb_domain: "LAB".into(),
            nb_computer: "EX01".into(),
            dns_domain: "lab.local".into(),
            dns_computer: "ex01.lab.local".into(),
        }
    }

    fn accounts() -> Vec<AccountSpec> {
        vec![AccountSpec {
            domain: "LAB".into(),
            user: "administrator".into(),
            password: "Lab-Passw0rd!".into(),
        }]
    }

    // --- MS-NLMP §4.2.4 vectors -----------------------------------------------------------

    const SERVER_CHALLENGE: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];

    fn vector_blob() -> Vec<u8> {
        let mut list = Vec::new();
        av_pair(&mut list, AV_NB_DOMAIN, &utf16le("Domain"));
        av_pair(&mut list, AV_NB_COMPUTER, &utf16le("Server"));
        av_pair(&mut list, AV_EOL, &[]);
        let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
        blob.extend_from_slice(&[0; 8]);
        blob.extend_from_slice(&[0xaa; 8]);
        blob.extend_from_slice(&[0; 4]);
        blob.extend_from_slice(&list);
        blob.extend_from_slice(&[0; 4]);
        blob
    }

    #[test]
    fn ms_nlmp_ntowf_v1_and_v2() {
        assert_eq!(
            nt_hash("Password").to_vec(),
            hex("a4f49c406510bdcab6824ee7c30fd852")
        );
        assert_eq!(
            ntowf_v2("Password", "User", "Domain").to_vec(),
            hex("0c868a403bfd7a93a3001ef22ef02e3f")
        );
    }

    #[test]
    fn ms_nlmp_proof_session_base_key_lmv2_and_key_exchange() {
        let k = ntowf_v2("Password", "User", "Domain");
        let proof = hmac_md5(&k, &[&SERVER_CHALLENGE, &vector_blob()]);
        assert_eq!(proof.to_vec(), hex("68cd0ab851e51c96aabc927bebef6a1c"));
        let base = hmac_md5(&k, &[&proof]);
        assert_eq!(base.to_vec(), hex("8de40ccadbc14a82f15cb0ad0de95ca3"));
        let mut lm = hmac_md5(&k, &[&SERVER_CHALLENGE, &[0xaa; 8]]).to_vec();
        lm.extend_from_slice(&[0xaa; 8]);
        assert_eq!(lm, hex("86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa"));
        let mut enc = [0x55u8; 16];
        Rc4::new(&base).apply(&mut enc);
        assert_eq!(enc.to_vec(), hex("c5dad2544fc9799094ce1ce90bc9d03e"));
    }

    #[test]
    fn ms_nlmp_sealing_keys_and_sealed_message() {
        let esk = [0x55u8; 16];
        let flags = NEGOTIATE_128 | NEGOTIATE_KEY_EXCH | NEGOTIATE_EXTENDED_SESSIONSECURITY;
        assert_eq!(
            md5(&[&esk, C2S_SIGN]).to_vec(),
            hex("4788dc861b4782f35d43fd98fe1a2d39")
        );
        assert_eq!(
            seal_key(&esk, flags, C2S_SEAL).to_vec(),
            hex("59f600973cc4960a25480a7c196e4c58")
        );
        assert_eq!(
            md5(&[&esk, S2C_SIGN]).to_vec(),
            hex("d04d6f10741041d1d246d64188d7a8ad")
        );
        assert_eq!(
            seal_key(&esk, flags, S2C_SEAL).to_vec(),
            hex("9355f3a957c1583d25c4c2f11e40390e")
        );
        let mut client = Session::new(&esk, flags, Role::Initiator);
        let (sig, data) = client.seal(&utf16le("Plaintext"));
        assert_eq!(data, hex("54e50165bf1936dc996020c1811b0f06fb5f"));
        assert_eq!(sig.to_vec(), hex("010000007fb38ec5c55d497600000000"));
        // The acceptor reads the same message with its client-to-server keys.
        let mut server = Session::new(&esk, flags, Role::Acceptor);
        assert_eq!(server.unseal(&sig, &data).unwrap(), utf16le("Plaintext"));
    }

    #[test]
    fn ms_nlmp_full_authenticate_without_mic() {
        // The §4.2.4 AUTHENTICATE, assembled from its fields; no MsvAvFlags, so no MIC.
        let k = ntowf_v2("Password", "User", "Domain");
        let blob = vector_blob();
        let proof = hmac_md5(&k, &[&SERVER_CHALLENGE, &blob]);
        let mut nt = proof.to_vec();
        nt.extend_from_slice(&blob);
        let flags = 0xE288_8235u32 | NEGOTIATE_KEY_EXCH;
        let fields: [Vec<u8>; 6] = [
            hex("86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa"),
            nt,
            utf16le("Domain"),
            utf16le("User"),
            utf16le("COMPUTER"),
            hex("c5dad2544fc9799094ce1ce90bc9d03e"),
        ];
        let msg = assemble_type3(&fields, flags, [6, 0, 0x70, 0x17, 0, 0, 0, 0x0f], false);
        let ch = Challenge {
            type1: Vec::new(),
            type2: Vec::new(),
            server_challenge: SERVER_CHALLENGE,
            flags: SERVER_ALWAYS | NEGOTIABLE,
            nb_domain: "Domain".into(),
            dns_domain: "domain.test".into(),
        };
        let acc = [AccountSpec {
            domain: "Domain".into(),
            user: "User".into(),
            password: "Password".into(),
        }];
        let mut ok = authenticate(&ch, &msg, &acc, None, CbtPolicy::Relaxed).unwrap();
        assert_eq!((ok.domain.as_str(), ok.user.as_str()), ("Domain", "User"));
        // The session must be keyed with the exported key 55 x 16: check against the vectors.
        let mut client = Session::new(&[0x55; 16], flags, Role::Initiator);
        let (sig, data) = client.seal(&utf16le("Plaintext"));
        assert_eq!(
            ok.session.unseal(&sig, &data).unwrap(),
            utf16le("Plaintext")
        );
    }

    #[test]
    fn ntowf_v2_keeps_the_domain_case() {
        assert_ne!(
            ntowf_v2("Password", "User", "Domain"),
            ntowf_v2("Password", "User", "DOMAIN")
        );
        assert_eq!(
            ntowf_v2("Password", "user", "Domain"),
            ntowf_v2("Password", "User", "Domain")
        );
    }

    // --- CHALLENGE shape --------------------------------------------------------------------

    #[test]
    fn challenge_is_windows_like() {
        let (t2, ch) = challenge(&type1(), &id()).unwrap();
        assert_eq!(message_type(&t2).unwrap(), 2);
        assert_eq!(u32_at(&t2, 20).unwrap(), 0xE289_8235);
        assert_eq!(decode_str(buffer(&t2, 12).unwrap(), true).unwrap(), "LAB");
        assert_eq!(&t2[48..56], &SERVER_VERSION);
        let ids: Vec<u16> = av_pairs(buffer(&t2, 40).unwrap())
            .unwrap()
            .iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(ids, vec![2, 1, 4, 3, 5, 7]);
        assert_eq!(ch.type2, t2);
        let (t2b, _) = challenge(&type1(), &id()).unwrap();
        assert_ne!(t2[24..32], t2b[24..32], "server challenge must be random");
        assert!(challenge(&t2, &id()).is_err());
        assert!(challenge(b"NTLMSSP", &id()).is_err());
    }

    // --- Roundtrips with the test client ------------------------------------------------------

    fn run(
        o: Options,
        expected_cb: Option<[u8; 16]>,
        cbt: CbtPolicy,
    ) -> Result<(Authenticated, Session), NtlmFailure> {
        let t1 = type1();
        let (t2, ch) = challenge(&t1, &id())?;
        let (t3, client) = type3(&t1, &t2, &o);
        authenticate(&ch, &t3, &accounts(), expected_cb, cbt).map(|a| (a, client))
    }

    /// Logs in against the lab account over plain HTTP (no binding), default policy.
    fn login(user: &str, domain: &str, password: &str) -> Result<Authenticated, NtlmFailure> {
        run(opts(user, domain, password), None, CbtPolicy::Relaxed).map(|(a, _)| a)
    }

    fn opts<'a>(user: &'a str, domain: &'a str, password: &'a str) -> Options<'a> {
        Options {
            user,
            domain,
            password,
            cb: None,
            corrupt_mic: false,
        }
    }

    #[test]
    fn roundtrip_authenticates_and_seals_both_ways() {
        let (mut server, mut client) = run(
            opts("Administrator", "lab", "Lab-Passw0rd!"),
            None,
            CbtPolicy::Relaxed,
        )
        .unwrap();
        assert_eq!(
            (server.domain.as_str(), server.user.as_str()),
            ("lab", "Administrator")
        );
        // Several messages per direction: the RC4 streams and sequence numbers carry on.
        for i in 0..3 {
            let req = format!("<s:Envelope>request {i} --Encrypted Boundary-- </s:Envelope>");
            let framed = client.seal_body(req.as_bytes());
            assert_eq!(server.session.unseal_body(&framed).unwrap(), req.as_bytes());
            let resp = format!("response {i}");
            let framed = server.session.seal_body(resp.as_bytes());
            assert_eq!(client.unseal_body(&framed).unwrap(), resp.as_bytes());
        }
    }

    #[test]
    fn seal_body_has_exact_windows_framing() {
        let (mut server, _) = run(
            opts("administrator", "LAB", "Lab-Passw0rd!"),
            None,
            CbtPolicy::Relaxed,
        )
        .unwrap();
        let framed = server.session.seal_body(b"abc");
        let head = "--Encrypted Boundary\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n\
                    \tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=3\r\n\
                    --Encrypted Boundary\r\n\tContent-Type: application/octet-stream\r\n\x10\0\0\0";
        assert!(framed.starts_with(head.as_bytes()));
        assert_eq!(
            framed.len(),
            head.len() + 16 + 3 + "--Encrypted Boundary--\r\n".len()
        );
        assert!(framed.ends_with(b"--Encrypted Boundary--\r\n"));
    }

    #[test]
    fn unseal_refuses_crlf_before_closing_boundary_and_replays() {
        let (mut server, mut client) = run(
            opts("administrator", "LAB", "Lab-Passw0rd!"),
            None,
            CbtPolicy::Relaxed,
        )
        .unwrap();
        let framed = client.seal_body(b"hello");
        let mut crlf = framed[..framed.len() - "--Encrypted Boundary--\r\n".len()].to_vec();
        crlf.extend_from_slice(b"\r\n--Encrypted Boundary--\r\n");
        assert!(matches!(
            server.session.unseal_body(&crlf),
            Err(NtlmFailure::BadFraming(_))
        ));
        assert_eq!(server.session.unseal_body(&framed).unwrap(), b"hello");
        // Replaying the same message fails: the sequence number and RC4 stream moved on.
        assert!(matches!(
            server.session.unseal_body(&framed),
            Err(NtlmFailure::BadSignature(1))
        ));
        assert!(server.session.unseal_body(b"garbage").is_err());
        assert!(server.session.unseal_body(&[]).is_err());
    }

    #[test]
    fn wrong_password_is_refused() {
        let e = login("administrator", "LAB", "nope").unwrap_err();
        assert!(matches!(e, NtlmFailure::WrongPassword(_)), "{e}");
    }

    #[test]
    fn unknown_user_and_backslash_user_are_refused() {
        let e = login("nobody", "LAB", "Lab-Passw0rd!").unwrap_err();
        assert!(matches!(e, NtlmFailure::UnknownUser(_)));
        let e = login("LAB\\administrator", "", "Lab-Passw0rd!").unwrap_err();
        assert!(matches!(e, NtlmFailure::UnknownUser(_)));
        let e = login("administrator", "OTHER", "Lab-Passw0rd!").unwrap_err();
        assert!(matches!(e, NtlmFailure::UnknownUser(_)));
    }

    #[test]
    fn upn_and_dns_domain_and_empty_domain_are_accepted() {
        let a = login("administrator@lab.local", "", "Lab-Passw0rd!").unwrap();
        assert_eq!(a.user, "administrator@lab.local");
        login("Administrator@LAB", "", "Lab-Passw0rd!").unwrap();
        login("administrator", "LAB.LOCAL", "Lab-Passw0rd!").unwrap();
        login("administrator", "", "Lab-Passw0rd!").unwrap();
        assert!(login("administrator@other.test", "", "Lab-Passw0rd!").is_err());
    }

    #[test]
    fn bad_mic_is_refused() {
        let o = Options {
            corrupt_mic: true,
            ..opts("administrator", "LAB", "Lab-Passw0rd!")
        };
        assert_eq!(
            run(o, None, CbtPolicy::Relaxed).unwrap_err(),
            NtlmFailure::BadMic
        );
    }

    #[test]
    fn channel_binding_policies() {
        let good = [7u8; 16];
        let with = |cb| Options {
            cb,
            ..opts("administrator", "LAB", "Lab-Passw0rd!")
        };
        assert!(run(with(Some(good)), Some(good), CbtPolicy::Strict).is_ok());
        assert!(run(with(Some(good)), Some(good), CbtPolicy::Relaxed).is_ok());
        assert_eq!(
            run(with(Some([8; 16])), Some(good), CbtPolicy::Relaxed).unwrap_err(),
            NtlmFailure::BadChannelBinding
        );
        assert_eq!(
            run(with(Some([8; 16])), Some(good), CbtPolicy::Strict).unwrap_err(),
            NtlmFailure::BadChannelBinding
        );
        assert!(run(with(Some([8; 16])), Some(good), CbtPolicy::None).is_ok());
        assert!(run(with(None), Some(good), CbtPolicy::Relaxed).is_ok());
        assert!(run(with(Some([0; 16])), Some(good), CbtPolicy::Relaxed).is_ok());
        assert_eq!(
            run(with(None), Some(good), CbtPolicy::Strict).unwrap_err(),
            NtlmFailure::MissingChannelBinding
        );
        // Plain HTTP: nothing to bind to, whatever the client sent.
        assert!(run(with(Some([8; 16])), None, CbtPolicy::Strict).is_ok());
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let (_, ch) = challenge(&type1(), &id()).unwrap();
        for len in [0usize, 8, 12, 40, 64, 71, 88] {
            let mut m = SIGNATURE.to_vec();
            m.extend_from_slice(&3u32.to_le_bytes());
            m.resize(len.max(12), 0xff);
            assert!(authenticate(&ch, &m, &accounts(), None, CbtPolicy::Relaxed).is_err());
        }
        assert!(matches!(
            authenticate(&ch, &type1(), &accounts(), None, CbtPolicy::Relaxed),
            Err(NtlmFailure::WrongMessageType {
                expected: 3,
                got: 1
            })
        ));
    }

    #[test]
    fn channel_binding_hash_follows_the_signature_algorithm() {
        // The gss_channel_bindings_struct spelled out independently of the code under test.
        fn expected(digest: &[u8]) -> [u8; 16] {
            let mut s = vec![0u8; 16];
            s.extend_from_slice(&(21 + digest.len() as u32).to_le_bytes());
            s.extend_from_slice(b"tls-server-end-point:");
            s.extend_from_slice(digest);
            Md5::digest(&s).into()
        }
        fn self_signed(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let params = rcgen::CertificateParams::new(vec!["h".to_string()]).unwrap();
            params.self_signed(&key).unwrap().der().to_vec()
        }
        let der = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            channel_binding_hash(&der),
            Some(expected(&sha2::Sha256::digest(&der)))
        );
        let der = self_signed(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(
            channel_binding_hash(&der),
            Some(expected(&sha2::Sha384::digest(&der)))
        );
        // Kerberos carries the application data itself.
        let mut app = b"tls-server-end-point:".to_vec();
        app.extend_from_slice(&sha2::Sha384::digest(&der));
        assert_eq!(tls_server_end_point(&der), Some(app));
        // Ed25519 has no hash to bind with.
        assert_eq!(
            channel_binding_hash(&self_signed(&rcgen::PKCS_ED25519)),
            None
        );

        assert_eq!(channel_binding_hash(b"\x30\x03\x02\x01\x00"), None);
        assert_eq!(channel_binding_hash(&[]), None);
    }
}
