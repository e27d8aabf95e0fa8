//! The 2013 walkthrough's spelling: program names and Go-style single-dash flags.
//!
//! `./cli -port 9002 -cget -key foo` becomes `gclab cli cget --port=9002 --key=foo` before
//! clap sees it. The flag names are read from the clap definition itself, so the two can
//! never drift apart. The rules, Go's `flag` package's where they can be:
//! - program name: `bin/cli …` runs as `gclab cli …`;
//! - an action flag (`-cget`), wherever it stands, becomes the subcommand;
//! - `-name value` and `-name=value` become `--name=value`. The next word is the value
//!   unless it is itself one of the command's flags (`-port -cget` is a missing value, not
//!   the port "-cget"); so `-key -foo` is the key "-foo", as in Go;
//! - an unknown word (`-kye`, `-cgt`) is passed on so that clap can suggest the right one,
//!   and clap's errors are told back in the spelling the person typed.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use clap::error::ErrorKind;
use clap::Parser;

/// The programs `build.sh` links to `gclab`; each runs the subcommand of its name.
const PROGRAMS: [&str; 3] = ["dbserver", "frontend", "cli"];

/// Parses the command line of either spelling; on a mistake, prints clap's error in the
/// words the person typed and exits 2 (help and version exit 0).
pub fn parse<P: Parser>(args: impl IntoIterator<Item = OsString>) -> P {
    let mut command = P::command();
    command.build();
    let translated = match translate(args, &command) {
        Ok(translated) => translated,
        Err(message) => command.error(ErrorKind::InvalidValue, message).exit(),
    };
    let parsed = command
        .try_get_matches_from_mut(&translated.args)
        .and_then(|mut matches| P::from_arg_matches_mut(&mut matches));
    match parsed {
        Ok(parsed) => parsed,
        Err(error) if !translated.go_style() || !error.use_stderr() => error.exit(),
        Err(error) => {
            eprint!("{}", translated.explain(&error));
            std::process::exit(error.exit_code());
        }
    }
}

/// A command line in clap's spelling, and what was rewritten to get there.
#[derive(Debug)]
pub struct Translated {
    pub args: Vec<OsString>,
    /// (what clap sees, what was typed), for telling clap's errors back.
    rewrites: Vec<(String, String)>,
    /// The long flags of the command that runs, for suggestions.
    flags: Vec<String>,
}

impl Translated {
    fn go_style(&self) -> bool {
        !self.rewrites.is_empty()
    }

    /// clap's error message, as the person who typed the command line would say it.
    fn explain(&self, error: &clap::Error) -> String {
        let mut message = self.told_back(&error.render().to_string());
        if error.kind() == ErrorKind::UnknownArgument && !message.contains("tip:") {
            self.suggest(&mut message, error);
        }
        message
    }

    /// clap's message with our rewrites undone: `'--kye'` is `'-kye'` again, and the
    /// suggestion it makes is spelt the same way.
    fn told_back(&self, message: &str) -> String {
        let mut message = message.to_owned();
        for (ours, typed) in &self.rewrites {
            for end in ["'", " <", "="] {
                message = message.replace(&format!("'{ours}{end}"), &format!("'{typed}{end}"));
            }
        }
        message.replace("exists: '--", "exists: '-")
    }

    /// clap suggests a flag only when it is spelt nearly in order; `-kye` for `-key` is a
    /// swap, which it misses. Damerau–Levenshtein (from `strsim`, clap's own helper) counts
    /// a swap as one edit: the closest flag within two edits is offered.
    fn suggest(&self, message: &mut String, error: &clap::Error) {
        use clap::error::{ContextKind, ContextValue};
        let Some(ContextValue::String(typed)) = error.get(ContextKind::InvalidArg) else {
            return;
        };
        let typed = typed.trim_start_matches('-');
        let best = self
            .flags
            .iter()
            .map(|flag| (strsim::damerau_levenshtein(typed, flag), flag))
            .filter(|(distance, _)| *distance <= 2)
            .min();
        if let (Some((_, flag)), Some(at)) = (best, message.find("\nUsage:")) {
            let dashes = if self.go_style() { "-" } else { "--" };
            message.insert_str(
                at,
                &format!("\n  tip: a similar argument exists: '{dashes}{flag}'\n"),
            );
        }
    }
}

