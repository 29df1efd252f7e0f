//! TEMPORARY stand-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExchangeBuild {
    pub major: u32,
    pub minor: u32,
    pub build: u32,
    pub revision: u32,
}
impl std::fmt::Display for ExchangeBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.major, self.minor, self.build, self.revision
        )
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    Exchange2013,
    Exchange2016,
    Exchange2019,
    ExchangeSE,
    Unknown,
}
impl Product {
    pub fn label(self) -> &'static str {
        "Unknown"
    }
}
impl std::str::FromStr for ExchangeBuild {
    type Err = String;
    fn from_str(_s: &str) -> Result<Self, String> {
        Err("stub".into())
    }
}
pub fn product(_b: &ExchangeBuild) -> Product {
    Product::Unknown
}
