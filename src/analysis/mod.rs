//! (under construction)
pub mod build;
