//! Where each policy and each of its conditions sits in its source file, for
//! [`PolicyEngine::explain`](crate::PolicyEngine::explain).
//!
//! Cedar's public API gives no source positions for expressions, so this module scans the
//! policy text itself: a small lexer that knows string literals (with `\` escapes), `//`
//! comments and bracket nesting splits a file into statements, a statement into its scope
//! (`principal`, `action`, `resource`) and its `when` / `unless` clauses, and a clause into
//! the operands of its top-level operator: `&&` for `when`, `||` for `unless`.
//!
//! The split is only a presentation aid: the explanation evaluates each piece as its own
//! policy, so a piece that does not parse on its own makes the whole clause one piece.
//! Splitting at the operator of lowest precedence is exact: `a && b || c` is a disjunction
//! (not split for `when`), and `if`-expressions (which extend to the end of the clause)
//! are never split.

use std::collections::HashMap;

use cedar_policy::Policy;

/// The texts of every policy, by policy id.
#[derive(Debug, Default)]
pub(crate) struct Texts {
    by_id: HashMap<String, PolicyText>,
}

/// One policy's source.
#[derive(Debug, Clone)]
pub(crate) struct PolicyText {
    /// The scope constraints, in order: principal, action, resource.
    pub(crate) scope: Vec<Piece>,
    /// The `when` / `unless` clauses, in order.
    pub(crate) clauses: Vec<Clause>,
}

/// A `when` or `unless` clause, split into the operands of its top-level operator.
#[derive(Debug, Clone)]
pub(crate) struct Clause {
    /// `true` for `unless`.
    pub(crate) unless: bool,
    /// The operands; one piece when the body is not split.
    pub(crate) pieces: Vec<Piece>,
}

/// A fragment of policy text with its position in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    /// The text, trimmed of surrounding whitespace and leading comments.
    pub(crate) text: String,
    /// 1-based line in the file.
    pub(crate) line: usize,
    /// 1-based column (in characters).
    pub(crate) column: usize,
}

impl Texts {
    /// Indexes `sources` ((file name, text) pairs) the way the loader names policies:
    /// `@id` when present, otherwise `<file>#<index>`.
    pub(crate) fn index(sources: &[(String, String)]) -> Self {
        let mut by_id = HashMap::new();
        for (file, text) in sources {
            for (index, (start, stmt)) in statements(text).into_iter().enumerate() {
                let Ok(policy) = Policy::parse(None, format!("{stmt};")) else {
                    continue;
                };
                let id = policy
                    .annotation("id")
                    .map_or_else(|| format!("{file}#{index}"), str::to_owned);
                let locate = |offset: usize, piece: &str| {
                    let (line, column) = line_column(text, start.saturating_add(offset));
                    Piece {
                        text: piece.to_owned(),
                        line,
                        column,
                    }
                };
                let Some((scope, clauses)) = analyse(stmt) else {
                    continue;
                };
                by_id.insert(
                    id,
                    PolicyText {
                        scope: scope.iter().map(|(o, t)| locate(*o, t)).collect(),
                        clauses: clauses
                            .into_iter()
                            .map(|(unless, pieces)| Clause {
                                unless,
                                pieces: pieces.iter().map(|(o, t)| locate(*o, t)).collect(),
                            })
                            .collect(),
                    },
                );
            }
        }
        Self { by_id }
    }

    /// The source of policy `id`, if it could be analysed.
    pub(crate) fn get(&self, id: &str) -> Option<&PolicyText> {
        self.by_id.get(id)
    }
}

/// One byte of code (outside strings and comments) and its bracket depth (brackets
/// themselves are outside the group they delimit).
#[derive(Debug, Clone, Copy)]
struct Code {
    at: usize,
    byte: u8,
    depth: usize,
}

