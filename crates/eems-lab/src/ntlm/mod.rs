//! NTLMv2 acceptor (MS-NLMP 3.2.5.1.2) and MS-WSMV message sealing (MS-NLMP 3.4, with
//! extended session security, 128-bit keys and key exchange).
//!
//! Written against the specification and checked with its §4.2.4 vectors; every comparison of a
//! secret-derived value is constant time. State that belongs to a TCP connection ([`Challenge`],
//! [`Session`]) is owned by the caller's per-connection state, never looked up by address.

use crate::fleet::AccountSpec;
use hmac::{Hmac, KeyInit, Mac};
use md4::Md4;
use md5::{Digest, Md5};
use rc4::{Rc4, StreamCipher};
use subtle::ConstantTimeEq;

mod auth;
mod channel_binding;
mod seal;
#[cfg(test)]
pub(crate) mod test_client;
#[cfg(test)]
mod tests;

pub use auth::{account_matches, authenticate, challenge};
pub use channel_binding::channel_binding_hash;
use seal::Role;
pub use seal::{SEALED_CONTENT_TYPE, Session};

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
    let mut mac =
        <Hmac<Md5> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// RC4 keyed with a 16-byte NTLM key. The sealing instance of each direction lives for the
/// whole connection: the keystream carries on from message to message.
fn rc4_keyed(key: &[u8; 16]) -> Rc4 {
    Rc4::new_from_slice(key).expect("RC4 takes keys of 1 to 256 bytes")
}

/// Constant-time equality (the length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
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

fn push_buffer_fields(msg: &mut Vec<u8>, len: usize, offset: usize) {
    msg.extend_from_slice(&(len as u16).to_le_bytes());
    msg.extend_from_slice(&(len as u16).to_le_bytes());
    msg.extend_from_slice(&(offset as u32).to_le_bytes());
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
