//! TEMPORARY stand-in with the agreed API; replaced by the real analysis at merge.
pub mod build;
use crate::facts::{ExchangeServerFacts, HostFacts};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteType {
    Grey,
    Green,
    Yellow,
    Red,
}
impl WriteType {
    pub fn css_class(self) -> &'static str {
        ""
    }
}
#[derive(Debug, Clone)]
pub struct Line {
    pub name: Option<String>,
    pub details: String,
    pub write_type: WriteType,
    pub tab: u8,
    pub html: bool,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Critical,
    Error,
    Skipped,
}
impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Critical => "critical",
            Status::Error => "error",
            Status::Skipped => "skipped",
        }
    }
}
#[derive(Debug, Clone)]
pub struct Assessment {
    pub eems_state: String,
    pub service_check: Option<String>,
    pub pattern_service: Option<String>,
    pub telemetry: Option<bool>,
    pub status: Status,
    pub lines: Vec<Line>,
    pub findings: Vec<String>,
    pub build: Option<build::ExchangeBuild>,
    pub product: Option<build::Product>,
}
pub fn assess(_org: Option<bool>, _s: &ExchangeServerFacts, _h: &HostFacts) -> Assessment {
    Assessment {
        eems_state: "Enabled".into(),
        service_check: None,
        pattern_service: None,
        telemetry: None,
        status: Status::Ok,
        lines: vec![],
        findings: vec![],
        build: None,
        product: None,
    }
}
pub enum Scope {
    InScope,
    Skip(String),
}
pub fn scope(_s: &ExchangeServerFacts) -> Scope {
    Scope::InScope
}