/// Rewrites a command line of either spelling into clap's.
pub fn translate(
    args: impl IntoIterator<Item = OsString>,
    root: &clap::Command,
) -> Result<Translated, String> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let program = args
        .first()
        .and_then(|p| Path::new(p).file_name())
        .and_then(OsStr::to_str)
        .map(str::to_owned);
    if let Some(program) = program.filter(|p| PROGRAMS.contains(&p.as_str())) {
        // `bin/cli …` is `gclab cli …`, and its help and errors should say so.
        args[0] = "gclab".into();
        args.insert(1, program.into());
    }
    let mut translated = Translated {
        args,
        rewrites: Vec::new(),
        flags: Vec::new(),
    };
    let Some(sub) = translated
        .args
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(|name| root.find_subcommand(name))
    else {
        return Ok(translated);
    };
    let mut rest = translated.args.split_off(2);
    let mut leaf = sub;
    if sub.has_subcommands() {
        match rest.iter().position(|a| action(a, sub).is_some()) {
            Some(at) => {
                let word = rest.remove(at);
                leaf = action(&word, sub).expect("found above");
                let name = leaf.get_name().to_owned();
                if word.to_str() != Some(name.as_str()) {
                    translated.rewrites.push((name.clone(), word_of(&word)));
                }
                translated.args.push(name.into());
            }
            None => {
                missing_action(&mut rest, sub, &mut translated.rewrites)?;
                translated.args.append(&mut rest);
                return Ok(translated);
            }
        }
    }
    let flags = Flags::of(leaf, sub);
    translated.flags = flags
        .flags
        .iter()
        .filter_map(|f| f.get_long().map(str::to_owned))
        .collect();
    translated
        .args
        .extend(long_dashes(rest, &flags, &mut translated.rewrites)?);
    Ok(translated)
}

/// The subcommand of `parent` that `word` names as an action: `-cget`, `--cget`, `cget`.
fn action<'a>(word: &OsStr, parent: &'a clap::Command) -> Option<&'a clap::Command> {
    let name = word.to_str()?;
    let bare = name.trim_start_matches('-');
    (bare.len() > 1 && !name.starts_with("---"))
        .then(|| parent.find_subcommand(bare))
        .flatten()
        .filter(|sub| sub.get_name() != "help" || name == "help")
}

/// `gclab cli` with no action: a misspelt one (`-cgt`) goes to clap as a bare word, so it
/// suggests `cget`; flags alone (`-key foo`) get a sentence naming the actions.
fn missing_action(
    rest: &mut [OsString],
    sub: &clap::Command,
    rewrites: &mut Vec<(String, String)>,
) -> Result<(), String> {
    // Lossy, so that the words stand at the same places as the arguments.
    let words: Vec<String> = rest
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let help = ["-h", "-help", "--help", "-V", "--version"];
    if words.is_empty() || words.iter().any(|w| help.contains(&w.as_str())) {
        for arg in rest.iter_mut() {
            if arg.to_str() == Some("-help") {
                *arg = "--help".into();
            }
        }
        return Ok(()); // clap prints the help, or lists the commands
    }
    // A flag of one of the actions (`-key`), and whether it takes the next word.
    let leaf_flag = |name: &str| {
        sub.get_subcommands()
            .flat_map(|s| s.get_arguments())
            .chain(sub.get_arguments())
            .find(|a| a.get_long() == Some(name))
            .map(|a| a.get_action().takes_values())
    };
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        let Some(flag) = word.strip_prefix('-') else {
            return Ok(()); // a bare word: clap matches it against the actions itself
        };
        let name = flag.trim_start_matches('-');
        let (name, joined) = name
            .split_once('=')
            .map_or((name, false), |(n, _)| (n, true));
        match leaf_flag(name) {
            Some(takes_value) => i += if takes_value && !joined { 2 } else { 1 },
            None if is_word(name) => {
                rewrites.push((name.to_owned(), word.clone()));
                rest[i] = name.into();
                return Ok(());
            }
            None => i += 1,
        }
    }
    let actions: Vec<String> = sub
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .filter(|n| n != "help")
        .collect();
    Err(format!(
        "gclab {} needs a command first: one of {} (or, spelt as in 2013, -{})",
        sub.get_name(),
        actions.join(", "),
        actions[..actions.len().min(3)].join(", -")
    ))
}