/// The code bytes of `text`.
fn code_bytes(text: &str) -> Vec<Code> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let (mut depth, mut i) = (0usize, 0usize);
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                // Skip the string literal (its bytes are not code).
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    i += if c == b'\\' { 2 } else { 1 };
                    if c == b'"' {
                        break;
                    }
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while let Some(&c) = bytes.get(i) {
                    if c == b'\n' {
                        break;
                    }
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        // A closing bracket carries the depth of its opening one.
        if matches!(b, b')' | b']' | b'}') {
            depth = depth.saturating_sub(1);
        }
        out.push(Code {
            at: i,
            byte: b,
            depth,
        });
        if matches!(b, b'(' | b'[' | b'{') {
            depth += 1;
        }
        i += 1;
    }
    out
}

/// The statements of a file (split at top-level `;`), with their byte offsets;
/// statements holding no code are left out.
fn statements(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut has_code = false;
    for c in code_bytes(text) {
        if c.byte == b';' && c.depth == 0 {
            if has_code && let Some(stmt) = text.get(start..c.at) {
                out.push((start, stmt));
            }
            start = c.at + 1;
            has_code = false;
        } else if !c.byte.is_ascii_whitespace() {
            has_code = true;
        }
    }
    out
}

type Located<'a> = (usize, &'a str);

/// The scope constraints and clauses of one statement, as (offset, text) pieces.
#[expect(
    clippy::type_complexity,
    reason = "a private helper's plain tuple result"
)]
fn analyse(stmt: &str) -> Option<(Vec<Located<'_>>, Vec<(bool, Vec<Located<'_>>)>)> {
    let code = code_bytes(stmt);
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    // A keyword at depth 0: a whole identifier.
    let keyword_at = |k: usize, word: &str| -> bool {
        let Some(c) = code.get(k) else { return false };
        if c.depth != 0 || !stmt.get(c.at..).is_some_and(|s| s.starts_with(word)) {
            return false;
        }
        let before =
            c.at.checked_sub(1)
                .and_then(|i| stmt.as_bytes().get(i))
                .copied();
        let after = stmt.as_bytes().get(c.at + word.len()).copied();
        !before.is_some_and(|b| is_ident(b) || b == b'@') && !after.is_some_and(is_ident)
    };
    // The head: `permit (` / `forbid (` ... `)`.
    let head = (0..code.len()).find(|&k| keyword_at(k, "permit") || keyword_at(k, "forbid"))?;
    let open = (head..code.len()).find(|&k| code.get(k).is_some_and(|c| c.byte == b'('))?;
    let (scope, after_head) = split_group(stmt, &code, open, b',', 1)?;
    let mut clauses = Vec::new();
    let mut k = after_head;
    while k < code.len() {
        let unless = keyword_at(k, "unless");
        if !(unless || keyword_at(k, "when")) {
            k += 1;
            continue;
        }
        let open = (k..code.len()).find(|&j| code.get(j).is_some_and(|c| c.byte == b'{'))?;
        let (ands, next) = split_group(stmt, &code, open, b'&', 2)?;
        let (ors, _) = split_group(stmt, &code, open, b'|', 2)?;
        let whole = {
            let first = ands.first()?;
            let last = ands.last()?;
            let end = last.0 + last.1.len();
            (first.0, stmt.get(first.0..end)?)
        };
        let starts_with_if =
            whole.1.starts_with("if") && !whole.1.as_bytes().get(2).copied().is_some_and(is_ident);
        let pieces = if starts_with_if {
            vec![whole]
        } else if unless {
            ors
        } else if ors.len() > 1 {
            vec![whole]
        } else {
            ands
        };
        clauses.push((unless, pieces));
        k = next;
    }
    Some((scope, clauses))
}

