//! Shared helpers for the text readers: (maybe gzipped) line reading, field splitting, numbers.

use crate::error::{Error, Result};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Opens a text file; gzip is detected by its magic bytes, not by the extension.
pub fn open_text(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let head = reader.fill_buf().map_err(|e| Error::io(path, e))?;
    if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        Ok(Box::new(BufReader::with_capacity(1 << 16, MultiGzDecoder::new(reader))))
    } else {
        Ok(Box::new(reader))
    }
}

/// Line reader that keeps the 1-based line number and strips `\n` / `\r\n`.
pub struct Lines {
    reader: Box<dyn BufRead>,
    path: PathBuf,
    buf: String,
    line_no: usize,
}

impl Lines {
    /// Opens `path` for reading line by line (gzip detected as in [`open_text`]).
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Lines { reader: open_text(path)?, path: path.to_path_buf(), buf: String::new(), line_no: 0 })
    }

    /// The next line as `(line number, text)`, or `None` at the end of the file.
    pub fn next_line(&mut self) -> Result<Option<(usize, &str)>> {
        self.buf.clear();
        let n = match self.reader.read_line(&mut self.buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(Error::format(&self.path, format!("line {}: {e}", self.line_no + 1)));
            }
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        if n == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        let line = self.buf.strip_suffix('\n').unwrap_or(&self.buf);
        let line = line.strip_suffix('\r').unwrap_or(line);
        Ok(Some((self.line_no, line)))
    }
}

/// Splits one line on `delim`. Fields may be wrapped in double quotes (`""` inside is a quote).
pub fn split_fields(line: &str, delim: char) -> std::result::Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(format!("unterminated quote in field {}", fields.len() + 1));
                    }
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(c) if c == delim => fields.push(field),
                Some(c) => {
                    return Err(format!("unexpected '{c}' after closing quote in field {}", fields.len() + 1));
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(c) if c == delim => break,
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// Parses one expression value. Empty, `NA`, `N/A`, `null` and `NaN` give NaN; `inf` is accepted.
pub fn parse_value(s: &str) -> Option<f32> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f32>() {
        return Some(v);
    }
    match s {
        "" | "NA" | "na" | "N/A" | "n/a" | "null" | "NULL" | "nan" => Some(f32::NAN),
        _ => None,
    }
}

/// Shortens a long list of names for error messages.
pub fn list_names(names: &[String]) -> String {
    const MAX: usize = 30;
    let shown: Vec<&str> = names.iter().take(MAX).map(|s| s.as_str()).collect();
    let mut out = shown.join(", ");
    if names.len() > MAX {
        out.push_str(&format!(", ... ({} more)", names.len() - MAX));
    }
    if out.is_empty() {
        out.push_str("(none)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_plain_and_quoted() {
        assert_eq!(split_fields("a,b,,c", ',').unwrap(), vec!["a", "b", "", "c"]);
        assert_eq!(split_fields("\"a,1\",\"b\"\"x\",c", ',').unwrap(), vec!["a,1", "b\"x", "c"]);
        assert_eq!(split_fields("", ',').unwrap(), vec![""]);
        assert_eq!(split_fields("x,\"\"", ',').unwrap(), vec!["x", ""]);
        assert!(split_fields("\"abc", ',').is_err());
        assert!(split_fields("\"a\"b,c", ',').is_err());
    }

    #[test]
    fn values() {
        assert_eq!(parse_value(" 1.5 "), Some(1.5));
        assert_eq!(parse_value("-2e3"), Some(-2000.0));
        assert!(parse_value("NA").unwrap().is_nan());
        assert!(parse_value("").unwrap().is_nan());
        assert!(parse_value("inf").unwrap().is_infinite());
        assert_eq!(parse_value("abc"), None);
    }

    #[test]
    fn gz_and_plain_lines() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a.txt");
        std::fs::write(&plain, "x\r\ny\n\nz").unwrap();
        let gz = dir.path().join("a.txt.gz");
        let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), Default::default());
        enc.write_all(b"x\r\ny\n\nz").unwrap();
        enc.finish().unwrap();
        for p in [&plain, &gz] {
            let mut lines = Lines::open(p).unwrap();
            let mut got = Vec::new();
            while let Some((n, l)) = lines.next_line().unwrap() {
                got.push((n, l.to_string()));
            }
            assert_eq!(got, vec![(1, "x".into()), (2, "y".into()), (3, "".into()), (4, "z".into())]);
        }
    }

    #[test]
    fn invalid_utf8_is_format_error_with_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.txt");
        std::fs::write(&p, b"ok\n\xff\xfe\n").unwrap();
        let mut lines = Lines::open(&p).unwrap();
        lines.next_line().unwrap();
        let err = lines.next_line().unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{err}");
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
