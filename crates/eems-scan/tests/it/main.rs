//! eems-scan integration tests: the real binary against the lab, as an admin runs it.

mod browser;
mod clixml;
mod common;
#[cfg(feature = "kerberos")]
mod doctor_kerberos;
mod everyday;
mod evidence;
mod golden;
#[cfg(feature = "kerberos")]
mod kerberos;
#[cfg(feature = "kerberos")]
mod kerberos_auto;
mod org_data;
#[cfg(feature = "kerberos")]
mod org_psrp;
mod reliability;
mod report_cli;
mod scan_lab;
mod side_by_side;
