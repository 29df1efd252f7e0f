//! Side by side against the lab: the HTML fleet report of a real scan, drift between two
//! real scans, and discovery from one server.

use std::collections::BTreeSet;

use crate::common::*;
use scraper::{Html, Selector};
use serde_json::Value;

const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// Five servers; the fifth is known to Exchange but not in the inventory, under a
/// hostile name. FQDNs are the loopback addresses so that discovery's inventory
/// (address = FQDN) reaches the lab.
fn fleet(octet: u8, stopped: Option<&str>, blocked: Option<&str>) -> String {
    let mut servers = Vec::new();
    for i in 1..=4u8 {
        let name = format!("SB{i:02}");
        let address = format!("127.0.{octet}.{i}");
        let mut extra = format!("fqdn = \"{address}\"\n");
        if stopped == Some(name.as_str()) {
            extra.push_str("service_status = \"Stopped\"\n");
        }
        if blocked == Some(name.as_str()) {
            extra.push_str("mitigations_blocked = [\"M2\"]\n");
        }
        if i == 4 {
            // Hostile text from Active Directory: a mitigation ID and a site.
            extra.push_str(&format!(
                "mitigations_applied = [\"PING1\", {:?}]\nsite = {:?}\n",
                HOSTILE, HOSTILE
            ));
        }
        servers.push((name, address, extra));
    }
    servers.push((
        HOSTILE.to_string(),
        format!("127.0.{octet}.5"),
        format!("in_inventory = false\nfqdn = \"127.0.{octet}.5\"\n"),
    ));
    fleet_toml("", &servers)
}

