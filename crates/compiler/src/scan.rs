//! Guard for the worker: the text it compiles must not make its compiler read worker files.
//!
//! [`crate::CompileJob::remote_command`] compiles the text as source, so an `#include` the
//! compiler does not skip would be resolved on the worker. Text from
//! [`crate::CompileJob::preprocess_args`] has none: GCC's directives-only preprocessing consumes
//! them, and clang's `-frewrite-includes` keeps each one only inside an `#if 0` group. This scan
//! refuses any other text, so a malicious or broken client cannot read worker files through the
//! compiler. It is conservative: anything it cannot rule out (for example a line inside a
//! multi-line raw string) counts as a directive, which only makes the job run locally.

use std::borrow::Cow;

/// The 1-based line of the first directive that would read a file on the worker
/// (`#include`, `#include_next`, `#import`, `#embed`, `#pragma GCC dependency`,
/// `#pragma clang module`, `#pragma clang __debug`, also spelled with `%:` or `??=`) in a group
/// the compiler may not skip, a `_Pragma` naming `dependency` or `module`, an `#if`/`#elif` whose condition is not
/// the constant `0` or `1` outside skipped groups (on the worker one could probe files with
/// `__has_include`, also through a macro), or a conditional this scan cannot follow for certain
/// (see `Conditionals`).
///
/// The text is read every way GCC or clang may read it, and a directive found by any reading
/// counts: with and without trigraph replacement (`-std=c11` and `-trigraphs` enable it, so
/// `#inc??/` + newline + `lude` is `#include`), and with a lone carriage return as a newline or
/// not. Backslash, optional horizontal whitespace, newline is a line continuation, as in GCC.
pub(crate) fn first_file_directive(text: &[u8]) -> Option<usize> {
    // GCC and clang skip a UTF-8 byte order mark at the start of a file.
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    // Readings that cannot differ are read once: without a trigraph the replaced text is the
    // text, and without a carriage return a lone one splits nothing.
    let replaced = has_trigraph(text).then(|| replace_trigraphs(text));
    let lone_crs: &[bool] = if memchr::memchr(b'\r', text).is_some() {
        &[false, true]
    } else {
        &[false]
    };
    let mut first: Option<usize> = None;
    for t in [Some(text), replaced.as_deref()].into_iter().flatten() {
        for &lone_cr in lone_crs {
            first = match (first, scan(t, lone_cr)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    first
}

/// One way a compiler may read the text.
#[derive(Clone, Copy)]
struct Reading {
    /// `'` inside a number is a digit separator (C++14, C23: `1'000`), not a character literal.
    digit_separators: bool,
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

/// Whether the text holds a trigraph (`??` and one of the nine characters).
fn has_trigraph(text: &[u8]) -> bool {
    memchr::memmem::find_iter(text, b"??")
        .any(|i| text.get(i + 2).and_then(|c| trigraph(*c)).is_some())
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

/// Two readings of the text, with and without digit separators, in one pass: logical lines
/// (continuations spliced), comments removed, and the conditional groups tracked so that file
/// directives in groups the compiler certainly skips are accepted (see [`Conditionals`]). The
/// readings differ only on a line with a `'`: any other line is stripped of its comments once
/// for both when their comment states agree. The first line either reading refuses, if any.
fn scan(text: &[u8], lone_cr_is_newline: bool) -> Option<usize> {
    let readings = [false, true].map(|digit_separators| Reading { digit_separators });
    let mut states: [ReadState; 2] = Default::default();
    let mut line_no = 0;
    let mut lines = Lines {
        rest: Some(text),
        lone_cr_is_newline,
    };
    while let Some(first) = lines.next() {
        line_no += 1;
        let start_line = line_no;
        let line = logical_line(first, &mut lines, &mut line_no);
        if memchr::memchr(b'\'', &line).is_none() && states[0].in_comment == states[1].in_comment {
            let mut in_comment = states[0].in_comment;
            let code = strip_comments(&line, &mut in_comment, readings[0]);
            for st in &mut states {
                st.in_comment = in_comment;
                st.take(code.as_deref().map(Cow::Borrowed), start_line);
            }
        } else {
            for (st, r) in states.iter_mut().zip(readings) {
                if st.found.is_none() {
                    let code = strip_comments(&line, &mut st.in_comment, r);
                    st.take(code, start_line);
                }
            }
        }
        if states.iter().all(|st| st.found.is_some()) {
            break;
        }
    }
    states.iter_mut().filter_map(ReadState::finish).min()
}

/// The physical lines of a text: split at `\n`, and at a lone `\r` too in a reading that takes it
/// for a newline (as `<[u8]>::split` would, the last line included even when empty).
struct Lines<'a> {
    rest: Option<&'a [u8]>,
    lone_cr_is_newline: bool,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        let end = if self.lone_cr_is_newline {
            memchr::memchr2(b'\n', b'\r', rest)
        } else {
            memchr::memchr(b'\n', rest)
        };
        match end {
            Some(i) => {
                self.rest = rest.get(i + 1..);
                Some(&rest[..i])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// One reading's progress through the text.
#[derive(Default)]
struct ReadState {
    in_comment: bool,
    conds: Conditionals,
    /// A directive whose block comment runs on past its line: the comment is one space and the
    /// directive goes on after it (`#/*` newline `*/include`). Its first line, and its code so far.
    pending: Option<(usize, Vec<u8>)>,
    /// The first line this reading refuses.
    found: Option<usize>,
}

impl ReadState {
    /// Takes the code of the logical line starting at `start_line`, its comments stripped
    /// (`None`: this reading cannot read the line, see [`strip_comments`]).
    fn take(&mut self, code: Option<Cow<'_, [u8]>>, start_line: usize) {
        if self.found.is_some() {
            return;
        }
        let pending = self.pending.take();
        let start = pending.as_ref().map_or(start_line, |(s, _)| *s);
        let Some(code) = code else {
            self.found = Some(start);
            return;
        };
        let code = match pending {
            Some((_, mut before)) => {
                before.push(b' ');
                before.extend_from_slice(&code);
                Cow::Owned(before)
            }
            None => code,
        };
        if self.in_comment && directive_body(&code).is_some() {
            self.pending = Some((start, code.into_owned()));
            return;
        }
        self.check(start, &code);
    }

    fn check(&mut self, start: usize, code: &[u8]) {
        if mentions_dangerous_pragma(code)
            || directive_body(code).is_some_and(|(hash, body)| !self.conds.directive(hash, body))
        {
            self.found = Some(start);
        }
    }

    /// The first line refused, once the text has ended (a directive still open is taken as it is).
    fn finish(&mut self) -> Option<usize> {
        if self.found.is_none()
            && let Some((start, code)) = self.pending.take()
        {
            self.check(start, &code);
        }
        self.found
    }
}

/// `first` with the lines it continues (backslash, optional horizontal whitespace, newline)
/// spliced on.
fn logical_line<'a>(
    first: &'a [u8],
    lines: &mut impl Iterator<Item = &'a [u8]>,
    line_no: &mut usize,
) -> Cow<'a, [u8]> {
    if continuation(first).is_none() {
        return Cow::Borrowed(first);
    }
    let mut line = first.to_vec();
    while let Some(cut) = continuation(&line) {
        line.truncate(cut);
        let Some(next) = lines.next() else { break };
        *line_no += 1;
        line.extend_from_slice(next);
    }
    Cow::Owned(line)
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
/// the block-comment state across lines. `None` when the line opens a raw string literal
/// (`R"x(...)x"`, C++11 and GNU C): its contents are not what this reading takes them for.
fn strip_comments<'a>(
    line: &'a [u8],
    in_comment: &mut bool,
    reading: Reading,
) -> Option<Cow<'a, [u8]>> {
    // Most lines have no comment, string, character or digit separator: they are what they are.
    if !*in_comment && memchr::memchr3(b'/', b'"', b'\'', line).is_none() {
        return Some(Cow::Borrowed(line));
    }
    // A line inside a block comment that does not end it: nothing of it is code.
    if *in_comment && memchr::memmem::find(line, b"*/").is_none() {
        return Some(Cow::Borrowed(&[]));
    }
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
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
        let starts_token = i == 0 || !ident(line[i - 1]);
        // A number (pp-number): with digit separators, `'` followed by a digit or letter is
        // part of it.
        if reading.digit_separators
            && starts_token
            && (c.is_ascii_digit() || c == b'.' && line.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            while i < line.len() {
                let d = line[i];
                let next = line.get(i + 1).copied();
                if matches!(d, b'e' | b'E' | b'p' | b'P') && matches!(next, Some(b'+' | b'-'))
                    || d == b'\'' && next.is_some_and(ident)
                {
                    out.extend_from_slice(&line[i..i + 2]);
                    i += 2;
                } else if ident(d) || d == b'.' {
                    out.push(d);
                    i += 1;
                } else {
                    break;
                }
            }
            continue;
        }
        if c == b'"' && i > 0 && line[i - 1] == b'R' {
            // `R"`, `u8R"`, `uR"`, `UR"`, `LR"`: a raw string; a longer identifier is none.
            let word_start = line[..i]
                .iter()
                .rposition(|b| !ident(*b))
                .map_or(0, |p| p + 1);
            if matches!(&line[word_start..i], b"R" | b"u8R" | b"uR" | b"UR" | b"LR") {
                return None;
            }
        }
        if c == b'"' || c == b'\'' {
            quote = Some(c);
        }
        out.push(c);
        i += 1;
    }
    Some(Cow::Owned(out))
}

/// The conditional groups open at a point of the text, as far as they can be known without
/// the macros: a group is *skipped* when the compiler certainly skips it (an `#if 0`, an
/// `#elif 0`, an `#elif`/`#else` after a group certainly taken, or any group inside a skipped
/// one) and *live* otherwise (taken, or decided by `#ifdef`/`#ifndef`).
///
/// This is what makes clang's `-frewrite-includes` text acceptable: it keeps every original
/// `#include` inside `#if 0 /* expanded by -frewrite-includes */ ... #endif`, every original
/// `#if`/`#elif` inside `#if 0 /* disabled by ... */`, and replaces their conditions by `0`/`1`.
/// A compiler reads a skipped group only to find its conditional directives, so a file
/// directive there reads nothing. The reading stays sound because every directive is
/// classified the same way wherever it is (a directive name it cannot read for certain refuses
/// the text), and in a live group an `#if`/`#elif` must be the constant `0` or `1`.
#[derive(Default)]
struct Conditionals {
    /// Open groups, innermost last.
    stack: Vec<Group>,
}

#[derive(Clone, Copy)]
struct Group {
    /// Inside a group the compiler certainly skips: nothing here is evaluated.
    outer_skipped: bool,
    /// A group of this `#if` chain up to here was certainly taken: every later one is skipped.
    taken: bool,
    /// This group is certainly skipped.
    skipped: bool,
    /// `#else` seen: a further `#elif`/`#else` is malformed.
    after_else: bool,
}

/// What the directive name after `#` is, read so that no compiler reads it otherwise.
enum Name<'a> {
    /// No name (`#` alone, `#!`, `#"`...). A line marker `# 12 "file"` is the word `12`.
    None,
    /// A name made of ASCII letters, digits and `_` only, followed by neither `$`, a backslash nor a
    /// non-ASCII byte (which some compilers take as part of an identifier).
    Word(&'a [u8], &'a [u8]),
    /// Anything else: refused.
    Unclear,
}

fn directive_name(body: &[u8]) -> Name<'_> {
    let body = trim_start(body);
    let n = body
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    let next = body.get(n).copied();
    if next.is_some_and(|c| c == b'$' || c == b'\\' || !c.is_ascii()) {
        return Name::Unclear;
    }
    if n == 0 {
        return Name::None;
    }
    Name::Word(&body[..n], &body[n..])
}

impl Conditionals {
    fn skipping(&self) -> bool {
        self.stack
            .last()
            .is_some_and(|g| g.skipped || g.outer_skipped)
    }

    /// Takes one directive (the text after `#`, `%:` or `??=`; `hash`: spelled `#`); false when
    /// the text must be refused.
    fn directive(&mut self, hash: bool, body: &[u8]) -> bool {
        let (name, rest) = match directive_name(body) {
            Name::None => return true,
            Name::Unclear => return false,
            Name::Word(name, rest) => (name, rest),
        };
        let skipping = self.skipping();
        let conditional = matches!(
            name,
            b"if" | b"ifdef" | b"ifndef" | b"elif" | b"else" | b"elifdef" | b"elifndef" | b"endif"
        );
        if conditional && !hash {
            // `%:` and `??=` are directives only with digraphs or trigraphs on: a group that one
            // reading opens and the compiler does not could hide a live `#include`.
            return false;
        }
        match name {
            b"if" | b"ifdef" | b"ifndef" => {
                let group = if skipping {
                    Group {
                        outer_skipped: true,
                        taken: false,
                        skipped: true,
                        after_else: false,
                    }
                } else if name == b"if" {
                    let Some(value) = constant(rest) else {
                        return false;
                    };
                    Group {
                        outer_skipped: false,
                        taken: value,
                        skipped: !value,
                        after_else: false,
                    }
                } else {
                    // Decided by a macro: maybe taken, maybe not.
                    Group {
                        outer_skipped: false,
                        taken: false,
                        skipped: false,
                        after_else: false,
                    }
                };
                self.stack.push(group);
                true
            }
            b"elif" | b"else" | b"elifdef" | b"elifndef" => {
                let Some(g) = self.stack.last_mut() else {
                    return false;
                };
                if g.after_else {
                    return false;
                }
                if g.outer_skipped {
                    return true;
                }
                let value = match name {
                    b"else" => {
                        g.after_else = true;
                        true
                    }
                    b"elif" => match constant(rest) {
                        Some(v) => v,
                        None => return false,
                    },
                    // Not every compiler knows `#elifdef`/`#elifndef`: refused where it matters.
                    _ => return false,
                };
                if g.taken || !value {
                    g.skipped = true;
                } else {
                    // Taken, or (after an `#ifdef` group) maybe taken; either way a group of this
                    // chain is now certainly taken, so every later one is skipped.
                    g.skipped = false;
                    g.taken = true;
                }
                true
            }
            b"endif" => self.stack.pop().is_some(),
            _ if skipping => true,
            _ => !is_file_directive(name, rest),
        }
    }
}

/// The value of a constant condition `0` or `1` (the rest of an `#if`/`#elif` line, comments
/// already removed), `None` for anything else.
fn constant(rest: &[u8]) -> Option<bool> {
    match trim_end(trim_start(rest)) {
        b"0" => Some(false),
        b"1" => Some(true),
        _ => None,
    }
}

/// The text after the `#` (or `%:`, `??=`) that starts a directive line, and whether it was
/// spelled `#`; `None` when the line is no directive.
fn directive_body(code: &[u8]) -> Option<(bool, &[u8])> {
    let t = trim_start(code);
    if let Some(r) = t.strip_prefix(b"#") {
        Some((true, r))
    } else if let Some(r) = t.strip_prefix(b"%:") {
        Some((false, r))
    } else {
        t.strip_prefix(b"??=").map(|r| (false, r))
    }
}

/// A directive that reads a file (or imports a module) when it is not skipped.
fn is_file_directive(name: &[u8], rest: &[u8]) -> bool {
    if name.starts_with(b"include") || name.starts_with(b"import") || name.starts_with(b"embed") {
        return true;
    }
    if name == b"pragma" {
        let p = trim_start(rest);
        if let Some(g) = p.strip_prefix(b"GCC") {
            return trim_start(g).starts_with(b"dependency");
        }
        if let Some(c) = p.strip_prefix(b"clang") {
            // Modules read files; `__debug` commands dump compiler state or crash it.
            let c = trim_start(c);
            return c.starts_with(b"module") || c.starts_with(b"__debug");
        }
    }
    false
}

/// A `_Pragma` on a line that names `dependency` or `module` (`_Pragma("GCC dependency ...")`,
/// `_Pragma("clang module import ...")`).
fn mentions_dangerous_pragma(code: &[u8]) -> bool {
    use memchr::memmem::find;
    find(code, b"_Pragma").is_some()
        && (find(code, b"dependency").is_some() || find(code, b"module").is_some())
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\x0b' | b'\x0c' | b'\r'))
        .count();
    &s[n..]
}

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .rev()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\x0b' | b'\x0c' | b'\r'))
        .count();
    &s[..s.len() - n]
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

    #[test]
    fn accepts_file_directives_only_in_groups_the_compiler_skips() {
        // clang -frewrite-includes output, as clang 14 writes it.
        let rewritten = "# 1 \"<built-in>\"\n# 1 \"a.c\"\n\
            #if 0 /* expanded by -frewrite-includes */\n#include \"a.h\"\n\
            #endif /* expanded by -frewrite-includes */\n# 1 \"a.c\"\n# 1 \"./a.h\" 1\n\
            #if 0 /* disabled by -frewrite-includes */\n#if !defined(X) && __has_include(<y.h>)\n\
            #elif Z\n#endif\n#endif /* disabled by -frewrite-includes */\n\
            #if 1 /* evaluated by -frewrite-includes */\n# 3 \"./a.h\"\n#define Y 1\n\
            #elif 0 /* evaluated by -frewrite-includes */\n#include <never.h>\n#endif\n\
            #ifdef Y\nint y;\n#else\nint n;\n#endif\n# 2 \"a.c\" 2\nint x;\n";
        assert_eq!(first_file_directive(rewritten.as_bytes()), None);
        let cases: &[(&str, Option<usize>)] = &[
            ("#if 0\n#include \"/x\"\n#endif\n", None),
            ("#if 0\n#if 1\n#include \"/x\"\n#endif\n#endif\n", None),
            ("#if 1\n#include \"/x\"\n#endif\n", Some(2)),
            // A group certainly taken skips the rest of its chain, however it was written.
            ("#if 1\n#else\n#include \"/x\"\n#endif\n", None),
            ("#if 0\n#elif 1\n#include \"/x\"\n#endif\n", Some(3)),
            ("#if 0\n#else\n#include \"/x\"\n#endif\n", Some(3)),
            ("#if 1\n#elif 1\n#include \"/x\"\n#endif\n", None),
            // `#ifdef` groups may be taken: a later group is skipped only after a certain one.
            ("#ifdef X\n#include \"/x\"\n#endif\n", Some(2)),
            ("#ifdef X\n#else\n#include \"/x\"\n#endif\n", Some(3)),
            ("#ifdef X\n#elif 1\n#else\n#include \"/x\"\n#endif\n", None),
            ("#ifdef X\n#elif 0\n#include \"/x\"\n#endif\n", None),
            // The group ends where the compiler ends it.
            ("#if 0\n#endif\n#include \"/x\"\n#endif\n", Some(3)),
            ("#if 0\n#else\n#endif\n#include \"/x\"\n", Some(4)),
            ("#if 0\n# endif\n#include \"/x\"\n", Some(3)),
            ("#if 0\n#/* c */endif\n#include \"/x\"\n", Some(3)),
            ("#if 0\n#en\\\ndif\n#include \"/x\"\n", Some(4)),
            // A comment in a directive goes on past the newline: this is `#endif`.
            ("#if 0\n# /*\n*/ endif\n#include \"/x\"\n", Some(4)),
            ("#/*\n*/include \"/x\"\n", Some(1)),
            // Stray `#endif`s, names some compiler may read otherwise, and conditionals spelled
            // `%:`/`??=` are refused.
            ("#endif\n", Some(1)),
            ("#if 0\n#endif$\n#include \"/x\"\n#endif\n", Some(2)),
            ("#if 0\n#ifdef\\u00e9\n#endif\n", Some(2)),
            ("??=if 0\n#include \"/x\"\n#endif\n", Some(1)),
            ("%:if 0\n#include \"/x\"\n#endif\n", Some(1)),
            ("#if 0\n%:endif\n#include \"/x\"\n", Some(2)),
            ("#if 1\n#elifdef X\n#endif\n", Some(2)),
            // Live conditions must be constants.
            ("#if 2\n#endif\n", Some(1)),
            ("#if 0\n#elif defined(X)\n#endif\n", Some(2)),
            ("#if 0 /* c */\n#endif\n", None),
            // Modules and dependency pragmas, live or not.
            ("#pragma clang module import x\n", Some(1)),
            ("_Pragma(\"clang module import x\")\n", Some(1)),
            ("#if 0\n#pragma clang module import x\n#endif\n", None),
            ("#pragma clang __debug dump x\n", Some(1)),
            // A digit separator is no character literal where C++14 and C23 have them, and a
            // raw string is refused: either could make a comment look opened or closed.
            ("int a = 1'0 + 2'; /*\n#include \"/x\"\n*/\n", Some(2)),
            ("int b = 1'000; /* c */\n", None),
            ("char c = u8'a'; /* c */\n", None),
            (
                "const char *r = R\"x( \" /* )x\";\n#include \"/x\"\n",
                Some(1),
            ),
            ("int R = 1; const char *s = \"R\";\nint FOOR\"\";\n", None),
            // A byte order mark starts the file: the directive after it is one.
            ("\u{feff}#include \"/x\"\n", Some(1)),
        ];
        for (text, want) in cases {
            assert_eq!(first_file_directive(text.as_bytes()), *want, "{text:?}");
        }
    }
}

