//! Giving freed heap memory back to the operating system.
//!
//! Parsing a large config and building a snapshot allocate far more, briefly, than the
//! snapshot keeps: TOML's document tree, the records grouped by name, the old snapshot. glibc's
//! allocator keeps such freed memory for reuse instead of returning it, so resident memory
//! would stay at the peak of the largest build. After each build we ask it to trim.

/// Returns freed heap pages to the OS (glibc only; elsewhere a no-op).
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only walks the allocator's own free lists; it
    // is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
