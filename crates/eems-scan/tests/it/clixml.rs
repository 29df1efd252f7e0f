//! The CLIXML stderr decoder the scanner relies on (winrm-rs's) never panics, however
//! Windows cuts its output across Receives.

use proptest::prelude::*;

/// Pieces of Windows PowerShell's CLIXML stderr, to build documents cut anywhere.
const CLIXML_PIECES: &[&str] = &[
    "#< CLIXML\r\n",
    "<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\">",
    "<S S=\"Error\">",
    "</S>",
    "_x000D__x000A_",
    "_x00",
    "&lt;",
    "&amp;",
    "&#x1F600;",
    "<Obj S=\"progress\" RefId=\"0\"><TN RefId=\"0\"><T>System.Management.Automation.PSCustomObject</T></TN><MS><I64 N=\"SourceId\">1</I64></MS></Obj>",
    "<S S=\"warning\">",
    "</Objs>",
    "plain text ",
    "\u{e9}\u{4e2d}",
    "<",
    ">",
    "\"",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100_000))]

    /// winrm-rs decodes the CLIXML stderr the scanner reads; Windows cuts it across
    /// Receives anywhere (mid-tag, mid-escape, mid-UTF-8). No cut of any mix may panic.
    #[test]
    fn clixml_stderr_decoding_never_panics(
        pieces in proptest::collection::vec(0..CLIXML_PIECES.len(), 0..24),
        cuts in proptest::collection::vec(0usize..64, 0..8),
        raw in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let mut doc: Vec<u8> = pieces.iter().flat_map(|&i| CLIXML_PIECES[i].bytes()).collect();
        doc.extend_from_slice(&raw);
        let mut decoder = winrm_rs::StderrDecoder::new();
        let mut at = 0;
        for c in cuts {
            let end = (at + c).min(doc.len());
            let _ = decoder.push(&doc[at..end]);
            at = end;
        }
        let _ = decoder.push(&doc[at..]);
        let _ = decoder.finish();
    }
}
