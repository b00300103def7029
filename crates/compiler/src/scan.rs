//! Guard for the worker: the text it compiles must not make its compiler read worker files.
//!
//! [`crate::CompileJob::remote_command`] compiles the text as source, so an `#include` left in it
//! would be resolved on the worker. Text from [`crate::CompileJob::preprocess_args`] has none
//! (directives-only preprocessing consumes them); this scan refuses text that does, so a
//! malicious or broken client cannot read worker files through the compiler. It is conservative:
//! anything it cannot rule out (for example a line inside a multi-line raw string) counts as a
//! directive, which only makes the job run locally.

/// The 1-based line of the first directive that would read a file on the worker
/// (`#include`, `#include_next`, `#import`, `#embed`, `#pragma GCC dependency`, also spelled with
/// `%:` or `??=`), or a `_Pragma` naming `dependency`.
pub(crate) fn first_file_directive(text: &[u8]) -> Option<usize> {
    let mut in_comment = false;
    let mut line_no = 0;
    let mut lines = text.split(|b| *b == b'\n').peekable();
    while let Some(first) = lines.next() {
        line_no += 1;
        let start_line = line_no;
        // Splice backslash-newline continuations into one logical line.
        let mut line = first.to_vec();
        while line.last() == Some(&b'\\') || line.ends_with(b"\\\r") {
            let Some(next) = lines.next() else { break };
            line_no += 1;
            while matches!(line.last(), Some(b'\\' | b'\r')) {
                line.pop();
            }
            line.extend_from_slice(next);
        }
        let code = strip_comments(&line, &mut in_comment);
        if is_file_directive(&code) || mentions_dependency_pragma(&code) {
            return Some(start_line);
        }
    }
    None
}

/// The line with comments replaced by a space and string/char literal contents kept; updates
/// the block-comment state across lines.
fn strip_comments(line: &[u8], in_comment: &mut bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < line.len() {
        let c = line[i];
        if *in_comment {
            if line[i..].starts_with(b"*/") {
                *in_comment = false;
                out.push(b' ');
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        if let Some(q) = quote {
            out.push(c);
            if c == b'\\' && i + 1 < line.len() {
                out.push(line[i + 1]);
                i += 2;
                continue;
            }
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if line[i..].starts_with(b"/*") {
            *in_comment = true;
            i += 2;
            continue;
        }
        if line[i..].starts_with(b"//") {
            break;
        }
        if c == b'"' || c == b'\'' {
            quote = Some(c);
        }
        out.push(c);
        i += 1;
    }
    out
}

fn is_file_directive(code: &[u8]) -> bool {
    let t = trim_start(code);
    let rest = if let Some(r) = t.strip_prefix(b"#") {
        r
    } else if let Some(r) = t.strip_prefix(b"%:") {
        r
    } else if let Some(r) = t.strip_prefix(b"??=") {
        r
    } else {
        return false;
    };
    let rest = trim_start(rest);
    if rest.starts_with(b"include") || rest.starts_with(b"import") || rest.starts_with(b"embed") {
        return true;
    }
    if let Some(p) = rest.strip_prefix(b"pragma") {
        let p = trim_start(p);
        if let Some(g) = p.strip_prefix(b"GCC") {
            return trim_start(g).starts_with(b"dependency");
        }
    }
    false
}

fn mentions_dependency_pragma(code: &[u8]) -> bool {
    code.windows(7).any(|w| w == b"_Pragma") && code.windows(10).any(|w| w == b"dependency")
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\x0b' | b'\x0c' | b'\r'))
        .count();
    &s[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_directives_that_read_files() {
        let cases: &[(&str, Option<usize>)] = &[
            ("int x;\n", None),
            (
                "# 1 \"foo.c\"\n#define X 1\n#pragma GCC visibility push(hidden)\n",
                None,
            ),
            ("int x;\n#include \"/etc/passwd\"\n", Some(2)),
            ("  #  include_next <x.h>\n", Some(1)),
            ("#import <x.h>\n", Some(1)),
            ("#embed \"/etc/shadow\"\n", Some(1)),
            ("%:include \"x\"\n", Some(1)),
            ("??=include \"x\"\n", Some(1)),
            ("#pragma GCC dependency \"x.h\"\n", Some(1)),
            ("_Pragma(\"GCC dependency \\\"x.h\\\"\")\n", Some(1)),
            ("#\\\ninclude \"x\"\n", Some(1)),
            ("int a; \\\n#include \"x\"\n", None),
            // Comments and strings hide nothing from GCC, so they hide nothing here either...
            ("/* a\n#include <stdio.h>\n*/ int x;\n", None),
            ("// #include <x>\n", None),
            ("/* one */ #include <x>\n", Some(1)),
            ("const char *s = \"/*\";\n#include <x>\n", Some(2)),
            ("char c = '\"';\n#include <x>\n", Some(2)),
            // ...but a line comment continued by a backslash is still a comment.
            ("// note \\\n#include <x>\n", None),
        ];
        for (text, want) in cases {
            assert_eq!(first_file_directive(text.as_bytes()), *want, "{text:?}");
        }
    }
}
