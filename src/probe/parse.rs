//! TEMPORARY stand-in.
use crate::facts::{HostFacts, OrgFacts};
pub const RESULT_PREFIX: &str = "EEMS-PROBE-RESULT ";
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("no result line")]
    NoResultLine { excerpt: String },
}
pub fn parse_org(_s: &str) -> Result<OrgFacts, ParseError> {
    Err(ParseError::NoResultLine {
        excerpt: String::new(),
    })
}
pub fn parse_host(_s: &str) -> Result<HostFacts, ParseError> {
    Err(ParseError::NoResultLine {
        excerpt: String::new(),
    })
}
pub fn excerpt(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
