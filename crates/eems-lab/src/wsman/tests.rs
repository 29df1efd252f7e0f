use super::xml::parse_xml;
use super::*;

#[test]
fn durations() {
    assert_eq!(parse_duration("PT20S"), Some(Duration::from_secs(20)));
    assert_eq!(parse_duration("PT60.000S"), Some(Duration::from_secs(60)));
    assert_eq!(parse_duration("PT0.2S"), Some(Duration::from_millis(200)));
    assert_eq!(parse_duration("P0DT0H1M5S"), Some(Duration::from_secs(65)));
    assert_eq!(parse_duration("PT1H"), Some(Duration::from_secs(3600)));
    for bad in [
        "", "P", "PT", "20S", "PTS", "PT1.2.3S", "PT5X", "PT5S5M", "-PT5S",
    ] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

#[test]
fn xml_entities_and_prefixes() {
    let n = parse_xml(
        br#"<?xml version="1.0"?><e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body><x:A xmlns:x="urn:x" k="&quot;&apos;">a&amp;b&lt;&#x41;&#66;<![CDATA[<c>]]></x:A></e:Body></e:Envelope>"#,
    )
    .expect("parses");
    assert_eq!(n.name, "Envelope");
    assert_eq!(n.ns, NS_S);
    let a = n.child("Body").and_then(|b| b.child("A")).expect("A");
    assert_eq!(a.ns, "urn:x");
    assert_eq!(a.text, "a&b<AB<c>");
    assert_eq!(a.attr("k"), Some("\"'"));
    assert!(parse_xml(b"<a><b></a>").is_err());
    assert!(parse_xml(b"<a>&nope;</a>").is_err());
    assert!(parse_xml(b"<p:a/>").is_err());
}

#[test]
fn machine_from_endpoint() {
    assert_eq!(
        HostState::machine("http://127.0.0.11:5985/wsman"),
        "127.0.0.11"
    );
    assert_eq!(
        HostState::machine("https://ex01.lab.local/wsman"),
        "ex01.lab.local"
    );
    assert_eq!(HostState::machine("http://[::1]:5985/wsman"), "::1");
}
