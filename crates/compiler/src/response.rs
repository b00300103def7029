//! `@file` response files, expanded the way GCC (libiberty `expandargv`) does.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Response files nested deeper than this are refused (a file including itself).
const MAX_DEPTH: usize = 32;

/// Expanding response files failed.
#[derive(Debug, thiserror::Error)]
pub enum ResponseFileError {
    /// Response files include each other more than 32 levels deep (probably a cycle).
    #[error("response file `{0}` nests too deeply (a cycle?)")]
    TooDeep(PathBuf),
}

/// Replaces every `@file` argument with the arguments in `file` (relative to `cwd`), recursively,
/// as GCC does: whitespace separates arguments, `'...'` and `"..."` quote, `\` escapes the next
/// character anywhere. A file that cannot be read stays `@file` (GCC does the same), and
/// [`crate::parse`] then runs the invocation locally.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::write(dir.path().join("args.rsp"), "-c 'my file.c' -DX=\"a b\"\n").unwrap();
/// let args = hybridgrid_compiler::expand_response_files(&["-O2".into(), "@args.rsp".into()], dir.path()).unwrap();
/// assert_eq!(args, ["-O2", "-c", "my file.c", "-DX=a b"]);
/// ```
pub fn expand_response_files(
    args: &[OsString],
    cwd: &Path,
) -> Result<Vec<OsString>, ResponseFileError> {
    let mut out = Vec::with_capacity(args.len());
    expand_into(args, cwd, 0, &mut out)?;
    Ok(out)
}

fn expand_into(
    args: &[OsString],
    cwd: &Path,
    depth: usize,
    out: &mut Vec<OsString>,
) -> Result<(), ResponseFileError> {
    for arg in args {
        let bytes = arg.as_encoded_bytes();
        let Some(name) = bytes.strip_prefix(b"@") else {
            out.push(arg.clone());
            continue;
        };
        let path = cwd.join(os_from_bytes(name));
        let Ok(content) = std::fs::read(&path) else {
            out.push(arg.clone());
            continue;
        };
        if depth >= MAX_DEPTH {
            return Err(ResponseFileError::TooDeep(path));
        }
        expand_into(&split(&content), cwd, depth + 1, out)?;
    }
    Ok(())
}

/// libiberty `buildargv`.
fn split(content: &[u8]) -> Vec<OsString> {
    let mut args = Vec::new();
    let mut i = 0;
    while i < content.len() {
        while i < content.len() && content[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= content.len() {
            break;
        }
        let mut arg = Vec::new();
        let (mut squote, mut dquote, mut escaped) = (false, false, false);
        while i < content.len() {
            let c = content[i];
            if c.is_ascii_whitespace() && !squote && !dquote && !escaped {
                break;
            }
            if escaped {
                escaped = false;
                arg.push(c);
            } else if c == b'\\' {
                escaped = true;
            } else if squote {
                if c == b'\'' {
                    squote = false;
                } else {
                    arg.push(c);
                }
            } else if dquote {
                if c == b'"' {
                    dquote = false;
                } else {
                    arg.push(c);
                }
            } else if c == b'\'' {
                squote = true;
            } else if c == b'"' {
                dquote = true;
            } else {
                arg.push(c);
            }
            i += 1;
        }
        args.push(os_from_bytes(&arg));
    }
    args
}

#[cfg(unix)]
fn os_from_bytes(b: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(b).to_owned()
}

#[cfg(not(unix))]
fn os_from_bytes(b: &[u8]) -> OsString {
    String::from_utf8_lossy(b).into_owned().into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_libiberty() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("  \n\t ", &[]),
            ("-c foo.c", &["-c", "foo.c"]),
            ("-DX='a b' \"c d\"", &["-DX=a b", "c d"]),
            ("a\\ b c\\\\d", &["a b", "c\\d"]),
            ("'it''s'", &["its"]),
            ("\"q\\\"q\"", &["q\"q"]),
            ("x\n\ny", &["x", "y"]),
            ("\"\"", &[""]),
        ];
        for (text, want) in cases {
            let got: Vec<String> = split(text.as_bytes())
                .into_iter()
                .map(|s| s.into_string().unwrap())
                .collect();
            assert_eq!(&got, want, "split({text:?})");
        }
    }

    #[test]
    fn nested_missing_and_cyclic_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("outer.rsp"), "-O2 @inner.rsp -g").unwrap();
        std::fs::write(dir.path().join("inner.rsp"), "-c foo.c").unwrap();
        std::fs::write(dir.path().join("loop.rsp"), "@loop.rsp").unwrap();
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let got = expand_response_files(&os(&["@outer.rsp", "@missing.rsp"]), dir.path()).unwrap();
        assert_eq!(got, os(&["-O2", "-c", "foo.c", "-g", "@missing.rsp"]));
        match expand_response_files(&os(&["@loop.rsp"]), dir.path()) {
            Err(ResponseFileError::TooDeep(p)) => assert!(p.ends_with("loop.rsp")),
            other => panic!("{other:?}"),
        }
    }
}
