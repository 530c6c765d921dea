//! What a command prints: a [`Report`] holds both renderings (a table for people, JSON for
//! scripts); [`emit`] writes to stdout, and a closed stdout (`| head`) ends the command quietly.

use std::io::{BufRead, IsTerminal, Write};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use serde_json::Value;

use crate::fail::{Fail, Outcome};

/// One answer of a command, in both renderings.
#[derive(Debug)]
pub(crate) struct Report {
    /// For people: tables and lines, ending with a newline.
    pub(crate) human: String,
    /// For scripts.
    pub(crate) json: Value,
}

impl Report {
    /// The rendering asked for, ending with a newline (JSON on one line when `compact`).
    pub(crate) fn render(&self, json: bool, compact: bool) -> String {
        if !json {
            return self.human.clone();
        }
        let mut text = if compact {
            self.json.to_string()
        } else {
            serde_json::to_string_pretty(&self.json).unwrap_or_else(|_| self.json.to_string())
        };
        text.push('\n');
        text
    }
}

/// What a change did: its report, and the failure to end with when it was done only in part
/// (exit 1 after the report is printed).
#[derive(Debug)]
pub(crate) struct Changed {
    pub(crate) report: Report,
    pub(crate) partial: Option<Fail>,
}

impl From<Report> for Changed {
    fn from(report: Report) -> Self {
        Self {
            report,
            partial: None,
        }
    }
}

/// Writes `text` to stdout and flushes it. A reader that went away stops the command
/// quietly (exit 0); any other failure to write is exit 1.
pub(crate) fn emit(text: &str) -> Outcome {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Fail::quiet()),
        Err(e) => Err(Fail::failed(format!("cannot write to stdout: {e}"))),
    }
}

/// Whether stdout is a terminal (tables then fit its width; `--watch` clears the screen).
pub(crate) fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// A table with `headers` and `rows`, as text ending with a newline.
pub(crate) fn table<R, C>(headers: &[&str], rows: R) -> String
where
    R: IntoIterator<Item = C>,
    C: IntoIterator<Item = String>,
{
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(if stdout_is_terminal() {
            ContentArrangement::Dynamic
        } else {
            ContentArrangement::Disabled
        })
        .set_header(headers.iter().copied());
    for row in rows {
        table.add_row(row);
    }
    let mut text = table.to_string();
    text.push('\n');
    text
}

/// A two-column table of `field`, `value` pairs.
pub(crate) fn fields<'a, I>(pairs: I) -> String
where
    I: IntoIterator<Item = (&'a str, String)>,
{
    table(
        &["field", "value"],
        pairs
            .into_iter()
            .map(|(name, value)| vec![name.to_owned(), value]),
    )
}

/// An optional value, or `-`.
pub(crate) fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Asks before a change: `--yes` goes ahead; on a terminal, the operator answers `y`;
/// without a terminal and without `--yes`, the command is refused (exit 2). `what` says the
/// change, as in "purge 3 tasks from the dead-letter queue of emails".
pub(crate) fn confirm(yes: bool, what: &str) -> Outcome {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    confirm_with(
        yes,
        terminal,
        &mut stdin.lock(),
        &mut std::io::stderr(),
        what,
    )
}

/// [`confirm`], reading the answer from `input` and asking on `prompt`.
fn confirm_with(
    yes: bool,
    terminal: bool,
    input: &mut dyn BufRead,
    prompt: &mut dyn Write,
    what: &str,
) -> Outcome {
    if yes {
        return Ok(());
    }
    if !terminal {
        return Err(Fail::usage(format!(
            "refusing to {what} without --yes: stdin is not a terminal to confirm on"
        )));
    }
    // The question goes to stderr, so stdout holds only the report.
    let _ = write!(prompt, "{what}? [y/N] ").and_then(|()| prompt.flush());
    let mut answer = String::new();
    input
        .read_line(&mut answer)
        .map_err(|e| Fail::failed(format!("cannot read the answer: {e}")))?;
    match answer.trim() {
        "y" | "Y" | "yes" | "YES" | "Yes" => Ok(()),
        _ => Err(Fail::failed("not confirmed: nothing was changed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(yes: bool, terminal: bool, answer: &str) -> (Outcome, String) {
        let mut prompt = Vec::new();
        let outcome = confirm_with(
            yes,
            terminal,
            &mut answer.as_bytes(),
            &mut prompt,
            "purge 2 tasks",
        );
        (outcome, String::from_utf8(prompt).unwrap())
    }

    #[test]
    fn a_change_goes_ahead_only_when_confirmed() {
        let (outcome, prompt) = ask(false, true, "y\n");
        assert!(outcome.is_ok());
        assert_eq!(prompt, "purge 2 tasks? [y/N] ");
        assert!(ask(false, true, "yes\n").0.is_ok());
        for no in ["\n", "n\n", "", "maybe\n"] {
            let fail = ask(false, true, no).0.unwrap_err();
            assert_eq!(fail.code, 1, "{no:?}");
            assert!(fail.message.contains("nothing was changed"));
        }
        // --yes asks nothing, terminal or not.
        assert_eq!(ask(true, false, "").1, "");
        assert!(ask(true, true, "n\n").0.is_ok());
        // No terminal, no --yes: bad usage, and no question.
        let (outcome, prompt) = ask(false, false, "y\n");
        let fail = outcome.unwrap_err();
        assert_eq!(fail.code, 2);
        assert!(
            fail.message
                .contains("refusing to purge 2 tasks without --yes")
        );
        assert_eq!(prompt, "");
    }
}
