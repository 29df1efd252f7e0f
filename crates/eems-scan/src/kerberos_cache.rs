//! A private in-memory ticket cache per WinRM client (feature `kerberos`), so that finding a
//! service ticket costs the same at the thousandth server as at the first.
//!
//! MIT looks a ticket up in a cache by copying every entry in turn and comparing
//! (`k5_cc_retrieve_cred_default`, the `MEMORY:` type included), and each context a client
//! starts looks its ticket up, after the pre-flight stored it. With one cache for the whole
//! scan every server's service ticket stays in it, so a lookup grew with the servers done:
//! measured at 1,000 servers, a third of the scanner's CPU went to copying and freeing
//! tickets, and the cost per server grows without bound with the fleet. A client serves at
//! most 32 probes (`transport::ClientCache`), so its own cache (the scan's TGT, copied, plus
//! those probes' tickets) stays that small.
//!
//! The copy is made with `gss_store_cred_into` and read back with `gss_acquire_cred_from`,
//! named explicitly (changing `KRB5CCNAME` in a running multi-threaded process is unsound).
//! GSSAPI never destroys a cache it did not create, so [`PrivateCache`] destroys it through
//! libkrb5 when the client's last probe is done; what is left at exit (Ctrl-C) was only ever in
//! this process's memory.

use std::ffi::{CString, c_char, c_void};
use std::sync::atomic::{AtomicU64, Ordering};

use libgssapi::credential::{Cred, CredUsage};
use libgssapi::error::{Error as GssError, MajorFlags};
use libgssapi::oid::GSS_MECH_KRB5;

/// A `MEMORY:` ticket cache of this process, destroyed on drop.
#[derive(Debug)]
pub struct PrivateCache {
    name: CString,
}

/// Copies the tickets of `cred` (the scan's TGT) into a new private cache, and returns a
/// credential that uses that cache.
pub fn copy_to_private_cache(cred: &Cred) -> Result<(Cred, PrivateCache), GssError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "MEMORY:eems-scan-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let cache = PrivateCache {
        name: CString::new(name.as_str()).map_err(|_| call_error())?,
    };
    cred.store_into(&name, true, false, CredUsage::Initiate, Some(GSS_MECH_KRB5))?;
    let copy = acquire_from_cache(&cache.name)?;
    Ok((copy, cache))
}

fn call_error() -> GssError {
    GssError {
        major: MajorFlags::GSS_S_CALL_INACCESSIBLE_READ,
        minor: 0,
    }
}

/// An initiator credential whose tickets live in the cache `name`.
fn acquire_from_cache(name: &CString) -> Result<Cred, GssError> {
    use libgssapi_sys as sys;
    let mut element = sys::gss_key_value_element_desc {
        key: c"ccache".as_ptr(),
        value: name.as_ptr(),
    };
    let store = sys::gss_key_value_set_desc {
        count: 1,
        elements: &mut element,
    };
    let mut minor: sys::OM_uint32 = 0;
    let mut cred: sys::gss_cred_id_t = std::ptr::null_mut();
    // SAFETY: `element`, `store` and `name` outlive the call; null name, mechanisms and
    // outputs mean the cache's principal, the default mechanisms, and "not wanted". On success
    // the credential is ours to release, which `Cred::from_c` takes over.
    let major = unsafe {
        sys::gss_acquire_cred_from(
            &mut minor,
            std::ptr::null_mut(),
            sys::_GSS_C_INDEFINITE,
            std::ptr::null_mut(),
            sys::GSS_C_INITIATE as sys::gss_cred_usage_t,
            &store,
            &mut cred,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if major == sys::GSS_S_COMPLETE {
        // SAFETY: a credential the library just returned, released once by `Cred`.
        Ok(unsafe { Cred::from_c(cred) })
    } else {
        Err(GssError {
            major: MajorFlags::from_bits_retain(major),
            minor,
        })
    }
}

#[link(name = "krb5")]
unsafe extern "C" {
    fn krb5_init_context(context: *mut *mut c_void) -> i32;
    fn krb5_free_context(context: *mut c_void);
    fn krb5_cc_resolve(context: *mut c_void, name: *const c_char, cache: *mut *mut c_void) -> i32;
    fn krb5_cc_destroy(context: *mut c_void, cache: *mut c_void) -> i32;
}

impl Drop for PrivateCache {
    fn drop(&mut self) {
        // Best effort: a failure leaves the tickets in this process's memory until it exits.
        // SAFETY: each handle is checked before use and freed once; `krb5_cc_destroy` also
        // releases the cache handle. Other handles on the same MEMORY cache (a credential
        // still held elsewhere) keep their own reference and see an empty cache.
        unsafe {
            let mut ctx = std::ptr::null_mut();
            if krb5_init_context(&mut ctx) != 0 || ctx.is_null() {
                return;
            }
            let mut cache = std::ptr::null_mut();
            if krb5_cc_resolve(ctx, self.name.as_ptr(), &mut cache) == 0 && !cache.is_null() {
                krb5_cc_destroy(ctx, cache);
            }
            krb5_free_context(ctx);
        }
    }
}
