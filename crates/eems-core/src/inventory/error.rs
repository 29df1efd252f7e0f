//! What is wrong with an inventory, where: every message names the file and, where one
//! exists, the line, so an admin can fix a 500-line inventory without guessing.

/// An inventory problem, located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{}{kind}", line.map(|l| format!("{l}: ")).unwrap_or_else(|| " ".into()))]
pub struct InventoryError {
    /// The file (or origin label) the inventory came from.
    pub origin: String,
    /// 1-based line, when the problem has one.
    pub line: Option<usize>,
    pub kind: ErrorKind,
}

/// The kinds of inventory problems.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The file could not be read.
    #[error("cannot read the inventory: {0}")]
    Unreadable(String),
    /// The extension is not one of `.csv`, `.txt`, `.json`.
    #[error("unsupported inventory file type {0:?}: use .csv, .txt or .json")]
    UnsupportedExtension(String),
    /// The bytes are not UTF-8 (`utf16` when a UTF-16 byte order mark was seen).
    #[error("{}", if *utf16 {
        "the file is UTF-16 (\"Unicode\" in Notepad/Excel): save it as UTF-8"
    } else {
        "the file is not valid UTF-8: save it as UTF-8"
    })]
    InvalidUtf8 { utf16: bool },
    /// No server entries at all.
    #[error("the inventory lists no servers")]
    Empty,
    /// The CSV header has no `name` column; the columns found are listed.
    #[error("the header has no 'name' column (columns found: {})", quoted_list(.0))]
    NoNameColumn(Vec<String>),
    /// A CSV row could not be read.
    #[error("unreadable CSV: {0}")]
    Csv(String),
    /// The JSON text is malformed or not an array of objects.
    #[error("{0}")]
    Json(String),
    /// A JSON field holds the wrong type.
    #[error("entry {entry}: field '{field}' must be {expected}, found {found}")]
    WrongType {
        entry: usize,
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("empty server name")]
    EmptyName,
    #[error("duplicate server '{name}' (first listed on line {first_line})")]
    Duplicate { name: String, first_line: usize },
    #[error("bad port '{0}': must be a number from 1 to 65535")]
    BadPort(String),
    #[error("invalid server name '{name}': {reason}")]
    InvalidName { name: String, reason: String },
    #[error("invalid address '{address}': {reason}")]
    BadAddress { address: String, reason: String },
    #[error("invalid fqdn '{fqdn}': {reason}")]
    BadFqdn { fqdn: String, reason: String },
}

fn quoted_list(items: &[String]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    let quoted: Vec<String> = items.iter().map(|c| format!("{c:?}")).collect();
    quoted.join(", ")
}
