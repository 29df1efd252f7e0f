//! Inventory parsing, format by format, and the errors an admin sees.

use super::json::element_lines;
use super::*;
use proptest::prelude::*;

fn csv(text: &str) -> Result<Vec<InventoryEntry>, InventoryError> {
    parse(text, Format::Csv, "servers.csv")
}

fn err_text(r: Result<Vec<InventoryEntry>, InventoryError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn csv_full() {
    let text = "\u{FEFF}# fleet\r\n Name ,ADDRESS,Port,role,Site,notes\r\n\r\nEX01,10.0.0.11,5985,Mailbox,HQ,x\r\n# comment\r\n\"EX02\",,,\"Edge\",,\r\nEX03\r\n";
    let v = csv(text).unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(
        v[0],
        InventoryEntry {
            name: "EX01".into(),
            address: Some("10.0.0.11".into()),
            port: Some(5985),
            role: Some("Mailbox".into()),
            site: Some("HQ".into()),
            fqdn: None,
            line: 4,
        }
    );
    assert_eq!(v[0].connect_host(), "10.0.0.11");
    assert!(v[1].is_edge());
    assert_eq!(v[1].connect_host(), "EX02");
    assert_eq!((v[1].line, v[2].line), (6, 7));
    assert_eq!(v[2].port, None);
}

#[test]
fn csv_semicolon_from_excel() {
    let v = csv("Name;Address;Site\nEX01;ex01.contoso.com;Berlin\n").unwrap();
    assert_eq!(v[0].address.as_deref(), Some("ex01.contoso.com"));
    assert_eq!(v[0].site.as_deref(), Some("Berlin"));
}

#[test]
fn csv_errors() {
    let rows: &[(&str, &str)] = &[
        ("", "servers.csv: the inventory lists no servers"),
        (
            "# only a comment\n",
            "servers.csv: the inventory lists no servers",
        ),
        ("name\n", "servers.csv: the inventory lists no servers"),
        (
            "host,ip\nEX01,1.2.3.4\n",
            "servers.csv:1: the header has no 'name' column (columns found: \"host\", \"ip\")",
        ),
        (
            "name,port\nEX01,\nEX02,0\n",
            "servers.csv:3: bad port '0': must be a number from 1 to 65535",
        ),
        (
            "name,port\nEX01,65536\n",
            "servers.csv:2: bad port '65536': must be a number from 1 to 65535",
        ),
        (
            "name,port\nEX01,http\n",
            "servers.csv:2: bad port 'http': must be a number from 1 to 65535",
        ),
        ("name,site\n,HQ\n", "servers.csv:2: empty server name"),
        (
            "name\nEX01\nex01.\n",
            "servers.csv:3: duplicate server 'ex01.' (first listed on line 2)",
        ),
        (
            "name,address\nEX01,fe80::1\n",
            "servers.csv:2: invalid address 'fe80::1': IPv6 addresses are not supported by the WinRM client: use a DNS name or an IPv4 address",
        ),
        (
            "name,address\nEX01,ex01:5986\n",
            "servers.csv:2: invalid address 'ex01:5986': contains a port: put the port in the 'port' column",
        ),
        (
            "name\n\"EX 01\"\n",
            "servers.csv:2: invalid server name 'EX 01': whitespace or a control character at position 3 (a host name may contain letters, digits, '-', '.', '_')",
        ),
    ];
    for (text, want) in rows {
        assert_eq!(err_text(csv(text)), *want, "{text:?}");
    }
}

#[test]
fn name_rules() {
    let long_label = "a".repeat(64);
    let long_name = format!("{}.com", ["abcdefgh"; 29].join("."));
    let ok = [
        "EX01",
        "ex01.contoso.com",
        "ex01.contoso.com.",
        "EX_01",
        "10.0.0.1",
        "a-b",
    ];
    for n in ok {
        assert_eq!(check_host(n), Ok(()), "{n}");
    }
    let bad: &[(&str, &str)] = &[
        ("ex/01", "'/' at position 3"),
        ("CONTOSO\\EX01", "'\\' at position 8"),
        ("ex01\t", "whitespace or a control character at position 5"),
        ("-ex01", "starts with '-'"),
        (".ex01", "empty label"),
        ("ex..01", "empty label"),
        (".", "empty label"),
        ("http://ex01", "looks like a URL"),
        ("[::1]", "IPv6"),
        ("exé01", "'é' at position 3"),
        (&long_label, "longer than 63"),
        (&long_name, "longer than 255"),
    ];
    for (n, want) in bad {
        let e = check_host(n).unwrap_err();
        assert!(e.contains(want), "{n}: {e}");
    }
}

#[test]
fn txt_format() {
    let v = parse(
        "  EX01  \r\n\r\n# c\nex02.contoso.com\n",
        Format::Txt,
        "s.txt",
    )
    .unwrap();
    let names: Vec<(&str, usize)> = v.iter().map(|e| (e.name.as_str(), e.line)).collect();
    assert_eq!(names, vec![("EX01", 1), ("ex02.contoso.com", 4)]);
    assert_eq!(
        err_text(parse("EX01\nEX01\n", Format::Txt, "s.txt")),
        "s.txt:2: duplicate server 'EX01' (first listed on line 1)"
    );
    assert_eq!(
        err_text(parse("\n# none\n", Format::Txt, "s.txt")),
        "s.txt: the inventory lists no servers"
    );
}

#[test]
fn json_format() {
    let text = r#"[
  {"Name": "EX01", "address": "10.0.0.11", "PORT": 5986, "role": "Mailbox", "extra": [1]},
  {"name": "EX02", "port": "5985", "site": null},
  {"name": "EX03", "role": "EdgeTransport"}
]"#;
    let v = parse(text, Format::Json, "s.json").unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(
        (v[0].port, v[1].port, v[2].port),
        (Some(5986), Some(5985), None)
    );
    assert_eq!((v[0].line, v[1].line, v[2].line), (2, 3, 4));
    assert!(v[2].is_edge() && !v[0].is_edge());
}

