//! Cedar diagnostics rendered as one-line messages with line and column.

use miette::Diagnostic;

/// Renders `diag` as `line L, column C: message; help: ...`, where the position is that of
/// the diagnostic's first label within `src` (the text the diagnostic was produced from).
pub(crate) fn render(diag: &dyn Diagnostic, src: &str) -> String {
    let mut out = String::new();
    let first_label = diag.labels().and_then(|mut labels| labels.next());
    if let Some(label) = first_label {
        let (line, column) = line_column(src, label.offset());
        out.push_str(&format!("line {line}, column {column}: "));
    }
    out.push_str(&diag.to_string());
    if let Some(help) = diag.help() {
        out.push_str(&format!("; help: {help}"));
    }
    out
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
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let src = "ab\ncdé\nf";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 1), (1, 2));
        assert_eq!(line_column(src, 3), (2, 1));
        // After the two-byte `é`.
        assert_eq!(line_column(src, 7), (2, 4));
        assert_eq!(line_column(src, 8), (3, 1));
        // Out of range: clamps to the end.
        assert_eq!(line_column(src, 100), (3, 2));
    }
}