fn select<'a>(doc: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    doc.select(&Selector::parse(css).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_of_a_lab_scan_has_one_row_per_server_and_stays_inert() {
    let dir = scratch("side-html");
    let lab = start_lab(
        fleet_from_toml(&fleet(70, Some("SB02"), Some("SB03"))),
        &dir,
    )
    .await;
    let html_path = dir.join("out.html");
    let (out, rep) = scan_lab(&dir, PASSWORD, &["--html", html_path.to_str().unwrap()]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&html_path).unwrap();
    let doc = Html::parse_document(&text);

    let rows = select(&doc, "#matrix tbody tr");
    assert_eq!(rows.len(), rep["servers"].as_array().unwrap().len());
    assert_eq!(rows.len(), 4);
    let cell = |server: &str, col: &str| -> (String, String) {
        let row = rows
            .iter()
            .find(|r| r.text().any(|t| t == server))
            .unwrap_or_else(|| panic!("no row for {server}"));
        let td = row
            .select(&Selector::parse(&format!("td[data-col=\"{col}\"]")).unwrap())
            .next()
            .unwrap_or_else(|| panic!("{server}: no {col} cell"));
        (
            td.text().collect::<String>(),
            td.value().attr("class").unwrap_or("").to_string(),
        )
    };
    assert_eq!(cell("SB01", "status").0, "ok");
    let eems = cell("SB01", "eems");
    assert_eq!(eems, ("Enabled".into(), "Green".into()));
    assert_eq!(
        cell("SB02", "service"),
        ("Investigate".into(), "Yellow".into())
    );
    assert_eq!(cell("SB01", "service").1, "", "Running is Grey (no class)");
    assert_eq!(cell("SB03", "blocked").1, "Yellow");

    // Hostile text from AD is text, never markup.
    assert!(
        select(&doc, "img").is_empty(),
        "an <img> element was created"
    );
    assert!(
        !text.contains(HOSTILE),
        "the hostile string appears unescaped"
    );
    assert!(
        doc.root_element().text().any(|t| t.contains(HOSTILE)),
        "the hostile text is shown as text"
    );
    // Self-contained: nothing loaded from the network.
    let external: Vec<String> = select(
        &doc,
        "script[src], link[href], img[src], iframe, object, embed",
    )
    .iter()
    .map(|e| e.html())
    .collect();
    assert!(external.is_empty(), "external references: {external:?}");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_two_lab_scans_reports_exactly_the_regressions() {
    let dir1 = scratch("side-cmp-1");
    let lab = start_lab(fleet_from_toml(&fleet(71, None, None)), &dir1).await;
    let (out1, _) = scan_lab(&dir1, PASSWORD, &[]).await;
    assert_eq!(
        out1.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out1.stderr)
    );
    lab.shutdown().await;

    // The same organisation a week later: SB02's service stopped, M2 blocked on SB03.
    let dir2 = scratch("side-cmp-2");
    let lab = start_lab(
        fleet_from_toml(&fleet(71, Some("SB02"), Some("SB03"))),
        &dir2,
    )
    .await;
    let (out2, _) = scan_lab(&dir2, PASSWORD, &[]).await;
    assert_eq!(out2.status.code(), Some(1));
    lab.shutdown().await;

    let drift = dir2.join("drift.json");
    let out = eems_scan(
        &[
            "compare",
            dir1.join("out.json").to_str().unwrap(),
            dir2.join("out.json").to_str().unwrap(),
            "--json",
            drift.to_str().unwrap(),
        ],
        PASSWORD,
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: Value = serde_json::from_str(&std::fs::read_to_string(&drift).unwrap()).unwrap();
    let regressions: BTreeSet<(String, String)> = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "regression")
        .map(|c| {
            (
                c["server"].as_str().unwrap_or("").to_string(),
                c["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("SB02", "status"),
        ("SB02", "service"),
        ("SB03", "status"),
        ("SB03", "mitigations_blocked"),
    ]
    .iter()
    .map(|(s, f)| (s.to_string(), f.to_string()))
    .collect();
    assert_eq!(regressions, expected, "{d:#}");
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(
        console.contains("SB02") && console.contains("SB03"),
        "{console}"
    );

    // The same scan against itself: nothing changed, exit 0.
    let same = eems_scan(
        &[
            "compare",
            dir2.join("out.json").to_str().unwrap(),
            dir2.join("out.json").to_str().unwrap(),
        ],
        PASSWORD,
    )
    .await;
    assert_eq!(same.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_writes_an_inventory_scan_accepts() {
    let dir = scratch("side-discover");
    let mut toml = fleet(72, None, None);
    toml.push_str(
        "[[server]]\nname = \"SBEDGE\"\naddress = \"127.0.72.6\"\nfqdn = \"127.0.72.6\"\nrole = \"Edge\"\n",
    );
    // The legacy snap-in path, in an organisation that delegates (the lab's default denies
    // the second hop): servers named by address have no FQDN for Kerberos.
    let mut fleet = fleet_from_toml(&toml);
    fleet.org.second_hop_denied = false;
    let lab = start_lab(fleet, &dir).await;
    let inv = dir.join("discovered.csv");
    let out = eems_scan(
        &[
            "discover",
            "--from",
            "127.0.72.1",
            "-u",
            USER,
            "--out",
            inv.to_str().unwrap(),
            "--org-via",
            "winrs-snapin",
        ],
        PASSWORD,
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rdr = csv::Reader::from_path(&inv).unwrap();
    let names: BTreeSet<String> = rdr.records().map(|r| r.unwrap()[0].to_string()).collect();
    let expected: BTreeSet<String> = ["SB01", "SB02", "SB03", "SB04", "SBEDGE", HOSTILE]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        names, expected,
        "discover lists every server the organisation knows"
    );

    // Without the hostile name (the inventory rejects names a host cannot have),
    // scan accepts what discover wrote.
    let text = std::fs::read_to_string(&inv).unwrap();
    let clean: String = text
        .lines()
        .filter(|l| !l.starts_with("<img"))
        .map(|l| format!("{l}\n"))
        .collect();
    let clean_inv = dir.join("clean.csv");
    std::fs::write(&clean_inv, clean).unwrap();
    let json = dir.join("scan.json");
    let out = eems_scan(
        &[
            "scan",
            "-i",
            clean_inv.to_str().unwrap(),
            "-u",
            USER,
            "--json",
            json.to_str().unwrap(),
            "--org-via",
            "winrs-snapin",
        ],
        PASSWORD,
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep = report(&json);
    assert_eq!(rep["summary"]["ok"], 4);

    // And --discover-from scans the whole organisation without an inventory file.
    let json2 = dir.join("scan2.json");
    let out = eems_scan(
        &[
            "scan",
            "--discover-from",
            "127.0.72.1",
            "-u",
            USER,
            "--json",
            json2.to_str().unwrap(),
            "--org-via",
            "winrs-snapin",
        ],
        PASSWORD,
    )
    .await;
    let rep2 = report(&json2);
    let scanned: BTreeSet<String> = rep2["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["server"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        scanned,
        expected,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let edge = row(&rep2, "SBEDGE");
    assert_eq!(
        edge["status"], "skipped",
        "Edge is skipped as usual: {edge}"
    );
    assert!(
        lab.log_records().iter().all(|r| r.server != "SBEDGE"),
        "the Edge server was contacted"
    );
    lab.shutdown().await;
}