#[test]
fn json_errors() {
    let rows: &[(&str, &str)] = &[
        ("[]", "s.json: the inventory lists no servers"),
        (
            r#"{"name":"EX01"}"#,
            "s.json:1: expected a JSON array of server objects, found an object",
        ),
        (
            "[\n\"EX01\"]",
            "s.json:2: entry 1 must be an object, found a string",
        ),
        (
            "[{\"name\":\"EX01\"},\n {\"name\":\"EX02\",\"port\":true}]",
            "s.json:2: entry 2: field 'port' must be a number or a numeric string, found a boolean",
        ),
        (
            "[{\"name\":1}]",
            "s.json:1: entry 1: field 'name' must be a string, found a number",
        ),
        (
            "[{\"name\":\"EX01\",\"port\":-1}]",
            "s.json:1: bad port '-1': must be a number from 1 to 65535",
        ),
        (
            "[{\"name\":\"EX01\",\"port\":5985.5}]",
            "s.json:1: bad port '5985.5': must be a number from 1 to 65535",
        ),
        ("[{\"site\":\"HQ\"}]", "s.json:1: empty server name"),
    ];
    for (text, want) in rows {
        assert_eq!(
            err_text(parse(text, Format::Json, "s.json")),
            *want,
            "{text}"
        );
    }
    let e = err_text(parse("[{\"name\":}", Format::Json, "s.json"));
    assert!(e.starts_with("s.json:1: invalid JSON:"), "{e}");
}

#[test]
fn element_lines_skip_strings_with_brackets() {
    let text = "[\n{\"name\":\"a,[b]\"},\n\n  {\"name\":\"c\\\"]\"}\n]";
    assert_eq!(element_lines(text), vec![2, 4]);
}

