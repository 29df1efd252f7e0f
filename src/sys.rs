//! Process-level settings the scanner, the lab and the benchmark share.

/// Raises the open-file limit (soft to hard). One descriptor per connection (scanner) or
/// per listener and connection (lab): a big fleet passes the usual soft limit of 1024 long
/// before the hard one. Nothing to do on non-Unix systems.
pub fn raise_fd_limit() {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    tracing::warn!("cannot raise RLIMIT_NOFILE to {}", lim.rlim_max);
                }
            }
        }
    }
}