/// Splits the bracket group opening at `code[open]` at the separator `sep` (repeated
/// `times` times: `,` once, `&&` and `||` twice) found directly inside it; returns the
/// trimmed parts and the index of the first code byte after the group.
fn split_group<'a>(
    stmt: &'a str,
    code: &[Code],
    open: usize,
    sep: u8,
    times: usize,
) -> Option<(Vec<Located<'a>>, usize)> {
    let inner = code.get(open)?.depth + 1;
    let mut parts = Vec::new();
    let mut start = code.get(open)?.at + 1;
    let mut k = open + 1;
    while let Some(c) = code.get(k) {
        if c.depth < inner {
            // The closing bracket.
            parts.push(trim(stmt, start, c.at)?);
            return Some((parts, k + 1));
        }
        let is_sep = c.depth == inner
            && (0..times).all(|j| {
                code.get(k + j)
                    .is_some_and(|d| d.byte == sep && d.at == c.at + j && d.depth == inner)
            });
        if is_sep {
            parts.push(trim(stmt, start, c.at)?);
            start = c.at + times;
            k += times;
        } else {
            k += 1;
        }
    }
    None
}

/// `stmt[start..end]` without surrounding whitespace and leading `//` comments.
fn trim(stmt: &str, mut start: usize, end: usize) -> Option<Located<'_>> {
    loop {
        let rest = stmt.get(start..end)?;
        let trimmed = rest.trim_start();
        start += rest.len() - trimmed.len();
        if trimmed.starts_with("//") {
            start += trimmed.find('\n').map_or(trimmed.len(), |n| n + 1);
        } else {
            return Some((start, trimmed.trim_end()));
        }
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `src`.
fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    fn texts(src: &str) -> Texts {
        Texts::index(&[("f.cedar".to_owned(), src.to_owned())])
    }

    #[test]
    fn scope_and_clauses_are_located() {
        let src = "// a comment; with a semicolon\n\
                   @id(\"p;1\")\n\
                   permit (principal in Legate::Issuer::\"a\", action, resource)\n\
                   when { principal.claims has ref &&\n  principal.claims.ref == \"x && y\" }\n\
                   unless { context.utc_hour < 2 || context.utc_hour > 20 };\n\
                   forbid(principal, action in [Legate::Action::\"a\", Legate::Action::\"b\"], resource)\n\
                   when { if context.utc_hour < 2 then true else false && true };";
        let t = texts(src);
        let p = t.get("p;1").unwrap();
        assert_eq!(p.scope[0].text, "principal in Legate::Issuer::\"a\"");
        assert_eq!((p.scope[0].line, p.scope[0].column), (3, 9));
        assert_eq!(p.scope[2].text, "resource");
        assert_eq!(p.clauses.len(), 2);
        assert!(!p.clauses[0].unless);
        let when: Vec<_> = p.clauses[0]
            .pieces
            .iter()
            .map(|x| x.text.as_str())
            .collect();
        assert_eq!(
            when,
            [
                "principal.claims has ref",
                "principal.claims.ref == \"x && y\""
            ]
        );
        assert_eq!(
            (p.clauses[0].pieces[1].line, p.clauses[0].pieces[1].column),
            (5, 3)
        );
        assert!(p.clauses[1].unless);
        assert_eq!(p.clauses[1].pieces.len(), 2);
        let q = t.get("f.cedar#1").unwrap();
        assert_eq!(
            q.scope[1].text,
            "action in [Legate::Action::\"a\", Legate::Action::\"b\"]"
        );
        assert_eq!(
            q.clauses[0].pieces.len(),
            1,
            "an `if` clause is never split"
        );
    }

    /// Stops a disjunction inside `when` from being explained as a conjunction:
    /// `a && b || c` is `(a && b) || c`, one condition.
    #[test]
    fn a_when_clause_with_a_top_level_or_is_not_split() {
        let t = texts("permit(principal, action, resource) when { true && false || true };");
        let p = t.get("f.cedar#0").unwrap();
        assert_eq!(p.clauses[0].pieces.len(), 1);
        assert_eq!(p.clauses[0].pieces[0].text, "true && false || true");
    }
}
