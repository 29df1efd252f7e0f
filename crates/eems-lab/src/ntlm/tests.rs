use super::seal::{C2S_SEAL, C2S_SIGN, S2C_SEAL, S2C_SIGN, seal_key};
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
    rc4_keyed(&base).apply_keystream(&mut enc);
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
    // Ed25519 has no hash to bind with.
    assert_eq!(
        channel_binding_hash(&self_signed(&rcgen::PKCS_ED25519)),
        None
    );

    assert_eq!(channel_binding_hash(b"\x30\x03\x02\x01\x00"), None);
    assert_eq!(channel_binding_hash(&[]), None);
}