#[test]
fn encodings() {
    let e = parse_bytes(b"name\nEX01\n\xff\n", Format::Csv, "s.csv").unwrap_err();
    assert_eq!(
        e.to_string(),
        "s.csv:3: the file is not valid UTF-8: save it as UTF-8"
    );
    let e = parse_bytes(b"\xff\xfen\x00a\x00", Format::Csv, "s.csv").unwrap_err();
    assert!(e.to_string().contains("UTF-16"), "{e}");
}

#[test]
fn load_dispatch_and_file_errors() {
    let dir = std::env::temp_dir().join(format!("eems-inv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv_path = dir.join("Servers.CSV");
    std::fs::write(&csv_path, "name\nEX01\n").unwrap();
    assert_eq!(load(&csv_path).unwrap()[0].name, "EX01");
    let json_path = dir.join("s.json");
    std::fs::write(&json_path, r#"[{"name":"EX01"}]"#).unwrap();
    assert_eq!(load(&json_path).unwrap().len(), 1);

    let e = load(&dir.join("missing.txt")).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Unreadable(_)));
    assert!(
        e.to_string()
            .contains("missing.txt: cannot read the inventory"),
        "{e}"
    );
    let e = load(&dir.join("s.xlsx")).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("unsupported inventory file type \".xlsx\": use .csv, .txt or .json"),
        "{e}"
    );
    let e = load(&dir.join("noext")).unwrap_err();
    assert!(e.to_string().contains("\"(none)\""), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        for f in [Format::Csv, Format::Txt, Format::Json] {
            let _ = parse_bytes(&bytes, f, "p");
        }
    }

    #[test]
    fn valid_entries_round_trip(names in proptest::collection::hash_set("[a-z][a-z0-9-]{0,10}", 1..20)) {
        let text: String = names.iter().map(|n| format!("{n}\n")).collect();
        let v = parse(&text, Format::Txt, "p").unwrap();
        prop_assert_eq!(v.len(), names.len());
    }
}

#[test]
fn fqdn_column_csv_json_and_txt_names() {
    let v = csv("name,address,fqdn\nEX01,127.0.0.5,ex01.contoso.com.\nEX02,,\n").unwrap();
    assert_eq!(v[0].fqdn.as_deref(), Some("ex01.contoso.com."));
    assert_eq!(v[0].kerberos_fqdn(), Some("ex01.contoso.com"));
    assert_eq!(v[0].connect_host(), "127.0.0.5");
    assert_eq!(v[1].kerberos_fqdn(), None);
    let j = parse(
        r#"[{"name": "EX01", "FQDN": "ex01.contoso.com"}]"#,
        Format::Json,
        "s.json",
    )
    .unwrap();
    assert_eq!(j[0].kerberos_fqdn(), Some("ex01.contoso.com"));
    // No address: TCP goes to the FQDN, so that Kerberos's SPN and Host and the connection
    // name the same server.
    assert_eq!(j[0].connect_host(), "ex01.contoso.com");
    let t = parse("ex01.contoso.com\nEX02\n10.0.0.1\n", Format::Txt, "s.txt").unwrap();
    assert_eq!(t[0].kerberos_fqdn(), Some("ex01.contoso.com"));
    assert_eq!(t[1].kerberos_fqdn(), None);
    assert_eq!(t[2].kerberos_fqdn(), None);
}

#[test]
fn fqdn_errors_name_the_value_and_the_line() {
    for (text, want) in [
        (
            "name,fqdn\nEX01,ex01\n",
            "servers.csv:2: invalid fqdn 'ex01': has no domain: give the full DNS name, e.g. ex01.contoso.com",
        ),
        (
            "name,fqdn\nEX01,10.0.0.1\n",
            "servers.csv:2: invalid fqdn '10.0.0.1': is an IPv4 address: give the server's DNS name (put addresses in the 'address' column)",
        ),
        (
            "name,fqdn\nEX01,ex01.contoso.com:5985\n",
            "servers.csv:2: invalid fqdn 'ex01.contoso.com:5985': contains a port: put the port in the 'port' column",
        ),
    ] {
        assert_eq!(err_text(csv(text)), want);
    }
}
