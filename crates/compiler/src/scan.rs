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
/// `%:` or `??=`), a `_Pragma` naming `dependency`, or an `#if`/`#elif` (directives-only text
/// has none: its conditionals were resolved on the client; on the worker one could probe files
/// with `__has_include`, also through a macro).
///
/// The text is read every way GCC may read it, and a directive found by any reading counts:
/// with and without trigraph replacement (`-std=c11` and `-trigraphs` enable it, so
/// `#inc??/` + newline + `lude` is `#include`), and with a lone carriage return as a newline or
/// not. Backslash, optional horizontal whitespace, newline is a line continuation, as in GCC.
pub(crate) fn first_file_directive(text: &[u8]) -> Option<usize> {
    let replaced = replace_trigraphs(text);
    [text, replaced.as_slice()]
        .into_iter()
        .flat_map(|t| [scan(t, false), scan(t, true)])
        .flatten()
        .min()
}

/// The text with the nine trigraphs replaced by the characters they stand for.
fn replace_trigraphs(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'?'
            && text.get(i + 1) == Some(&b'?')
            && let Some(c) = text.get(i + 2).and_then(|c| trigraph(*c))
        {
            out.push(c);
            i += 3;
            continue;
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

fn trigraph(c: u8) -> Option<u8> {
    Some(match c {
        b'=' => b'#',
        b'/' => b'\\',
        b'\'' => b'^',
        b'(' => b'[',
        b')' => b']',
        b'!' => b'|',
        b'<' => b'{',
        b'>' => b'}',
        b'-' => b'~',
        _ => return None,
    })
}

/// One reading of the text: logical lines (continuations spliced), comments removed.
fn scan(text: &[u8], lone_cr_is_newline: bool) -> Option<usize> {
    let mut in_comment = false;
    let mut line_no = 0;
    let mut lines = text
        .split(|b| *b == b'\n' || (lone_cr_is_newline && *b == b'\r'))
        .peekable();
    while let Some(first) = lines.next() {
        line_no += 1;
        let start_line = line_no;
        // Splice backslash-newline continuations into one logical line.
        let mut line = first.to_vec();
        while let Some(cut) = continuation(&line) {
            line.truncate(cut);
            let Some(next) = lines.next() else { break };
            line_no += 1;
            line.extend_from_slice(next);
        }
        let code = strip_comments(&line, &mut in_comment);
        if is_file_directive(&code) || mentions_dependency_pragma(&code) {
            return Some(start_line);
        }
    }
    None
}

/// Where the line's continuation backslash is, when it ends with one (followed only by
/// horizontal whitespace, which GCC accepts with a warning).
fn continuation(line: &[u8]) -> Option<usize> {
    let end = line.len()
        - line
            .iter()
            .rev()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\x0b' | b'\x0c' | b'\r'))
            .count();
    (end > 0 && line[end - 1] == b'\\').then(|| end - 1)
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
    for cond in [&b"if"[..], b"elif"] {
        if let Some(after) = rest.strip_prefix(cond)
            && !after
                .first()
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            return true;
        }
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
            // Trigraphs (on under -std=c11 or -trigraphs), whitespace after the backslash,
            // lone carriage returns and probes of worker files.
            ("#inc??/\nlude \"/x\"\n", Some(1)),
            ("??=inc??/\nlude \"/x\"\n", Some(1)),
            ("#inc\\ \t\nlude \"/x\"\n", Some(1)),
            ("int x;\r#include \"/x\"\n", Some(2)),
            ("#if __has_include(\"/etc/shadow\")\n#endif\n", Some(1)),
            (
                "#define H __has_include\n#if H(\"/etc/shadow\")\n#endif\n",
                Some(2),
            ),
            ("#ifdef X\n#endif\n", None),
            // A comment continued by a trigraph backslash hides nothing when trigraphs are off.
            ("// c ??/\n#include <x>\n", Some(2)),
        ];
        for (text, want) in cases {
            assert_eq!(first_file_directive(text.as_bytes()), *want, "{text:?}");
        }
    }
}
