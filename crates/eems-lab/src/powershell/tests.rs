use super::clixml::wrap;
use super::*;
use serde_json::{Value, json};

fn h(s: &str) -> Result<Header, ParseError> {
    parse_header(s)
}

#[test]
fn header_forms() {
    let s = "$OcsUrl = 'https://officeclient.microsoft.com/GetExchangeMitigations'\r\n$Proxy = $null\n$OcsTimeoutSec = 20\r\n# eems-probe:host:1\r\nbody";
    let hd = h(s).expect("parses");
    assert_eq!(hd.assignments.len(), 3);
    assert_eq!(
        hd.get("ocsurl"),
        Some(&HeaderValue::Str(
            "https://officeclient.microsoft.com/GetExchangeMitigations".into()
        ))
    );
    assert_eq!(hd.get("Proxy"), Some(&HeaderValue::Null));
    assert_eq!(hd.get("OcsTimeoutSec"), Some(&HeaderValue::Int(20)));
    assert!(s[hd.body_offset..].starts_with("# eems-probe:host:1"));
}

#[test]
fn quotes_doubled_and_unicode() {
    let hd = h("$A = 'it''s'\n$B = 'x\u{2019}\u{2019}y'\n$C = \u{2018}a\u{2019}\n$D = 'p\u{201A}'q'\n$E = 'a\u{201B}'b'\n#")
        .expect("parses");
    assert_eq!(hd.get("A"), Some(&HeaderValue::Str("it's".into())));
    assert_eq!(hd.get("B"), Some(&HeaderValue::Str("x\u{2019}y".into())));
    // Any of the quotes opens and closes a literal.
    assert_eq!(hd.get("C"), Some(&HeaderValue::Str("a".into())));
    // A doubled pair of mixed quotes is one literal quote: the second one.
    assert_eq!(hd.get("D"), Some(&HeaderValue::Str("p'q".into())));
    assert_eq!(hd.get("E"), Some(&HeaderValue::Str("a'b".into())));
    // A single Unicode quote inside a literal ends it early: the rest is an injection.
    assert!(h("$P = 'a\u{2019}; evil'\n#").is_err());
}

#[test]
fn literal_across_lines_and_inert_subexpression() {
    let hd = h("$A = 'line1\r\nline2 $(Remove-Item C:\\) `n'\r\n# body").expect("parses");
    assert_eq!(
        hd.get("A"),
        Some(&HeaderValue::Str(
            "line1\r\nline2 $(Remove-Item C:\\) `n".into()
        ))
    );
}

#[test]
fn header_errors() {
    for (s, id) in [
        ("$Proxy = http://proxy:8080\n# b", "UnexpectedToken"),
        ("$Proxy = $(calc)\n# b", "UnexpectedToken"),
        (
            "$Proxy = ''; Write-Output pwned; ''\n# b",
            "UnexpectedToken",
        ),
        ("$Proxy = 'abc\n# b", "TerminatorExpectedAtEndOfString"),
        ("$Proxy =\n# b", "ExpectedValueExpression"),
        ("$Proxy = $nullx\n# b", "UnexpectedToken"),
        ("$N = 12abc\n# b", "UnexpectedToken"),
    ] {
        assert_eq!(h(s).map_err(|e| e.error_id), Err(id), "{s}");
    }
}

#[test]
fn encoded_switch_spellings() {
    for ok in ["e", "en", "enc", "encodedc", "encodedcommand", "ec"] {
        assert!(is_encoded_switch(ok), "{ok}");
    }
    for bad in ["ex", "ep", "encodedcommandx", "c", ""] {
        assert!(!is_encoded_switch(bad), "{bad}");
    }
}

#[test]
fn versions() {
    assert_eq!(
        admin_display_version("15.2.1544.4"),
        "Version 15.2 (Build 1544.4)"
    );
    assert_eq!(padded_version("15.2.1544.4"), "15.02.1544.004");
    assert_eq!(padded_version("15.1.2507.39"), "15.01.2507.039");
}

#[test]
fn ps51_servers_stay_an_array() {
    let text = "[org]\nname = \"O\"\nservers_error = \"AD down\"\n[[server]]\nname = \"EX01\"\naddress = \"127.0.0.11\"\n";
    let mut fleet: Fleet = toml::from_str(text).expect("fleet");
    let j: Value = serde_json::from_str(&org_json(&fleet, true)).expect("json");
    assert_eq!(j["servers"], json!([]));
    fleet.org.servers_error = None;
    let j: Value = serde_json::from_str(&org_json(&fleet, true)).expect("json");
    assert_eq!(j["servers"].as_array().map(Vec::len), Some(1));
    assert_eq!(j["servers"][0]["mitigations_applied"], Value::Null);
}

#[test]
fn clixml_escapes() {
    assert_eq!(
        clixml_escape("a<b>&\r\n_x_y"),
        "a&lt;b&gt;&amp;_x000D__x000A__x005F_x_y"
    );
}

#[test]
fn wrapping_matches_console() {
    let msg = "AdvertisingID : The term 'AdvertisingID' is not recognized as the name of a cmdlet, function, script file, or operable program. Check the spelling of the name, or if a path was included, verify that the path is correct and try again.";
    let lines = wrap(msg);
    assert_eq!(lines.len(), 2);
    assert!(lines[0].ends_with("or operable"));
    assert_eq!(lines.join(" "), msg);
}
