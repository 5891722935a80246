//! `polygrad train` end to end: the CSV, the plot, a checkpoint and its resumption, and bad
//! flags and data refused by name.

mod common;

use std::path::Path;
use std::process::Command;

/// An MQAR task small enough for a few steps in a test.
const TINY_MQAR: [&str; 8] = [
    "--task",
    "mqar",
    "--pairs",
    "2",
    "--vocab",
    "8",
    "--seq-len",
    "8",
];

/// Runs `polygrad train` with a tiny model and `extra`; returns (success, stderr).
fn train(extra: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_polygrad"))
        .env("POLYGRAD_TUNE", "off")
        .arg("train")
        .args([
            "--layers",
            "1",
            "--width",
            "16",
            "--heads",
            "2",
            "--head-dim",
            "4",
            "--mlp",
            "32",
        ])
        .args(["--batch", "2", "--seed", "5"])
        .args(extra)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("step,loss,accuracy,tokens_per_s,elapsed_s,device_bytes")
    );
    lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn train_writes_the_csv_and_the_plot_and_resumes_from_a_checkpoint() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (csv, plot, ck) = (
        dir.path().join("run.csv"),
        dir.path().join("run.svg"),
        dir.path().join("ck"),
    );
    let (ok, err) = train(
        &[
            &TINY_MQAR[..],
            &[
                "--steps",
                "4",
                "--csv",
                csv.to_str().unwrap(),
                "--plot",
                plot.to_str().unwrap(),
                "--checkpoint",
                ck.to_str().unwrap(),
                "--checkpoint-every",
                "2",
            ],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    let rows = csv_rows(&csv);
    assert_eq!(rows.len(), 4);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], (i + 1).to_string());
        let loss: f64 = row[1].parse().unwrap();
        let accuracy: f64 = row[2].parse().unwrap();
        assert!(
            loss.is_finite() && loss > 0.0 && (0.0..=1.0).contains(&accuracy),
            "{row:?}"
        );
        assert!(row[5].parse::<u64>().unwrap() > 0);
    }
    assert!(std::fs::read_to_string(&plot).unwrap().contains("<svg"));
    assert!(ck.join("checkpoint.safetensors").exists());

    // Resumed to 6 steps: rows 5 and 6 appended, and the same as a straight run of 6.
    let (ok, err) = train(
        &[
            &TINY_MQAR[..],
            &[
                "--steps",
                "6",
                "--csv",
                csv.to_str().unwrap(),
                "--checkpoint",
                ck.to_str().unwrap(),
                "--resume",
            ],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    assert!(err.contains("resuming from step 4"), "{err}");
    let resumed = csv_rows(&csv);
    let straight_csv = dir.path().join("straight.csv");
    let (ok, err) = train(
        &[
            &TINY_MQAR[..],
            &["--steps", "6", "--csv", straight_csv.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    let straight = csv_rows(&straight_csv);
    assert_eq!(resumed.len(), 6);
    for step in 0..6 {
        assert_eq!(
            resumed[step][1],
            straight[step][1],
            "loss at step {}",
            step + 1
        );
    }
}

#[test]
fn train_on_the_bytes_of_a_text() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("text.txt");
    std::fs::write(
        &data,
        "the quick brown fox jumps over the lazy dog. ".repeat(4),
    )
    .unwrap();
    let csv = dir.path().join("text.csv");
    let (ok, err) = train(&[
        "--task",
        "text",
        "--data",
        data.to_str().unwrap(),
        "--seq-len",
        "12",
        "--steps",
        "2",
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(csv_rows(&csv).len(), 2);
}

#[test]
fn train_with_automatic_attention_names_each_layers_choice() {
    if common::gpu().is_none() {
        return;
    }
    let (ok, err) = train(
        &[
            &TINY_MQAR[..],
            &["--steps", "2", "--attention", "auto", "--tolerance", "0.01"],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("automatic attention at the last step: poly g=2"),
        "{err}"
    );
}

#[test]
fn train_refuses_bad_flags_and_data_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "abc").unwrap();
    let missing = dir.path().join("missing.txt");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--steps", "0"], "--steps"),
        (vec!["--batch", "0", "--steps", "1"], "--batch"),
        (vec!["--lr=-1", "--steps", "1"], "lr"),
        (vec!["--pairs", "9", "--vocab", "16"], "--vocab"),
        (
            vec!["--pairs", "4", "--vocab", "16", "--seq-len", "8"],
            "--seq-len",
        ),
        (vec!["--task", "text"], "--data"),
        (
            vec![
                "--task",
                "text",
                "--data",
                short.to_str().unwrap(),
                "--seq-len",
                "8",
            ],
            "--data",
        ),
        (
            vec!["--task", "text", "--data", missing.to_str().unwrap()],
            "missing.txt",
        ),
        (vec!["--resume"], "--checkpoint"),
        (vec!["--plot", "curves.jpg"], "svg or .png"),
        (vec!["--clip", "nan"], "--clip"),
        (vec!["--attention", "auto", "--tolerance", "0"], "tolerance"),
    ];
    for (args, expected) in cases {
        let (ok, err) = train(&args);
        assert!(!ok, "{args:?} was accepted");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}
