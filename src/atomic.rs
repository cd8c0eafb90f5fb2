//! Atomic output files: write beside the target, then rename over it.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically (a temporary file in the same folder, then a rename),
/// so a reader never sees a half-written file and a failed write leaves no debris.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}