/// The long flags a command line may use: the leaf's own and its parent's global ones.
struct Flags<'a> {
    flags: Vec<&'a clap::Arg>,
    parent: &'a clap::Command,
}

impl<'a> Flags<'a> {
    fn of(leaf: &'a clap::Command, parent: &'a clap::Command) -> Self {
        Flags {
            flags: leaf
                .get_arguments()
                .chain(parent.get_arguments().filter(|a| a.is_global_set()))
                .collect(),
            parent,
        }
    }

    fn find(&self, name: &str) -> Option<&&'a clap::Arg> {
        self.flags.iter().find(|f| f.get_long() == Some(name))
    }

    /// Whether `word` is one of this command's flags or actions, in either spelling: such a
    /// word is never taken as the value of the flag before it.
    fn is_flag(&self, word: &OsStr) -> bool {
        let Some(text) = word.to_str().filter(|t| t.starts_with('-')) else {
            return false;
        };
        let name = text.trim_start_matches('-');
        let name = name.split_once('=').map_or(name, |(n, _)| n);
        (name.len() > 1 && self.find(name).is_some())
            || (text.len() == 2
                && self
                    .flags
                    .iter()
                    .any(|f| f.get_short() == text.chars().nth(1)))
            || action(word, self.parent).is_some()
    }
}

/// `-name value` → `--name=value` for the flags of the command; unknown words get two
/// dashes, so clap names them whole (and suggests), instead of complaining about `-k`.
fn long_dashes(
    args: Vec<OsString>,
    flags: &Flags,
    rewrites: &mut Vec<(String, String)>,
) -> Result<Vec<OsString>, String> {
    let mut out = Vec::with_capacity(args.len());
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str().filter(|t| t.starts_with('-') && t.len() > 2) else {
            out.push(arg); // positionals, `-k`, `-`, anything not UTF-8
            continue;
        };
        let dashes = if text.starts_with("--") { 2 } else { 1 };
        let (name, value) = match text[dashes..].split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (&text[dashes..], None),
        };
        if text.starts_with("---") || !is_word(name) {
            out.push(arg);
            continue;
        }
        let long = format!("--{name}");
        if dashes == 1 {
            rewrites.push((long.clone(), format!("-{name}")));
        }
        match flags.find(name) {
            Some(flag) if flag.get_action().takes_values() && value.is_none() => {
                match args.next_if(|next| !flags.is_flag(next)) {
                    // Joined with `=`, so that a value starting with `-` reaches clap whole.
                    Some(value) => {
                        let mut joined = OsString::from(format!("{long}="));
                        joined.push(value);
                        out.push(joined);
                    }
                    None => return Err(format!("{} needs a value", &text)),
                }
            }
            _ => out.push(match value {
                Some(value) => format!("{long}={value}").into(),
                None => long.into(),
            }),
        }
    }
    Ok(out)
}

/// A flag-like name: `key`, `peer-timeout`; not `5` (a negative number) or `k`.
fn is_word(name: &str) -> bool {
    name.len() > 1
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c == '-')
}

