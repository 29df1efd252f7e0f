//! CHALLENGE and AUTHENTICATE (MS-NLMP 3.2.5.1).

use super::*;

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
        rc4_keyed(&key_exchange_key).apply_keystream(&mut k);
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
