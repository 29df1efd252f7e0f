//! MS-WSMV message sealing (MS-NLMP 3.4) and the `multipart/encrypted` framing.

use super::*;

const BOUNDARY: &str = "--Encrypted Boundary";
const SPNEGO_ENCRYPTED: &str = "application/HTTP-SPNEGO-session-encrypted";

/// HTTP `Content-Type` of a sealed body (MS-WSMV 2.2.9.1).
pub const SEALED_CONTENT_TYPE: &str = "multipart/encrypted;protocol=\"application/HTTP-SPNEGO-session-encrypted\";boundary=\"Encrypted Boundary\"";

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
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

pub(super) const C2S_SIGN: &[u8] = b"session key to client-to-server signing key magic constant\0";
pub(super) const C2S_SEAL: &[u8] = b"session key to client-to-server sealing key magic constant\0";
pub(super) const S2C_SIGN: &[u8] = b"session key to server-to-client signing key magic constant\0";
pub(super) const S2C_SEAL: &[u8] = b"session key to server-to-client sealing key magic constant\0";

pub(super) fn seal_key(exported: &[u8; 16], flags: u32, magic: &[u8]) -> [u8; 16] {
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
    pub(super) fn new(exported: &[u8; 16], flags: u32, role: Role) -> Session {
        let c2s = Direction {
            sign_key: md5(&[exported, C2S_SIGN]),
            rc4: rc4_keyed(&seal_key(exported, flags, C2S_SEAL)),
            seq: 0,
        };
        let s2c = Direction {
            sign_key: md5(&[exported, S2C_SIGN]),
            rc4: rc4_keyed(&seal_key(exported, flags, S2C_SEAL)),
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
    pub(super) fn seal(&mut self, plaintext: &[u8]) -> ([u8; 16], Vec<u8>) {
        let d = &mut self.send;
        let seq = d.seq.to_le_bytes();
        let mac = hmac_md5(&d.sign_key, &[&seq, plaintext]);
        let mut data = plaintext.to_vec();
        d.rc4.apply_keystream(&mut data);
        let mut checksum = [0u8; 8];
        checksum.copy_from_slice(&mac[..8]);
        if self.key_exch {
            d.rc4.apply_keystream(&mut checksum);
        }
        let mut sig = [0u8; 16];
        sig[0] = 1;
        sig[4..12].copy_from_slice(&checksum);
        sig[12..].copy_from_slice(&seq);
        d.seq = d.seq.wrapping_add(1);
        (sig, data)
    }

    pub(super) fn unseal(&mut self, sig: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, NtlmFailure> {
        let d = &mut self.recv;
        let expected_seq = d.seq;
        let mut data = ciphertext.to_vec();
        d.rc4.apply_keystream(&mut data);
        let mut checksum = [0u8; 8];
        checksum.copy_from_slice(&sig[4..12]);
        if self.key_exch {
            d.rc4.apply_keystream(&mut checksum);
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

    /// Parses a `multipart/encrypted` body by length (the ciphertext may contain anything,
    /// boundary bytes included) and unseals it. A CRLF before the closing boundary is refused,
    /// as Windows refuses it.
    pub fn unseal_body(&mut self, body: &[u8]) -> Result<Vec<u8>, NtlmFailure> {
        let (sig, ciphertext) = parse_frame(body)?;
        self.unseal(sig, ciphertext)
    }

    /// Seals `plaintext` in the exact framing Windows emits.
    pub fn seal_body(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let (sig, data) = self.seal(plaintext);
        let mut out = format!(
            "{BOUNDARY}\r\n\tContent-Type: {SPNEGO_ENCRYPTED}\r\n\
             \tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={}\r\n\
             {BOUNDARY}\r\n\tContent-Type: application/octet-stream\r\n",
            plaintext.len()
        )
        .into_bytes();
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&sig);
        out.extend_from_slice(&data);
        out.extend_from_slice(format!("{BOUNDARY}--\r\n").as_bytes());
        out
    }
}

/// Splits a sealed body into (signature, ciphertext).
fn parse_frame(body: &[u8]) -> Result<(&[u8], &[u8]), NtlmFailure> {
    use NtlmFailure::BadFraming;
    let opening = format!("{BOUNDARY}\r\n");
    let rest = body
        .strip_prefix(opening.as_bytes())
        .ok_or(BadFraming("missing opening boundary"))?;
    // The first part is ASCII headers: searching it for the next boundary is safe, unlike
    // searching the binary part.
    let second = rest
        .windows(opening.len())
        .position(|w| w == opening.as_bytes())
        .ok_or(BadFraming("missing second part"))?;
    let header =
        std::str::from_utf8(&rest[..second]).map_err(|_| BadFraming("non-ASCII part header"))?;
    let mut length = None;
    let mut protocol_ok = false;
    for line in header.split("\r\n").map(str::trim) {
        if let Some(v) = strip_prefix_ci(line, "content-type:") {
            protocol_ok |= v.trim().eq_ignore_ascii_case(SPNEGO_ENCRYPTED);
        } else if let Some(v) = strip_prefix_ci(line, "originalcontent:") {
            length = v
                .split(';')
                .find_map(|p| strip_prefix_ci(p.trim(), "length="))
                .and_then(|n| n.parse::<usize>().ok());
        }
    }
    if !protocol_ok {
        return Err(BadFraming(
            "first part is not application/HTTP-SPNEGO-session-encrypted",
        ));
    }
    let length = length.ok_or(BadFraming("no Length= in OriginalContent"))?;
    let rest = &rest[second + opening.len()..];
    let line_end = rest
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or(BadFraming("truncated second part"))?;
    let ct =
        std::str::from_utf8(&rest[..line_end]).map_err(|_| BadFraming("non-ASCII part header"))?;
    if !strip_prefix_ci(ct.trim(), "content-type:")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/octet-stream"))
    {
        return Err(BadFraming("second part is not application/octet-stream"));
    }
    let rest = &rest[line_end + 2..];
    if u32_at(rest, 0) != Some(16) {
        return Err(BadFraming("signature length is not 16"));
    }
    let sig = rest.get(4..20).ok_or(BadFraming("truncated signature"))?;
    let end = 20usize
        .checked_add(length)
        .ok_or(BadFraming("Length out of range"))?;
    let ciphertext = rest
        .get(20..end)
        .ok_or(BadFraming("ciphertext shorter than Length"))?;
    let tail = &rest[end..];
    let closing = format!("{BOUNDARY}--");
    let after = tail.strip_prefix(closing.as_bytes()).ok_or(BadFraming(
        "closing boundary does not follow the ciphertext",
    ))?;
    if !(after.is_empty() || after == b"\r\n") {
        return Err(BadFraming("data after the closing boundary"));
    }
    Ok((sig, ciphertext))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}
