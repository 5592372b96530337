//! Outputs that appear whole or not at all: temp files beside their destinations, renamed into
//! place; several outputs committed together through a journal that the next run completes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Write `bytes` to `path` atomically: a temp file in the same folder, then rename. Refuses a
/// `path` that exists and is not a regular file (a symlink, FIFO, device or folder would be
/// replaced by a regular file, or written through).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)?;
    f.commit()
}

/// A file written in pieces (bounded memory for long outputs) that appears at its path only when
/// [`AtomicFile::commit`] succeeds: it is written to a temp file in the same folder and renamed.
/// Dropped without a commit (an error on the way, a panic), the temp file is removed and `path`
/// is untouched.
pub struct AtomicFile {
    pending: Pending,
    file: std::io::BufWriter<std::fs::File>,
}

impl AtomicFile {
    /// Starts the temp file for `path` (same refusals as [`write_atomic`]).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let pending = Pending::beside(path)?;
        let file = std::io::BufWriter::new(std::fs::File::create(pending.path())?);
        Ok(Self { pending, file })
    }

    /// Flushes, syncs and closes the temp file: it is complete on disk and waits, as a
    /// [`Pending`], to be renamed with the other outputs of the run by [`commit_all`].
    pub fn finish(self) -> std::io::Result<Pending> {
        let AtomicFile { pending, file } = self;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(pending)
    }

    /// Flushes, syncs and renames the temp file onto the path.
    pub fn commit(self) -> std::io::Result<()> {
        commit_all(vec![self.finish()?]).map_err(|e| e.source)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Writes several files so that they appear together: each is written and synced under its temp
/// name first, then [`commit_all`] renames them as one unit; on an error before the renames, none
/// is written.
pub fn write_all_atomic(files: &[(&Path, &[u8])]) -> Result<(), WriteError> {
    commit_all(files.iter().map(|(p, bytes)| stage(p, bytes)).collect::<Result<_, _>>()?)
}

/// Writes `bytes` to a synced temp file for `path`, to be renamed with the run's other outputs by
/// [`commit_all`] (dropped instead, nothing is written).
pub fn stage(path: &Path, bytes: &[u8]) -> Result<Pending, WriteError> {
    let named = |source| WriteError { path: path.to_path_buf(), source };
    let mut f = AtomicFile::create(path).map_err(named)?;
    f.write_all(bytes).map_err(named)?;
    f.finish().map_err(named)
}

/// A temp file beside its destination (`.NAME.PID.N.tmp` in the same folder, so the rename is
/// atomic), to be made complete on disk and renamed by [`commit_all`]. Dropped uncommitted, the
/// temp file is removed.
#[derive(Debug)]
pub struct Pending {
    tmp: PathBuf,
    dest: PathBuf,
    done: bool,
}

impl Pending {
    /// A temp path for `dest`; nothing is written yet. Refuses a `dest` that exists and is not a
    /// regular file ([`check_output_kind`]), creates its folder and first clears what dead runs
    /// left there ([`remove_stray_temps`]).
    pub fn beside(dest: &Path) -> std::io::Result<Self> {
        static N: AtomicUsize = AtomicUsize::new(0);
        check_output_kind(dest)?;
        let dir = folder_of(dest);
        std::fs::create_dir_all(dir)?;
        remove_stray_temps(dest);
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        Ok(Self { tmp, dest: dest.to_path_buf(), done: false })
    }

    /// The temp file.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The destination.
    pub fn dest(&self) -> &Path {
        &self.dest
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Test hook: with this variable set, [`commit_all`] exits the process (status 137, as a kill -9
/// would end it: no clean-up runs) right after its first rename.
pub const EXIT_IN_COMMIT_VAR: &str = "BIOEDGE_TEST_EXIT_IN_COMMIT";

/// Renames complete temp files onto their destinations as one unit. A single file is one atomic
/// rename. For several, a journal listing every (temp, destination) pair is first written and
/// synced beside the first destination (`.bioedge-commit.PID.journal`), then the renames run back
/// to back and the journal is removed. A run killed during the renames leaves the journal; the
/// next write of any output in that folder ([`remove_stray_temps`]) finishes the dead run's
/// renames first, so its outputs end up all there (they were complete before the first rename).
/// A rename that fails (an error, not a kill) stops the commit: the outputs renamed before it stay,
/// the others are not written, and the error names the first of those.
pub fn commit_all(mut files: Vec<Pending>) -> Result<(), WriteError> {
    fn named(p: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
        move |source| WriteError { path: p.to_path_buf(), source }
    }
    if files.len() <= 1 {
        for f in &mut files {
            std::fs::rename(&f.tmp, &f.dest).map_err(named(&f.dest))?;
            f.done = true;
        }
        return Ok(());
    }
    let journal = write_journal(&files).map_err(named(&files[0].dest))?;
    let exit_after_first = std::env::var_os(EXIT_IN_COMMIT_VAR).is_some();
    let mut result = Ok(());
    for f in &mut files {
        if let Err(e) = std::fs::rename(&f.tmp, &f.dest) {
            // an error, not a kill: the outputs not yet renamed are dropped with their temps
            result = Err(named(&f.dest)(e));
            break;
        }
        f.done = true;
        if exit_after_first {
            std::process::exit(137);
        }
    }
    let _ = std::fs::remove_file(journal);
    result
}

const JOURNAL_PREFIX: &str = ".bioedge-commit.";

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Writes the journal of `files` (absolute paths, NUL-separated) under a part name, syncs it and
/// renames it to its final name, so a journal that exists is complete.
fn write_journal(files: &[Pending]) -> std::io::Result<PathBuf> {
    let dir = folder_of(&files[0].dest);
    let pid = std::process::id();
    let (part, journal) = (dir.join(format!("{JOURNAL_PREFIX}{pid}.part")), dir.join(format!("{JOURNAL_PREFIX}{pid}.journal")));
    let mut bytes = Vec::new();
    for f in files {
        for p in [&f.tmp, &f.dest] {
            bytes.extend_from_slice(path_bytes(&std::path::absolute(p)?));
            bytes.push(0);
        }
    }
    let result = (|| {
        let mut file = std::fs::File::create(&part)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&part, &journal)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result.map(|()| journal)
}

#[cfg(unix)]
fn path_bytes(p: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes()
}

#[cfg(unix)]
fn path_from(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

#[cfg(not(unix))]
fn path_bytes(p: &Path) -> &[u8] {
    p.to_str().unwrap_or_default().as_bytes()
}

#[cfg(not(unix))]
fn path_from(b: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(b).into_owned())
}

/// Whether the process `pid` (a decimal string) has ended; false where that cannot be told
/// (no `/proc`), so nothing of a live run is touched.
fn dead(pid: &str) -> bool {
    !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && Path::new("/proc/self").exists() && !Path::new("/proc").join(pid).exists()
}

/// Finishes the commits that runs killed during [`commit_all`] left in `dir`: the renames whose
/// temp file is still there, then the journal is removed (a dead run's unfinished journal part
/// too: its renames had not started).
fn finish_dead_commits(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(JOURNAL_PREFIX) else { continue };
        let (pid, complete) = match (rest.strip_suffix(".journal"), rest.strip_suffix(".part")) {
            (Some(pid), _) => (pid, true),
            (None, Some(pid)) => (pid, false),
            _ => continue,
        };
        if !dead(pid) {
            continue;
        }
        if complete {
            // a journal of a real commit is a few hundred bytes per output
            if e.metadata().map_or(true, |m| m.len() > MAX_JOURNAL_BYTES) {
                continue;
            }
            let Ok(bytes) = std::fs::read(e.path()) else { continue };
            let paths: Vec<PathBuf> = bytes.split(|b| *b == 0).filter(|s| !s.is_empty()).map(path_from).collect();
            for pair in paths.chunks_exact(2) {
                // only a dead run's own temp file onto the output it was made for: a crafted
                // journal cannot move anything else
                if !own_temp(&pair[0], &pair[1], pid) || !pair[0].exists() {
                    continue;
                }
                if std::fs::rename(&pair[0], &pair[1]).is_err() {
                    return; // keep the journal: a later run tries again
                }
            }
        }
        let _ = std::fs::remove_file(e.path());
    }
}

/// Journals larger than this are not read (left in place).
const MAX_JOURNAL_BYTES: u64 = 1 << 20;

/// Whether `tmp` is a temp file that run `pid` made for `dest` ([`Pending::beside`]): in the same
/// folder, named `.NAME.PID.N.tmp`, and `dest` is a regular file or absent.
fn own_temp(tmp: &Path, dest: &Path, pid: &str) -> bool {
    let (Some(t), Some(d)) = (tmp.file_name(), dest.file_name()) else { return false };
    let (t, d) = (t.to_string_lossy(), d.to_string_lossy());
    let Some(n) = t.strip_prefix(&format!(".{d}.{pid}.")).and_then(|r| r.strip_suffix(".tmp")) else { return false };
    tmp.parent() == dest.parent() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && check_output_kind(dest).is_ok()
}

/// A failed write of [`write_all_atomic`]: which file, and why.
#[derive(Debug, thiserror::Error)]
#[error("writing {}", path.display())]
pub struct WriteError {
    /// The output that could not be written.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// Removes the temp files that an earlier run killed before its commit left for `path`
/// (`.NAME.PID.tmp`, `.NAME.PID.N.tmp`) when that process is gone (Linux: no `/proc/PID`).
pub fn remove_stray_temps(path: &Path) {
    let Some(name) = path.file_name() else { return };
    let dir = folder_of(path);
    let prefix = format!(".{}.", name.to_string_lossy());
    finish_dead_commits(dir);
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        let Some(mid) = f.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".tmp")) else { continue };
        let parts: Vec<&str> = mid.split('.').collect();
        if parts.len() > 2 || !parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        if dead(parts[0]) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Before any work: an error (naming `out`) when the output `out` is not a regular file
/// ([`check_output_kind`]) or is one of the `inputs` ([`check_not_an_input`]).
pub fn check_output<'a>(out: &Path, inputs: impl IntoIterator<Item = &'a Path>) -> std::io::Result<()> {
    check_output_kind(out).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", out.display())))?;
    check_not_an_input(out, &inputs.into_iter().collect::<Vec<_>>())
}

/// An error when `path` exists and is not a regular file (symlinks are not followed).
pub fn check_output_kind(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => {
            let kind = if m.file_type().is_symlink() {
                "a symbolic link"
            } else if m.is_dir() {
                "a folder"
            } else {
                "not a regular file (a device, FIFO or socket)"
            };
            Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("output path is {kind}; give a path to a regular file")))
        }
        _ => Ok(()),
    }
}

