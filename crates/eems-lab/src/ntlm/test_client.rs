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
    rc4_keyed(&kek).apply_keystream(&mut enc);

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