#[cfg(test)]
mod shortcut_tests {
    use super::*;
    use proptest::prelude::*;

    /// One reading, line by line: the scan before the readings shared a pass (a raw string
    /// opened in a directive's comment continuation now refuses the text; it used to end the scan
    /// as if nothing had been found).
    fn one_reading(text: &[u8], lone_cr_is_newline: bool, reading: Reading) -> Option<usize> {
        let mut in_comment = false;
        let mut line_no = 0;
        let mut conds = Conditionals::default();
        let mut lines = text
            .split(|b| *b == b'\n' || (lone_cr_is_newline && *b == b'\r'))
            .peekable();
        while let Some(first) = lines.next() {
            line_no += 1;
            let start_line = line_no;
            let line = logical_line(first, &mut lines, &mut line_no);
            let Some(code) = strip_comments(&line, &mut in_comment, reading) else {
                return Some(start_line);
            };
            let mut code = code.into_owned();
            while in_comment && directive_body(&code).is_some() {
                let Some(next) = lines.next() else { break };
                line_no += 1;
                let line = logical_line(next, &mut lines, &mut line_no);
                let Some(more) = strip_comments(&line, &mut in_comment, reading) else {
                    return Some(start_line);
                };
                code.push(b' ');
                code.extend_from_slice(&more);
            }
            if mentions_dangerous_pragma(&code) {
                return Some(start_line);
            }
            if let Some((hash, body)) = directive_body(&code)
                && !conds.directive(hash, body)
            {
                return Some(start_line);
            }
        }
        None
    }

