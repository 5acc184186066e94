//! The `git` tool's rules: which subcommands, which options. It runs git with no shell between
//! and inside the sandbox (no network), and must never become a way to run another program or
//! to reach outside the repository: no global option (the subcommand comes first), no option
//! that names a program, a config, another repository or a file outside, and settings that
//! would start a program (a pager, an editor, hooks, an external diff) forced off.

/// The subcommands an agent may run.
pub const SUBCOMMANDS: [&str; 10] =
    ["status", "diff", "log", "show", "add", "commit", "checkout", "reset", "branch", "rev-parse"];

/// Options refused wherever they appear, as `--opt`, `--opt=value` or (for short ones) `-oVALUE`:
/// each runs a program, reads or writes outside the repository, or changes git's own settings.
const REFUSED: [&str; 19] = [
    "-c",
    "-C",
    "--config",
    "--config-env",
    "--exec",
    "--exec-path",
    "--upload-pack",
    "--receive-pack",
    "--ext-diff",
    "--textconv",
    "--output",
    "--git-dir",
    "--work-tree",
    "--namespace",
    "--super-prefix",
    "--template",
    "--no-index",
    "--pathspec-from-file",
    "--open-files-in-pager",
];

/// Settings given to every git the tool runs (`-c` outranks every config file): what would
/// start a program is off, whatever the repository's own config says. (An external diff
/// cannot be set off this way, an empty `diff.external` being a program to run: the commands
/// that diff get `--no-ext-diff` instead, see [`DIFFING`].)
pub const FORCED: [&str; 14] = [
    "core.pager=cat",
    "core.editor=true",
    "sequence.editor=true",
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.sshCommand=false",
    "credential.helper=",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "gpg.program=false",
    "gpg.ssh.program=false",
    "gpg.x509.program=false",
    "protocol.allow=never",
    "color.ui=false",
];

/// Why `args` may not run, naming the argument; `None` when they may.
pub fn refusal(args: &[String]) -> Option<String> {
    let Some(subcommand) = args.first() else {
        return Some(format!("`params.args` is empty: start it with a subcommand ({})", SUBCOMMANDS.join(", ")));
    };
    if !SUBCOMMANDS.contains(&subcommand.as_str()) {
        return Some(format!(
            "`params.args[0]`: {subcommand:?} is not a subcommand the git tool runs; it runs {} (no option may come before the subcommand)",
            SUBCOMMANDS.join(", ")
        ));
    }
    for (at, arg) in args.iter().enumerate() {
        if arg.contains('\0') {
            return Some(format!("`params.args[{at}]` holds a NUL byte"));
        }
        if arg == "--" {
            // What follows is paths: git reads them as paths whatever they look like.
            break;
        }
        if let Some(option) = REFUSED.iter().find(|option| names(arg, option)) {
            return Some(format!(
                "`params.args[{at}]`: {option} is refused by the git tool (it runs a program, reaches outside the repository or changes git's settings)"
            ));
        }
    }
    None
}

/// Whole options that are also the start of a refused one (`--text` of `--textconv`): git reads
/// them as themselves, never as an abbreviation.
const WHOLE: [&str; 1] = ["--text"];

/// Does `arg` give `option`: alone, with `=value`, abbreviated as git's option parser accepts
/// (`--templ=…` for `--template`), or a short option with its value attached?
fn names(arg: &str, option: &str) -> bool {
    if arg == option {
        return true;
    }
    match option.strip_prefix("--") {
        Some(_) => {
            let given = arg.split_once('=').map_or(arg, |(name, _)| name);
            given.len() > 3 && given.starts_with("--") && option.starts_with(given) && !WHOLE.contains(&given)
        }
        None => option.len() == 2 && arg.starts_with(option) && !arg.starts_with("--"),
    }
}

/// Settings for speed: the untracked cache keeps the directories' mtimes in the index, so a
/// `status` of a 1,000-file tree lists no unchanged directory again (9 ms → 4 ms; `/workspace`
/// is a tmpfs, whose directory mtimes are reliable).
const TUNED: [&str; 1] = ["core.untrackedCache=true"];

/// Subcommands that show diffs: run with no external diff program and no text conversion.
const DIFFING: [&str; 3] = ["diff", "log", "show"];

/// The argv the tool runs for `args` (checked by [`refusal`]).
pub fn argv(args: &[String]) -> Vec<String> {
    let mut argv = vec!["git".to_owned(), "--no-pager".to_owned()];
    for &setting in FORCED.iter().chain(&TUNED) {
        argv.push("-c".to_owned());
        argv.push(setting.to_owned());
    }
    let mut args = args.iter().cloned();
    if let Some(subcommand) = args.next() {
        let diffing = DIFFING.contains(&subcommand.as_str());
        argv.push(subcommand);
        if diffing {
            argv.extend(["--no-ext-diff".to_owned(), "--no-textconv".to_owned()]);
        }
    }
    argv.extend(args);
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_allowed_subcommands_run_with_their_ordinary_options() {
        for ok in [
            &["status", "--short"][..],
            &["diff", "--stat", "HEAD~1"],
            &["log", "--oneline", "-n", "5"],
            &["commit", "-m", "fix: the -c flag in a message is text"],
            &["checkout", "-b", "topic"],
            &["reset", "--hard", "HEAD"],
            &["show", "HEAD:src/main.rs"],
            &["add", "--", "-c", "--exec=x"],
            &["diff", "--text"],
            &["diff", "--exit-code"],
            &["log", "--name-only"],
        ] {
            assert_eq!(refusal(&args(ok)), None, "{ok:?}");
        }
    }

    #[test]
    fn options_that_run_programs_or_reach_outside_are_refused_wherever_they_are() {
        for (bad, named) in [
            (&["-c", "core.pager=sh", "log"][..], "args[0]"),
            (&["--exec-path=/tmp", "status"], "args[0]"),
            (&["log", "--ext-diff"], "--ext-diff"),
            (&["diff", "--output=/tmp/x"], "--output"),
            (&["diff", "--no-index", "/etc/passwd", "x"], "--no-index"),
            (&["status", "-C", "/"], "-C"),
            (&["status", "-C/"], "-C"),
            (&["commit", "--template=/etc/passwd"], "--template"),
            (&["show", "--textconv"], "--textconv"),
            (&["log", "--git-dir=/tmp/other"], "--git-dir"),
            (&["commit", "--templ=/etc/passwd"], "--template"),
            (&["add", "--pathspec-from=/x"], "--pathspec-from-file"),
            (&["diff", "--ext"], "--ext-diff"),
        ] {
            let why = refusal(&args(bad)).unwrap_or_else(|| panic!("{bad:?} passed"));
            assert!(why.contains(named), "{bad:?}: {why}");
        }
    }

    #[test]
    fn only_the_listed_subcommands_run() {
        for bad in
            [&["push"][..], &["fetch", "--upload-pack=sh"], &["clone", "x"], &["config", "core.pager", "sh"], &[]]
        {
            assert!(refusal(&args(bad)).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn every_git_run_forces_off_what_would_start_a_program() {
        let argv = argv(&args(&["log", "-n1"]));
        assert_eq!(&argv[..2], ["git", "--no-pager"]);
        assert!(argv.windows(2).any(|w| w == ["-c", "core.hooksPath=/dev/null"]));
        assert_eq!(&argv[argv.len() - 4..], ["log", "--no-ext-diff", "--no-textconv", "-n1"]);
        let status = super::argv(&args(&["status"]));
        assert_eq!(status.last().map(String::as_str), Some("status"), "only diffing commands get the diff options");
    }
}
