//! eems-lab integration tests: the lab's wire behaviour, checked with the same client
//! crate the scanner uses, raw sockets, and an independent client (pywinrm).

#[cfg(feature = "kerberos")]
mod exchange_ps_epa;
mod kdc;
mod lab_net;
mod lab_wsman;
#[cfg(unix)]
mod perf_smoke;
#[cfg(feature = "kerberos")]
mod pypsrp_exchange;
#[cfg(feature = "kerberos")]
mod pyspnego;
mod pywinrm;
mod winrm_patch;
