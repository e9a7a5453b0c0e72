//! A directory of a test's own for its sockets, removed when the test ends however it ends.

use std::path::{Path, PathBuf};

pub(super) struct TempDir(PathBuf);

impl TempDir {
    /// `name` tells the tests of this process apart.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("netd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
