//! eems-scan, the command line: it reads the inventory (`eems_core::inventory`), asks the
//! organisation once and probes every Mailbox server over WinRM ([`transport`], driven by
//! [`scan`]), judges the facts with `eems_core::analysis`, and writes the reports
//! ([`render`]). [`cli`] is the manual; [`app`] turns a parsed command line into a run.
//! `kerberos` (feature `kerberos`) gets Kerberos credentials from a ticket cache or the
//! password (not wired into the transport yet).

pub mod app;
pub mod cli;
pub mod doctor;
#[cfg(feature = "kerberos")]
pub mod exchange_ps;
pub mod exit;
#[cfg(feature = "kerberos")]
pub mod kerberos;
#[cfg(feature = "kerberos")]
mod kerberos_cache;
#[cfg(feature = "kerberos")]
pub mod kerberos_scan;
#[cfg(feature = "kerberos")]
pub mod krb5_conf;
pub mod profile;
pub mod render;
pub mod scan;
pub mod transport;
