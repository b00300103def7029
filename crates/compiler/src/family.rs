//! Compiler family detection from the program name.

use std::path::Path;

/// Which compiler driver a program name denotes.
///
/// Detected from the file name alone (`gcc-12`, `x86_64-linux-gnu-g++`, `clang++-17`, `cc`), so it
/// is cheap and needs no process; [`crate::probe_toolchain`] runs the binary to learn the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompilerKind {
    /// `gcc`.
    Gcc,
    /// `g++`.
    Gxx,
    /// `clang`.
    Clang,
    /// `clang++`.
    Clangxx,
    /// `cc` (the system C compiler; GCC or clang behind it).
    Cc,
    /// `c++` (the system C++ compiler).
    Cxx,
}

/// The program name is not a C/C++ compiler this crate knows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown compiler `{name}`: expected gcc, g++, cc, c++, clang or clang++ (optionally with a target prefix like `x86_64-linux-gnu-` or a version suffix like `-12`)"
)]
pub struct UnknownCompiler {
    /// The name that was not recognised.
    pub name: String,
}

impl CompilerKind {
    /// Detects the driver from a program path or name.
    ///
    /// ```
    /// use hybridgrid_compiler::CompilerKind;
    /// assert_eq!(CompilerKind::detect("/usr/bin/x86_64-linux-gnu-gcc-12".as_ref()).unwrap(), CompilerKind::Gcc);
    /// assert_eq!(CompilerKind::detect("clang++-17".as_ref()).unwrap(), CompilerKind::Clangxx);
    /// assert!(CompilerKind::detect("rustc".as_ref()).is_err());
    /// ```
    pub fn detect(program: &Path) -> Result<Self, UnknownCompiler> {
        let unknown = || UnknownCompiler {
            name: program.display().to_string(),
        };
        let file = program
            .file_name()
            .and_then(|f| f.to_str())
            .ok_or_else(unknown)?;
        let file = file.strip_suffix(".exe").unwrap_or(file);
        // Strip a version suffix: `gcc-12`, `clang-17`, `gcc-12.2`, `clang++17`? (only `-N[.N]`).
        let base = match file.rsplit_once('-') {
            Some((head, tail))
                if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit() || c == '.') =>
            {
                head
            }
            _ => file,
        };
        // The driver name is the last `-`-separated word (`x86_64-linux-gnu-gcc`), except that
        // `g++`/`c++`/`clang++` contain no dash themselves.
        let word = base.rsplit('-').next().unwrap_or(base);
        match word {
            "gcc" => Ok(CompilerKind::Gcc),
            "g++" => Ok(CompilerKind::Gxx),
            "clang" => Ok(CompilerKind::Clang),
            "clang++" => Ok(CompilerKind::Clangxx),
            "cc" => Ok(CompilerKind::Cc),
            "c++" => Ok(CompilerKind::Cxx),
            _ => Err(unknown()),
        }
    }

    /// The family name as [`hybridgrid_core::Toolchain::name`] carries it.
    pub fn name(self) -> &'static str {
        match self {
            CompilerKind::Gcc => "gcc",
            CompilerKind::Gxx => "g++",
            CompilerKind::Clang => "clang",
            CompilerKind::Clangxx => "clang++",
            CompilerKind::Cc => "cc",
            CompilerKind::Cxx => "c++",
        }
    }

    /// True for C++ drivers, which compile `.c` (and `.i`) files as C++.
    pub fn is_cxx(self) -> bool {
        matches!(
            self,
            CompilerKind::Gxx | CompilerKind::Clangxx | CompilerKind::Cxx
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn detects_names() {
        let cases: &[(&str, Option<CompilerKind>)] = &[
            ("cc", Some(CompilerKind::Cc)),
            ("c++", Some(CompilerKind::Cxx)),
            ("gcc", Some(CompilerKind::Gcc)),
            ("g++", Some(CompilerKind::Gxx)),
            ("clang", Some(CompilerKind::Clang)),
            ("clang++", Some(CompilerKind::Clangxx)),
            ("gcc-12", Some(CompilerKind::Gcc)),
            ("g++-12", Some(CompilerKind::Gxx)),
            ("clang-17", Some(CompilerKind::Clang)),
            ("clang++-17.0", Some(CompilerKind::Clangxx)),
            ("/usr/bin/x86_64-linux-gnu-gcc", Some(CompilerKind::Gcc)),
            ("x86_64-linux-gnu-gcc-12", Some(CompilerKind::Gcc)),
            ("aarch64-linux-gnu-g++-12", Some(CompilerKind::Gxx)),
            ("/opt/x/bin/gcc.exe", Some(CompilerKind::Gcc)),
            ("gcc-ar", None),
            ("gcc-ar-12", None),
            ("rustc", None),
            ("ld", None),
            ("", None),
        ];
        for (name, want) in cases {
            let got = CompilerKind::detect(Path::new(name)).ok();
            assert_eq!(got, *want, "detect({name:?})");
        }
    }

    #[test]
    fn error_names_the_program() {
        let err = CompilerKind::detect(Path::new("/usr/bin/javac")).unwrap_err();
        assert_eq!(err.name, "/usr/bin/javac");
        assert!(err.to_string().contains("/usr/bin/javac"));
    }

    #[test]
    fn cxx_drivers() {
        assert!(CompilerKind::Gxx.is_cxx());
        assert!(CompilerKind::Cxx.is_cxx());
        assert!(!CompilerKind::Cc.is_cxx());
    }
}
