//! MS-WSMV message sealing (MS-NLMP 3.4); the `multipart/encrypted` framing is
//! `eems_core::sealing`, shared with Kerberos.

use super::*;
use eems_core::sealing;

/// HTTP `Content-Type` of a sealed body (MS-WSMV 2.2.9.1).
pub const SEALED_CONTENT_TYPE: &str = sealing::Protocol::Spnego.content_type();

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