    /// Every reading, always, each on its own: what [`first_file_directive`] computes without
    /// its shortcuts.
    fn every_reading(text: &[u8]) -> Option<usize> {
        let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
        let replaced = replace_trigraphs(text);
        let mut first: Option<usize> = None;
        for t in [text, replaced.as_slice()] {
            for lone_cr_is_newline in [false, true] {
                for digit_separators in [false, true] {
                    let r = Reading { digit_separators };
                    first = match (first, one_reading(t, lone_cr_is_newline, r)) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
        }
        first
    }

    const PIECES: &[&str] = &[
        "#",
        "include",
        "??=",
        "??/",
        "??",
        "?",
        "\r",
        "\n",
        "\r\n",
        "'",
        "1",
        "0x1'2",
        "/*",
        "*/",
        "//",
        "\"",
        "R\"x(",
        ")x\"",
        " ",
        "%:",
        "if 0",
        "if 1",
        "else",
        "endif",
        "ifdef X",
        "_Pragma(\"GCC dependency\")",
        "\\",
        "pragma GCC dependency",
        "int x;",
        "e+",
        ".5",
        "#/*",
        "*/include <x>",
        "it's",
        "1'0",
        "'a'",
    ];

    #[test]
    fn a_raw_string_in_a_directive_continuation_refuses_the_text() {
        // The raw string hides what follows from this reading: the text is refused, not passed.
        let text = b"#/*\n*/ R\"x(\n#include \"/etc/passwd\"\n";
        assert_eq!(first_file_directive(text), Some(1));
    }

    proptest! {
        #[test]
        fn shortcuts_find_what_every_reading_finds(
            pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..60)
        ) {
            let text = pieces.concat();
            prop_assert_eq!(first_file_directive(text.as_bytes()), every_reading(text.as_bytes()));
        }
    }
}
