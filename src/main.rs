/// mimalloc rather than the system allocator: a group commit allocates and
/// frees millions of small values (certificates, events, response records),
/// and `ecertd process` ran about 15 % faster with it for 35 MiB more peak
/// RSS (README, "Performance").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mimalloc.h` (the same index in its
/// versions 2 and 3): milliseconds before freed memory goes back to the OS.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // Freed memory goes back to the OS at once, not after the bundled
    // mimalloc's default second: `process` frees a group's values on one
    // thread that another allocated, and the delay kept 40 MiB more resident
    // at its peak for no measurable speed. `MIMALLOC_PURGE_DELAY` still wins
    // when set.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one option; mimalloc reads it when it next purges.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
    ecertd::cli::main()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index names the purge delay: its default in the bundled mimalloc
    /// 3 is 1,000 ms, and it reads back what was set.
    #[test]
    fn purge_delay_option_index() {
        // SAFETY: reads and sets one mimalloc option.
        unsafe {
            assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), 1000);
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
            assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), 0);
        }
    }
}
