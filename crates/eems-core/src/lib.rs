//! eems-core: the pure part of eems-scan. Facts in, findings out: no runtime, no network,
//! no command line, so every verdict is testable from a table.
//!
//! The modules follow the data flow of a scan:
//! [`inventory`] (which servers) → [`probe`] (the scripts sent to them and the parsers of
//! what they print, into [`facts`]) → [`analysis`] (HealthChecker's decision table) →
//! [`report`] (the row model every renderer and reader shares) → [`drift`] (two saved
//! reports compared). [`sealing`] is the MS-WSMV `multipart/encrypted` framing, pure bytes,
//! that both the scanner and the lab speak; [`channel_binding`] the RFC 5929 binding of an
//! HTTPS connection that both sides compute.

pub mod analysis;
pub mod channel_binding;
pub mod drift;
pub mod facts;
pub mod inventory;
pub mod probe;
pub mod report;
pub mod sealing;
pub mod text;
