//! The README's demo examples, run against the demo: each `$ dig … +short NAME [TYPE]` line
//! is asked of the demo's data served in-process, and must print the lines the README shows
//! (in any order; in that order when the comment says which comes `first`, as AZ affinity
//! orders them; a weighted answer, drawn per query, is checked to be one of its values). An
//! example may bind the client's address first (`-b 127.0.0.2`), as a client in another AZ.

use std::collections::BTreeSet;

use crate::{harness::dig, operate::demo_server};

/// `(dig arguments after the server, expected lines, comment)` for each `+short` example.
fn examples(readme: &str) -> Vec<(Vec<String>, Vec<String>, String)> {
    let demo = readme.split("## The demo").nth(1).and_then(|s| s.split("```").nth(1)).expect("the README's demo block");
    let mut out: Vec<(Vec<String>, Vec<String>, String)> = Vec::new();
    for line in demo.lines() {
        let (text, comment) = line.split_once(" # ").map_or((line, ""), |(t, c)| (t, c.trim()));
        if let Some(command) = text.trim().strip_prefix("$ ") {
            let args: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
            // Only `dig @127.0.0.1 -p 5353 [-b ADDR] +short …`; piped examples are read by eye.
            let from = if args.get(4).map(String::as_str) == Some("-b") { 6 } else { 4 };
            let short = args.len() > from && args[..4] == ["dig", "@127.0.0.1", "-p", "5353"] && args[from] == "+short" && !command.contains('|');
            out.push((if short { args[4..].to_vec() } else { Vec::new() }, Vec::new(), comment.to_owned()));
        } else if let Some(last) = out.last_mut() {
            let value = text.trim();
            if !value.is_empty() {
                last.1.push(value.to_owned());
                if !comment.is_empty() {
                    last.2.push_str(comment);
                }
            }
        }
    }
    out.retain(|(args, _, _)| !args.is_empty());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_demo_examples_answer_as_shown() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let examples = examples(&readme);
    assert!(examples.len() >= 10, "the README's demo examples were found: {}", examples.len());
    let (hub, _replay, _admin) = demo_server("").await;
    let (ip, port) = (hub.addr.ip().to_string(), hub.addr.port().to_string());
    for (args, expected, comment) in examples {
        let mut command: Vec<&str> = vec![];
        let at = format!("@{ip}");
        command.extend([at.as_str(), "-p", port.as_str()]);
        command.extend(args.iter().map(String::as_str));
        let printed = tokio::task::spawn_blocking({
            let command: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
            move || dig(&command.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .expect("join");
        let got: BTreeSet<String> = printed.lines().map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect();
        let want: BTreeSet<String> = expected.iter().cloned().collect();
        if comment.contains("weighted") {
            assert!(got.len() == 1 && got.iter().all(|g| g.starts_with("10.20.1.")), "{args:?}: {got:?}");
        } else if comment.contains("first") {
            let in_order: Vec<String> = printed.lines().map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect();
            assert_eq!(in_order, expected, "the README's `dig {}` ({comment}), in order", args.join(" "));
        } else {
            assert_eq!(got, want, "the README's `dig {}` ({comment})", args.join(" "));
        }
    }
    hub.server.stop().await;
}
