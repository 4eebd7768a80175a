//! Giving freed heap memory back to the operating system.
//!
//! Parsing a large config and building a snapshot allocate far more, briefly, than the
//! snapshot keeps: TOML's document tree, the records grouped by name, the old snapshot. An
//! allocator keeps such freed memory for reuse instead of returning it, so resident memory
//! would stay at the peak of the largest build. The binary's allocator is mimalloc (feature
//! `mimalloc`, on by default): glibc's returns only the top of its heap, and a table's own
//! allocations, made between the build's, pin the pages around them (100,000 records: 93 MB
//! resident after `malloc_trim` against 56 MB with mimalloc, `bench/scale`). After each build
//! [`release_freed`] asks whichever allocator runs to return what it can.

#[cfg(feature = "mimalloc")]
unsafe extern "C" {
    // mimalloc's C API (`mimalloc.h`), linked through the `mimalloc` crate.
    fn mi_collect(force: bool);
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_arena_eager_commit` in mimalloc 3's `mi_option_e`.
#[cfg(feature = "mimalloc")]
const MI_OPTION_ARENA_EAGER_COMMIT: std::ffi::c_int = 4;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e`.
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Sets the allocator up before the first large allocation: mimalloc commits arena memory as
/// it is used rather than 64 MiB at a time, and returns a page to the OS as soon as it comes
/// back to the arena empty. With its default delay (10 ms, then a purge on later
/// allocations), pages emptied after the last collection — those of the zone reader's
/// thread, freed from another — stayed resident while the server sat idle: 100,000
/// zone-file records, 27.3 MB anonymous memory with the delay, 22.9 MB without.
pub fn tune() {
    #[cfg(feature = "mimalloc")]
    // SAFETY: mi_option_set takes plain integers and may be called at any time.
    unsafe {
        mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

/// Frees a build's scratch (its records and groups: tens of megabytes at 100,000 records) on a
/// thread of its own once the table is made, when it is `large`: freeing it — and handing its
/// pages back to the OS as they come free — took 60 ms of the path to the first answer. Small
/// scratch is freed here, where a thread would cost more than it saves; so is any if no thread
/// can start.
pub fn free_later<T: Send + 'static>(scratch: T, large: bool) {
    if large {
        let _ = std::thread::Builder::new().name("hubdns-free".into()).spawn(move || {
            drop(scratch);
            release_freed();
        });
    }
}

/// Returns freed heap pages to the OS: mimalloc's collection (when it is linked) and glibc's
/// `malloc_trim` (what a program without mimalloc, a test, allocates with).
pub fn release_freed() {
    #[cfg(feature = "mimalloc")]
    // SAFETY: mi_collect takes no pointers; it frees only what the allocator holds unused.
    unsafe {
        mi_collect(true);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only walks the allocator's own free lists; it
    // is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
