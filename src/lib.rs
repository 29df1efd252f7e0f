//! eems-scan: fleet-wide check of the Exchange Emergency Mitigation service.
//!
//! The modules follow the data flow of a scan:
//! [`inventory`] → [`probe`] (org probe, then host probes, over [`transport`]) →
//! [`analysis`] (pure: facts in, findings out) → [`report`].
//! [`scan`] is the coordinator that runs those phases concurrently.
//! [`compare`] reads two saved reports and judges what changed (pure, like `analysis`).
//! [`lab`] is a separate room: a simulated Exchange organisation that speaks
//! real WinRM, used by the tests, the demo and the benchmarks.

pub mod analysis;
pub mod app;
#[cfg(unix)]
pub mod bench;
pub mod cli;
pub mod compare;
pub mod facts;
pub mod inventory;
pub mod lab;
pub mod probe;
pub mod report;
pub mod scan;
pub mod sys;
pub mod transport;
