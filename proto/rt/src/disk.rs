//! A full disk as both daemons see it: the free space left on a file system, and whether an
//! error is the disk being full. The agent's journal, the master's store and the artifact
//! cache all refuse writes before the disk is full and say so when it is.

use std::path::Path;

/// Bytes free for unprivileged users on the file system holding `dir`, when it can tell.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    rustix::fs::statvfs(dir).ok().map(|stat| stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Whether an error is a full disk (or an exhausted quota), anywhere in its chain, including
/// sled's own I/O error (whose source is not chained).
pub fn is_full(err: &anyhow::Error) -> bool {
    let full = |io: &std::io::Error| matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded);
    err.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(full)
            || matches!(cause.downcast_ref::<sled::Error>(), Some(sled::Error::Io(io)) if full(io))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_told_apart_through_the_chain_and_through_sled() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(is_full(&anyhow::Error::from(full).context("writing")));
        let sled = sled::Error::Io(std::io::Error::from(std::io::ErrorKind::QuotaExceeded));
        assert!(is_full(&anyhow::Error::from(sled).context("appending")));
        assert!(!is_full(&anyhow::anyhow!("something else")));
        assert!(free_bytes(Path::new("/")).is_some_and(|free| free > 0));
    }
}
