//! TEMPORARY stand-in.
use std::path::Path;
#[derive(Debug, Clone)]
pub struct InventoryEntry {
    pub name: String,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub role: Option<String>,
    pub site: Option<String>,
    pub line: usize,
}
impl InventoryEntry {
    pub fn is_edge(&self) -> bool {
        false
    }
    pub fn connect_host(&self) -> &str {
        self.address.as_deref().unwrap_or(&self.name)
    }
}
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("x")]
    X,
}
pub fn load(_p: &Path) -> Result<Vec<InventoryEntry>, InventoryError> {
    Err(InventoryError::X)
}
