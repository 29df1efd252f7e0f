//! The lab: a simulated Exchange organisation that speaks real WinRM.
//!
//! One process serves every host of a [`fleet::Fleet`], each on its own loopback address,
//! with the wire behaviour of a stock Windows WinRM listener (see
//! `../shared/reference/winrm-on-the-wire.md`):
//!
//! - [`http`]: listeners, per-connection authentication state (NTLM context and sealing keys
//!   belong to the TCP connection), Basic over HTTPS, `AllowUnencrypted=false`, HTTP-level
//!   faults and latency, the request log;
//! - [`ntlm`]: the NTLMv2 acceptor and MS-WSMV message sealing;
//! - [`tls`]: a CA and per-host certificates made at start;
//! - [`wsman`]: WS-Management/WinRS operations and the per-host shell table;
//! - [`powershell`]: what `powershell.exe -EncodedCommand` does with the probe scripts;
//! - [`log`]: the JSON-lines request log tests assert on;
//! - [`generate`]: the fleet generator for scale tests.

pub mod fleet;
pub mod generate;
pub mod http;
pub mod log;
pub mod ntlm;
pub mod powershell;
pub mod tls;
pub mod wsman;