fn word_of(word: &OsStr) -> String {
    word.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{CliArgs, CliCommand, Command, Gclab};
    use clap::CommandFactory;

    fn translated(line: &str) -> Result<String, String> {
        let root = {
            let mut c = Gclab::command();
            c.build();
            c
        };
        translate(line.split(' ').map(OsString::from), &root).map(|t| {
            t.args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    fn norm(line: &str) -> String {
        translated(line).unwrap()
    }

    #[test]
    fn the_2013_walkthrough_runs_as_typed() {
        assert_eq!(norm("bin/dbserver"), "gclab dbserver");
        assert_eq!(norm("./frontend -port 8001"), "gclab frontend --port=8001");
        assert_eq!(
            norm("./cli -set -key foo -value bar"),
            "gclab cli set --key=foo --value=bar"
        );
        assert_eq!(norm("./cli -get -key foo"), "gclab cli get --key=foo");
        assert_eq!(
            norm("./cli -port 9002 -cget -key foo"),
            "gclab cli cget --port=9002 --key=foo"
        );
    }

    #[test]
    fn gclab_takes_go_style_flags_too() {
        assert_eq!(
            norm("gclab cli -port 9002 -cget -key foo"),
            "gclab cli cget --port=9002 --key=foo"
        );
        assert_eq!(
            norm("gclab cli cget -key=foo -json"),
            "gclab cli cget --key=foo --json"
        );
        assert_eq!(
            norm("gclab cli cget --key foo --port 9002"),
            "gclab cli cget --key=foo --port=9002"
        );
    }

    #[test]
    fn a_value_is_the_next_word_unless_it_is_a_flag() {
        assert_eq!(
            norm("gclab cli -cget -key -foo"),
            "gclab cli cget --key=-foo"
        );
        assert_eq!(
            norm("gclab cli -set -key k -value -x"),
            "gclab cli set --key=k --value=-x"
        );
        assert_eq!(
            translated("gclab cli -port -cget -key foo"),
            Err("-port needs a value".to_owned())
        );
        assert_eq!(
            translated("gclab cli -set -key -value v"),
            Err("-key needs a value".to_owned())
        );
    }

    #[test]
    fn unknown_words_reach_clap_whole() {
        assert_eq!(norm("gclab cli cget -k foo"), "gclab cli cget -k foo");
        assert_eq!(norm("gclab dbserver -nope"), "gclab dbserver --nope");
        assert_eq!(norm("gclab cli -cget -kye foo"), "gclab cli cget --kye foo");
        // A misspelt action goes on as a bare word, which clap matches to `cget`.
        assert_eq!(norm("gclab cli -cgt -key foo"), "gclab cli cgt -key foo");
    }

    #[test]
    fn flags_without_an_action_are_told_the_actions() {
        let error = translated("gclab cli -key foo").unwrap_err();
        assert!(error.contains("needs a command first"), "{error}");
        assert!(error.contains("-set, -get, -cget"), "{error}");
        assert_eq!(norm("gclab cli -help"), "gclab cli --help");
    }

    #[test]
    fn clap_errors_are_told_back_as_typed() {
        let root = Gclab::command();
        let t = translate(
            "gclab cli -cget -kye foo".split(' ').map(OsString::from),
            &root,
        )
        .unwrap();
        let told = t.explain(&Gclab::try_parse_from(&t.args).unwrap_err());
        assert!(told.contains("'-kye'"), "{told}");
        assert!(told.contains("'-key'"), "{told}");
        assert!(!told.contains("--kye"), "{told}");
    }

    #[test]
    fn the_translated_walkthrough_parses() {
        let root = Gclab::command();
        let t = translate(
            "./cli -port 9002 -cget -key foo"
                .split(' ')
                .map(OsString::from),
            &root,
        )
        .unwrap();
        match Gclab::try_parse_from(&t.args).unwrap().command {
            Command::Cli(CliArgs {
                command: CliCommand::Cget { key, port, .. },
                ..
            }) => assert_eq!((key.as_str(), port), ("foo", 9002)),
            other => panic!("parsed as {other:?}"),
        }
    }
}