/// An error when the output `out` is one of the `inputs` (the same file, also through links or
/// another spelling of the path), so a run never writes over what it reads.
pub fn check_not_an_input(out: &Path, inputs: &[&Path]) -> std::io::Result<()> {
    let Ok(o) = std::fs::metadata(out) else { return Ok(()) };
    for i in inputs {
        let same = std::fs::metadata(i).is_ok_and(|m| same_file(&m, &o))
            || std::fs::canonicalize(i).ok().is_some_and(|c| std::fs::canonicalize(out).ok() == Some(c));
        if same {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("output {} is the input {}; nothing written (the input is left as it was)", out.display(), i.display()),
            ));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid that has ended (a child that ran and was reaped).
    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    #[test]
    fn commit_all_writes_every_file_and_leaves_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.csv"), d.path().join("sub").join("b.png"));
        write_all_atomic(&[(&a, b"1"), (&b, b"2")]).unwrap();
        assert_eq!((std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap()), (b"1".to_vec(), b"2".to_vec()));
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    /// A run killed after its first rename left one output, the other's temp file and the journal:
    /// the next write into the folder moves the rest into place and removes the journal; a dead
    /// run's journal part (renames not started) is only removed, and so are its temps.
    #[test]
    fn a_dead_runs_journal_is_finished_by_the_next_write() {
        let d = tempfile::tempdir().unwrap();
        let pid = dead_pid();
        let (a, b) = (d.path().join("a.csv"), d.path().join("hm").join("b.png"));
        std::fs::create_dir(d.path().join("hm")).unwrap();
        let (ta, tb) = (d.path().join(format!(".a.csv.{pid}.0.tmp")), d.path().join("hm").join(format!(".b.png.{pid}.1.tmp")));
        // a pair naming a file that is not the run's temp for that output is never moved
        let (victim, target) = (d.path().join("keep.txt"), d.path().join("moved.txt"));
        std::fs::write(&victim, "mine").unwrap();
        std::fs::write(&a, "new a").unwrap(); // renamed before the kill
        std::fs::write(&tb, "new b").unwrap();
        let mut journal = Vec::new();
        for p in [&ta, &a, &tb, &b, &victim, &target] {
            journal.extend_from_slice(path_bytes(p));
            journal.push(0);
        }
        std::fs::write(d.path().join(format!("{JOURNAL_PREFIX}{pid}.journal")), &journal).unwrap();
        let other = dead_pid();
        std::fs::write(d.path().join(format!("{JOURNAL_PREFIX}{other}.part")), b"half").unwrap();
        std::fs::write(d.path().join(format!(".c.csv.{other}.tmp")), b"c").unwrap();
        // a live run's journal is left alone
        let live = d.path().join(format!("{JOURNAL_PREFIX}{}.journal", std::process::id()));
        std::fs::write(&live, b"").unwrap();

        write_atomic(&d.path().join("c.csv"), b"c").unwrap();
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "new b");
        assert!(!tb.exists());
        let mut names: Vec<String> =
            std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        let live_name = live.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(names, vec![live_name, "a.csv".into(), "c.csv".into(), "hm".into(), "keep.txt".into()]);
    }
}
