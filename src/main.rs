/// mimalloc rather than the system allocator: a group commit allocates and
/// frees millions of small values (certificates, events, response records),
/// and `ecertd process` ran about 15 % faster with it for 35 MiB more peak
/// RSS (README, "Performance"). Its default purge delay (freed memory goes
/// back to the OS after a second) is kept: a group's memory is reused by the
/// next group instead of being faulted in afresh, which purging at once cost
/// 5-15 % of `process`'s CPU time (README). `MIMALLOC_PURGE_DELAY` sets it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ecertd::cli::main()
}
