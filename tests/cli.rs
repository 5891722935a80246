//! `polygrad grad` end to end: files in, files out, errors that name what is wrong.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use polygrad::io::{read_tensors, write_model, write_tensors};
use polygrad::model::Tensors;
use polygrad::validate::{random_model_input, small_model_config, with_logit_scales};
use polygrad::{Attention, GpuModel, HostTensor, Loss, Model};

struct Files {
    _dir: tempfile::TempDir,
    model: PathBuf,
    input: PathBuf,
    out: PathBuf,
}

fn files(model: &Model, input: &[(&str, &HostTensor)]) -> Files {
    let dir = tempfile::tempdir().unwrap();
    let (m, i, o) = (
        dir.path().join("model.safetensors"),
        dir.path().join("input.safetensors"),
        dir.path().join("grads.safetensors"),
    );
    write_model(&m, model).unwrap();
    let tensors: Tensors = input
        .iter()
        .map(|(n, t)| (n.to_string(), (*t).clone()))
        .collect();
    write_tensors(&i, &tensors, HashMap::new()).unwrap();
    Files {
        _dir: dir,
        model: m,
        input: i,
        out: o,
    }
}

/// Runs `polygrad grad` on the files with extra arguments; returns (success, stderr).
fn grad(f: &Files, extra: &[&str]) -> (bool, String) {
    grad_to(f, &f.out, extra)
}

/// [`grad`] writing to `out` instead of the files' output.
fn grad_to(f: &Files, out: &Path, extra: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_polygrad"))
        // The same kernel variants as the library in this process (tests tune nothing), and
        // no tune cache written into the user's home.
        .env("POLYGRAD_TUNE", "off")
        .arg("grad")
        .args(["--model", f.model.to_str().unwrap()])
        .args(["--input", f.input.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_file_matches(path: &Path, expected: &polygrad::ModelGradients) {
    let (written, _) = read_tensors(path).unwrap();
    assert_eq!(written.len(), 2 + expected.grads.len());
    assert_eq!(written["y"], expected.y, "y");
    assert_eq!(written["grad.x"], expected.grad_x, "grad.x");
    for (name, g) in &expected.grads {
        assert_eq!(&written[&format!("grad.{name}")], g, "grad.{name}");
    }
}

#[test]
fn grad_writes_what_the_library_computes() {
    let Some(ctx) = common::gpu() else { return };
    let model = Model::random(
        small_model_config(2, 2, true, Attention::Poly { degree: 2 }),
        9,
    )
    .unwrap();
    let (x, dy) = random_model_input(model.config(), 2, 21, 10);
    let f = files(&model, &[("x", &x), ("dy", &dy)]);

    let (ok, err) = grad(&f, &[]);
    assert!(ok, "{err}");
    let expected = GpuModel::new(&ctx, &model)
        .unwrap()
        .gradients(&ctx, &x, &Loss::Vjp(dy.clone()))
        .unwrap();
    assert_file_matches(&f.out, &expected);

    // --attention and --degree override the config.
    let (ok, err) = grad(&f, &["--attention", "exact"]);
    assert!(ok, "{err}");
    let exact = model
        .with_config(model.config().with_attention(Attention::Exact))
        .unwrap();
    let expected = GpuModel::new(&ctx, &exact)
        .unwrap()
        .gradients(&ctx, &x, &Loss::Vjp(dy.clone()))
        .unwrap();
    assert_file_matches(&f.out, &expected);
    let (ok, err) = grad(&f, &["--degree", "4"]);
    assert!(ok, "{err}");
    let g4 = model
        .with_config(model.config().with_attention(Attention::Poly { degree: 4 }))
        .unwrap();
    let expected = GpuModel::new(&ctx, &g4)
        .unwrap()
        .gradients(&ctx, &x, &Loss::Vjp(dy))
        .unwrap();
    assert_file_matches(&f.out, &expected);
}

#[test]
fn grad_with_mse_records_the_loss() {
    let Some(ctx) = common::gpu() else { return };
    let model = Model::random(small_model_config(1, 2, false, Attention::Exact), 11).unwrap();
    let (x, target) = random_model_input(model.config(), 1, 9, 12);
    let f = files(&model, &[("x", &x), ("target", &target)]);
    let (ok, err) = grad(&f, &["--loss", "mse"]);
    assert!(ok, "{err}");
    let expected = GpuModel::new(&ctx, &model)
        .unwrap()
        .gradients(&ctx, &x, &Loss::Mse(target))
        .unwrap();
    assert_file_matches(&f.out, &expected);
    let (_, metadata) = read_tensors(&f.out).unwrap();
    let loss: f64 = metadata["loss"].parse().unwrap();
    assert_eq!(loss, expected.loss.unwrap());
}

#[test]
fn grad_refuses_bad_input_and_leaves_the_output_alone() {
    let Some(_ctx) = common::gpu() else { return };
    let model = Model::random(
        small_model_config(1, 2, true, Attention::Poly { degree: 2 }),
        13,
    )
    .unwrap();
    let (x, dy) = random_model_input(model.config(), 1, 5, 14);
    let check = |f: &Files, extra: &[&str], names: &[&str]| {
        std::fs::write(&f.out, b"previous").unwrap();
        let (ok, err) = grad(f, extra);
        assert!(!ok, "accepted: {extra:?}");
        for n in names {
            assert!(err.contains(n), "{extra:?}: {err:?} does not name {n}");
        }
        assert_eq!(
            std::fs::read(&f.out).unwrap(),
            b"previous",
            "output touched"
        );
        let entries = std::fs::read_dir(f.out.parent().unwrap()).unwrap().count();
        assert_eq!(entries, 3, "a temporary file was left behind");
    };
    let f = files(&model, &[("x", &x)]);
    check(&f, &[], &["dy", "missing"]);
    check(&f, &["--loss", "mse"], &["target"]);
    let f = files(&model, &[("x", &x), ("dy", &dy)]);
    check(&f, &["--degree", "3"], &["degree"]);
    check(
        &f,
        &["--adapter", "no-such-adapter-anywhere"],
        &["no-such-adapter-anywhere"],
    );
    let wide = random_model_input(
        &polygrad::ModelConfig {
            d_model: 12,
            ..model.config().clone()
        },
        1,
        5,
        15,
    )
    .0;
    let f = files(&model, &[("x", &wide), ("dy", &wide)]);
    check(&f, &[], &["x", "d_model = 16"]);
    let mut nan = x.clone();
    nan.data[3] = f32::NAN;
    let f = files(&model, &[("x", &nan), ("dy", &dy)]);
    check(&f, &[], &["x", "non-finite"]);
    let f = files(&model, &[("x", &x), ("dy", &dy)]);
    std::fs::write(&f.model, b"truncated").unwrap();
    check(&f, &[], &["model.safetensors"]);
}

/// `polygrad bench ARGS --csv CSV` untuned, which must succeed; its stdout.
fn bench_ok(args: &[&str], csv: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_polygrad"))
        .env("POLYGRAD_TUNE", "off")
        .arg("bench")
        .args(args)
        .args(["--csv", csv.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn bench_times_the_matmul_core_and_writes_csv() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bench.csv");
    let args = [
        "--what", "matmul", "--m", "32", "--cols", "16,20", "--k", "8",
    ];
    let stdout = bench_ok(&[&args[..], &["--reps", "1"]].concat(), &csv);
    assert!(stdout.contains("GFLOP/s"), "{stdout}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("what,attention,degree,n,batch,heads,d_qk,d_v,layers,causal,m,k,variant,forward_ms,backward_ms,total_ms,total_min_ms,total_max_ms,memory_bytes,gflops,timer")
    );
    let rows: Vec<&str> = lines.collect();
    assert!(!rows.is_empty());
    for row in rows {
        let fields: Vec<&str> = row.split(',').collect();
        assert_eq!(fields.len(), 21, "{row}");
        assert_eq!(fields[0], "matmul");
        assert!(fields[15].parse::<f64>().unwrap() > 0.0, "{row}");
    }
}

/// `--variant` with a list times exactly those variants, interleaved, each with its speed
/// relative to the first (the first's is 1 by definition); no tuner's choice is printed for
/// named variants, and a name that is no variant is refused by name.
#[test]
fn bench_times_named_variants_interleaved() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bench.csv");
    let args = ["--what", "matmul", "--m", "40", "--cols", "24", "--k", "16"];
    let named = ["--variant", "registers-8x8,registers-4x4", "--reps", "3"];
    let stdout = bench_ok(&[&args[..], &named].concat(), &csv);
    assert!(stdout.contains("the variants interleaved"), "{stdout}");
    assert!(stdout.contains("x first"), "{stdout}");
    let timed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("registers-"))
        .collect();
    assert_eq!(timed.len(), 2, "{stdout}");
    assert!(timed[0].contains("registers-8x8"), "{stdout}");
    assert!(timed[0].trim_end().ends_with("1.000"), "{stdout}");
    assert!(timed[1].contains("registers-4x4"), "{stdout}");
    assert!(!stdout.contains("tuner's choice"), "{stdout}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let variants: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|row| row.split(',').nth(12).unwrap())
        .collect();
    assert_eq!(variants, ["registers-8x8", "registers-4x4"]);

    let refused = Command::new(env!("CARGO_BIN_EXE_polygrad"))
        .env("POLYGRAD_TUNE", "off")
        .args([
            "bench",
            "--what",
            "matmul",
            "--variant",
            "registers-4x4,nope",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("no matmul variant is named nope"),
        "{stderr}"
    );
}

/// `--layout tn` times C = A^T B (a weight gradient's layout) over two K spans, every variant
/// the adapter offers; with timestamps, `--profile` lists each one's kernels (packing included).
#[test]
fn bench_times_a_weight_gradient_layout_with_its_profile() {
    let Some(ctx) = common::gpu() else { return };
    let timestamps = ctx.adapter().timestamp_queries;
    drop(ctx);
    let mut command = Command::new(env!("CARGO_BIN_EXE_polygrad"));
    command.env("POLYGRAD_TUNE", "off").args([
        "bench", "--what", "matmul", "--layout", "tn", "--m", "24", "--cols", "40", "--k", "2056",
        "--reps", "1",
    ]);
    if timestamps {
        command.arg("--profile");
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("C [M, N] = A^T B"), "{stdout}");
    assert!(stdout.contains("tuner's choice for matmul TN"), "{stdout}");
    if timestamps {
        assert!(stdout.contains("all kernels"), "{stdout}");
        // Two K spans: every variant's kernel runs twice.
        assert!(
            stdout
                .lines()
                .any(|l| l.contains("matmul_reg registers-4x4") && l.contains("     2 ")),
            "{stdout}"
        );
    }
}

/// `--batch` and `--layout tt`: products of polynomial attention's chunk shapes, timed as one
/// dispatch over the batch (5: more than a "batched" shape class needs) and written to the
/// CSV's batch column; a batch of 0 is refused.
#[test]
fn bench_times_batched_products() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bench.csv");
    let args = ["--what", "matmul", "--layout", "tt", "--batch", "5"];
    let sizes = ["--m", "20", "--cols", "12", "--k", "8", "--reps", "1"];
    let stdout = bench_ok(&[&args[..], &sizes].concat(), &csv);
    assert!(stdout.contains("C [M, N] = A^T B^T"), "{stdout}");
    assert!(stdout.contains("5 products a dispatch"), "{stdout}");
    assert!(stdout.contains("tuner's choice for matmul TT"), "{stdout}");
    assert!(stdout.contains("batched"), "{stdout}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert!(!rows.is_empty());
    for row in rows {
        assert_eq!(row.split(',').nth(4), Some("5"), "{row}");
    }
    let refused = Command::new(env!("CARGO_BIN_EXE_polygrad"))
        .args(["bench", "--what", "matmul", "--batch", "0"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--batch"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[test]
fn bench_refuses_zero_reps_and_a_nan_bound() {
    // And a sampled check where no model runs (attention alone, by default).
    for args in [
        ["--reps", "0"],
        ["--max-slope", "NaN"],
        ["--sample-rows", "32"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_polygrad"))
            .arg("bench")
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(args[0]), "{args:?}: {stderr}");
    }
}

/// An attention sweep with every output the bench offers: the CSV (with the memory column),
/// the per-kernel profile, and the plot as SVG and as PNG.
#[test]
fn bench_writes_csv_profile_and_plots() {
    let Some(ctx) = common::gpu() else { return };
    let timestamps = ctx.adapter().timestamp_queries;
    drop(ctx);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("sweep.csv");
    for plot in ["sweep.svg", "sweep.png"] {
        let plot = dir.path().join(plot);
        let mut command = Command::new(env!("CARGO_BIN_EXE_polygrad"));
        command
            .env("POLYGRAD_TUNE", "off")
            .args([
                "bench",
                "--attention",
                "poly",
                "--n",
                "16,40",
                "--reps",
                "1",
            ])
            // At such small n, fixed costs dominate and the slope is noise: no gate here.
            .args(["--max-slope", "100"])
            .args([
                "--csv",
                csv.to_str().unwrap(),
                "--plot",
                plot.to_str().unwrap(),
            ]);
        if timestamps {
            command.arg("--profile");
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stdout}{stderr}");
        assert!(
            stdout.contains("slope of log time against log n"),
            "{stdout}"
        );
        if timestamps {
            assert!(stdout.contains("GPU time per kernel"), "{stdout}");
            assert!(stdout.contains("matmul"), "{stdout}");
            // phi at degree 2 and d_qk = 16: a kernel generated for that d_qk (in the shader
            // with 64-bit stores where the adapter has them).
            let generated = [
                "poly_attention_unrolled.wgsl",
                "poly_attention_unrolled_int64.wgsl",
            ];
            assert!(
                generated
                    .iter()
                    .any(|shader| stdout.contains(&format!("{shader}::phi_pairs_unrolled"))),
                "{stdout}"
            );
        }
        let bytes = std::fs::read(&plot).unwrap();
        if plot.extension().unwrap() == "svg" {
            let text = String::from_utf8(bytes).unwrap();
            assert!(
                text.starts_with("<svg") && text.contains("poly g=2"),
                "{text}"
            );
        } else {
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        }
        let text = std::fs::read_to_string(&csv).unwrap();
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect())
            .collect();
        assert_eq!(rows.len(), 2, "{text}");
        for row in rows {
            assert_eq!((row[0], row[1]), ("attention", "poly"), "{row:?}");
            assert!(row[18].parse::<u64>().unwrap() > 0, "memory_bytes: {row:?}");
        }
    }
}

#[test]
fn bench_refuses_a_plot_it_cannot_draw() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("sweep.jpg");
    let output = Command::new(env!("CARGO_BIN_EXE_polygrad"))
        .env("POLYGRAD_TUNE", "off")
        .args(["bench", "--attention", "poly", "--n", "16", "--reps", "1"])
        .args(["--plot", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("sweep.jpg") && stderr.contains(".svg or .png"),
        "{stderr}"
    );
    assert!(!bad.exists());
    // Refused before anything was timed.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("adapter:"), "{stdout}");
    let output = Command::new(env!("CARGO_BIN_EXE_polygrad"))
        .args(["bench", "--what", "matmul", "--plot", "x.svg"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--plot"), "{stderr}");
}

/// A model and input on disk, for tests that need no GPU: everything they check happens before
/// one is opened.
fn small_files() -> Files {
    let model = Model::random(small_model_config(1, 2, true, Attention::Exact), 21).unwrap();
    let (x, dy) = random_model_input(model.config(), 1, 4, 22);
    files(&model, &[("x", &x), ("dy", &dy)])
}

#[test]
fn grad_refuses_an_output_that_is_one_of_its_inputs() {
    let f = small_files();
    let before = std::fs::read(&f.model).unwrap();
    let run = |out: &Path| grad_to(&f, out, &[]);
    // The model itself, then a link to the input.
    let (ok, err) = run(&f.model);
    assert!(!ok && err.contains("same file"), "{err}");
    assert_eq!(
        std::fs::read(&f.model).unwrap(),
        before,
        "the model was touched"
    );
    #[cfg(unix)]
    {
        let link = f.out.with_file_name("link.safetensors");
        std::os::unix::fs::symlink(&f.input, &link).unwrap();
        let input_before = std::fs::read(&f.input).unwrap();
        let (ok, err) = run(&link);
        assert!(!ok && err.contains("same file"), "{err}");
        assert_eq!(std::fs::read(&f.input).unwrap(), input_before);
    }
}

#[test]
fn grad_refuses_an_output_that_is_not_a_regular_file_or_cannot_be_written() {
    let f = small_files();
    let dir = f.out.with_file_name("a-directory");
    std::fs::create_dir(&dir).unwrap();
    let (ok, err) = grad_to(&f, &dir, &[]);
    assert!(!ok && err.contains("a directory"), "{err}");
    assert!(dir.is_dir());
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let fifo = f.out.with_file_name("a-fifo");
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success(), "mkfifo failed");
        let (ok, err) = grad_to(&f, &fifo, &[]);
        assert!(!ok && err.contains("FIFO"), "{err}");
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    }
    let missing = f
        .out
        .with_file_name("no-such-dir")
        .join("grads.safetensors");
    let (ok, err) = grad_to(&f, &missing, &[]);
    assert!(!ok && err.contains("cannot be written"), "{err}");
    // Nothing was left beside the files: model, input, the directory and (unix) the FIFO.
    let entries = std::fs::read_dir(f.out.parent().unwrap()).unwrap().count();
    assert_eq!(entries, if cfg!(unix) { 4 } else { 3 });
}

#[test]
fn grad_refuses_a_config_of_absurd_size_before_sizing_anything() {
    let f = small_files();
    let (tensors, mut metadata) = read_tensors(&f.model).unwrap();
    let config = metadata["config"].replace("\"n_layers\":1", "\"n_layers\":1000000000000000");
    assert_ne!(config, metadata["config"], "the config was not edited");
    metadata.insert("config".into(), config);
    write_tensors(&f.model, &tensors, metadata).unwrap();
    let started = std::time::Instant::now();
    let (ok, err) = grad(&f, &[]);
    eprintln!("refused in {:.2} s: {err}", started.elapsed().as_secs_f64());
    assert!(!ok && err.contains("n_layers"), "{err}");
    #[cfg(unix)]
    {
        let rss = largest_child_rss();
        assert!(rss < 2 << 30, "a polygrad process grew to {rss} bytes");
    }
}

#[test]
fn an_unknown_backend_is_named_not_reported_as_a_missing_driver() {
    for command in ["devices", "validate"] {
        let output = Command::new(env!("CARGO_BIN_EXE_polygrad"))
            .env("WGPU_BACKEND", "vulkn")
            .arg(command)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {err}");
        assert!(
            err.contains("WGPU_BACKEND") && err.contains("vulkn"),
            "{command}: {err}"
        );
        assert!(!err.contains("mesa-vulkan-drivers"), "{command}: {err}");
    }
}

#[cfg(unix)]
#[test]
fn sigterm_while_writing_leaves_no_temporary_file() {
    let Some(_ctx) = common::gpu() else { return };
    let f = small_files();
    for signal in ["TERM", "INT"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_polygrad"))
            .env("POLYGRAD_TUNE", "off")
            // Holds the written temporary file for 60 s before the rename.
            .env("POLYGRAD_TEST_HOLD_PARTIAL_MS", "60000")
            .arg("grad")
            .args(["--model", f.model.to_str().unwrap()])
            .args(["--input", f.input.to_str().unwrap()])
            .args(["--out", f.out.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let dir = f.out.parent().unwrap();
        let partial = || {
            std::fs::read_dir(dir).unwrap().any(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".partial")
            })
        };
        let start = std::time::Instant::now();
        while !partial() {
            assert!(
                start.elapsed().as_secs() < 120 && child.try_wait().unwrap().is_none(),
                "no temporary file appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let killed = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        assert!(!status.success(), "SIG{signal}: the run finished anyway");
        assert!(!partial(), "SIG{signal} left the temporary file");
        assert!(!f.out.exists(), "SIG{signal}: an output was written");
    }
}

#[cfg(unix)]
#[test]
fn inputs_that_are_not_regular_files_are_refused_before_reading() {
    let f = small_files();
    for (flag, other) in [("--input", &f.model), ("--model", &f.input)] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_polygrad"));
        command.env("POLYGRAD_TUNE", "off").arg("grad");
        if flag == "--input" {
            command.args(["--model", other.to_str().unwrap(), "--input", "/dev/zero"]);
        } else {
            command.args(["--model", "/dev/zero", "--input", other.to_str().unwrap()]);
        }
        let output = command
            .args(["--out", f.out.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag} /dev/zero: {err}");
        assert!(err.contains("a character device"), "{flag}: {err}");
    }
    // A header length past the end of the file.
    let mut bytes = std::fs::read(&f.input).unwrap();
    bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&f.input, &bytes).unwrap();
    let (ok, err) = grad(&f, &[]);
    assert!(!ok && err.contains("header claims"), "{err}");
}

#[test]
fn a_nonfinite_result_exits_3_and_writes_nothing_unless_allowed() {
    let Some(_ctx) = common::gpu() else { return };
    let model = Model::random(small_model_config(1, 2, true, Attention::Exact), 23).unwrap();
    let (x, dy) = random_model_input(model.config(), 1, 4, 24);
    // dy near f32's largest: the gradients overflow.
    let mut huge = dy.clone();
    huge.data.iter_mut().for_each(|v| *v *= 1e38);
    let f = files(&model, &[("x", &x), ("dy", &huge)]);
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_polygrad"))
            .env("POLYGRAD_TUNE", "off")
            .arg("grad")
            .args(["--model", f.model.to_str().unwrap()])
            .args(["--input", f.input.to_str().unwrap()])
            .args(["--out", f.out.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let output = run(&[]);
    let err = String::from_utf8_lossy(&output.stderr);
    eprintln!("{err}");
    assert_eq!(output.status.code(), Some(3), "{err}");
    assert!(err.contains("non-finite") && err.contains("grad."), "{err}");
    assert!(err.contains("forward pass is finite"), "{err}");
    assert!(err.contains("logit bound per layer: block 0: "), "{err}");
    assert!(!f.out.exists(), "an output was written");
    let output = run(&["--allow-nonfinite"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(f.out.exists());
}

#[test]
fn a_nonfinite_result_names_the_layer_it_started_in() {
    let Some(_ctx) = common::gpu() else { return };
    let model = Model::random(small_model_config(2, 2, true, Attention::Exact), 25).unwrap();
    let (x, dy) = random_model_input(model.config(), 1, 4, 26);
    // Block 1's fc1 weights near f32's largest: block 0 is finite, block 1's MLP overflows.
    let config = model.config().clone();
    let mut params = model.params().clone();
    let fc1 = params.get_mut("blocks.1.mlp.fc1.weight").unwrap();
    fc1.data.iter_mut().for_each(|v| *v *= 3e38);
    let model = Model::new(config, params).unwrap();
    let f = files(&model, &[("x", &x), ("dy", &dy)]);
    let (ok, err) = grad(&f, &[]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("the forward pass first overflows in blocks.1.mlp.fc1 output"),
        "{err}"
    );
    assert!(!f.out.exists());
}

/// The largest resident set of any child this test process has waited for, in bytes.
#[cfg(unix)]
fn largest_child_rss() -> u64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into the struct it is given.
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    // Linux reports kilobytes.
    usage.ru_maxrss as u64 * 1024
}

#[test]
fn grad_refuses_a_pass_larger_than_the_machine_before_allocating_it() {
    // Small files, a huge pass: 1024 layers keep two [32768, 1024] MLP activations each
    // (128 MiB apiece, within every per-buffer limit), about 260 GiB in all.
    let config = polygrad::ModelConfig {
        n_layers: 1024,
        d_model: 4,
        n_heads: 1,
        d_qk: 4,
        d_v: 4,
        d_ff: 1024,
        ..small_model_config(1, 1, true, Attention::Poly { degree: 2 })
    };
    let model = Model::random(config, 31).unwrap();
    let (x, dy) = random_model_input(model.config(), 1, 32768, 32);
    let f = files(&model, &[("x", &x), ("dy", &dy)]);
    let started = std::time::Instant::now();
    let (ok, err) = grad(&f, &[]);
    eprintln!("refused in {:.2} s: {err}", started.elapsed().as_secs_f64());
    assert!(!ok && err.contains("not enough memory"), "{err}");
    assert!(err.contains("GiB") && err.contains("available"), "{err}");
    assert!(!f.out.exists());
    #[cfg(unix)]
    {
        // The pass was refused, not begun: no child of this test binary grew past 2 GiB.
        let rss = largest_child_rss();
        assert!(rss < 2 << 30, "a polygrad process grew to {rss} bytes");
    }
}

#[test]
fn exact_attention_at_huge_n_warns_of_its_time_before_starting() {
    let Some(_ctx) = common::gpu() else { return };
    let config = polygrad::ModelConfig {
        d_model: 4,
        d_qk: 4,
        d_v: 4,
        d_ff: 8,
        ..small_model_config(1, 1, true, Attention::Exact)
    };
    let model = Model::random(config, 41).unwrap();
    let (x, dy) = random_model_input(model.config(), 1, 2_000_000, 42);
    let f = files(&model, &[("x", &x), ("dy", &dy)]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_polygrad"))
        .env("POLYGRAD_TUNE", "off")
        .arg("grad")
        .args(["--model", f.model.to_str().unwrap()])
        .args(["--input", f.input.to_str().unwrap()])
        .args(["--out", f.out.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut first);
        let _ = send.send(first);
    });
    // The warning comes before the pass; the pass itself (days on llvmpipe) is not waited
    // for, and a polygrad that says nothing is stopped rather than waited on.
    let first = receive.recv_timeout(std::time::Duration::from_secs(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let first = first.expect("no line on stderr within 300 s");
    eprintln!("{first}");
    assert!(
        first.starts_with("warning: exact attention is quadratic in n: at n = 2000000,"),
        "{first}"
    );
    assert!(
        first.contains("takes about") && first.contains("--attention poly"),
        "{first}"
    );
    assert!(!f.out.exists());
}

#[test]
fn grad_reports_each_layers_bound_and_warns_where_none_holds() {
    let Some(_ctx) = common::gpu() else { return };
    let model = Model::random(
        small_model_config(2, 2, true, Attention::Poly { degree: 2 }),
        61,
    )
    .unwrap();
    let (x, dy) = random_model_input(model.config(), 1, 20, 62);
    // q and k weights scaled: x 0.1 in block 0 (small logits, a bound holds), x 30 in block 1.
    let model = with_logit_scales(&model, &[0.1, 30.0]).unwrap();
    let f = files(&model, &[("x", &x), ("dy", &dy)]);
    let report = f.out.with_file_name("report.json");
    let (ok, err) = grad(&f, &["--report", report.to_str().unwrap()]);
    assert!(ok, "{err}");
    // The table on stderr: a row per layer, led by its number.
    let row = |i: usize| {
        err.lines()
            .find(|l| l.split_whitespace().next() == Some(&i.to_string()))
            .unwrap_or_else(|| panic!("no row for layer {i} in {err}"))
    };
    assert!(!row(0).contains("none"), "{err}");
    assert!(row(1).contains("none (eps >= 1)"), "{err}");
    // 20 rows, all of them sampled (the default is 32).
    assert!(
        row(0).contains("m=20: ") && row(1).contains("m=20: "),
        "{err}"
    );
    assert!(
        err.contains("warning: no bound holds for layer(s) 1 (eps >= 1)"),
        "{err}"
    );

    // The report says the same as data: layer 0 certified, layer 1 not, with eps the Taylor
    // remainder of its own logit bound, and that bound the one printed.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let layers = json["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{json}");
    for (i, layer) in layers.iter().enumerate() {
        assert_eq!(layer["layer"], i, "{json}");
        assert_eq!(layer["attention"], "poly", "{json}");
        assert_eq!(layer["degree"], 2, "{json}");
        let r = layer["logit_bound"].as_f64().unwrap();
        let printed = format!("{r:.3e}");
        assert!(row(i).contains(&printed), "{printed:?} not in {err}");
        let sampled = &layer["sampled"];
        assert_eq!(sampled["rows"], 20, "{json}");
        for what in ["o_rel_err", "dq_rel_err"] {
            let e = sampled[what].as_f64().unwrap_or(f64::NAN);
            assert!(e > 0.0 && e.is_finite(), "{what}: {json}");
        }
        let eps = polygrad::poly::taylor_relative_error_bound(r, 2);
        match layer["eps"].as_f64() {
            Some(e) => assert!((e - eps).abs() <= 1e-12 * eps, "{json}"),
            None => assert!(!eps.is_finite(), "{json}"),
        }
    }
    assert!(layers[0]["output_bound"]
        .as_f64()
        .is_some_and(|b| b > 0.0 && b < 1.0));
    assert!(layers[1]["output_bound"].is_null(), "{json}");
    let reason = layers[1]["reason"].as_str().unwrap();
    assert!(reason.starts_with("no bound"), "{reason}");
}

#[test]
fn grad_refuses_a_report_path_that_is_also_the_output() {
    let model = Model::random(
        small_model_config(1, 1, true, Attention::Poly { degree: 2 }),
        63,
    )
    .unwrap();
    let (x, dy) = random_model_input(model.config(), 1, 5, 64);
    let f = files(&model, &[("x", &x), ("dy", &dy)]);
    let (ok, err) = grad(&f, &["--report", f.out.to_str().unwrap()]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("--report") && err.contains("is also --out"),
        "{err}"
    );
    assert!(!f.out.exists(), "{err}");
}

#[test]
fn grad_compare_exact_reports_the_error_of_every_output_against_the_exact_pass() {
    let Some(_ctx) = common::gpu() else { return };
    let model = Model::random(
        small_model_config(2, 2, true, Attention::Poly { degree: 2 }),
        71,
    )
    .unwrap();
    let (x, dy) = random_model_input(model.config(), 2, 24, 72);
    let f = files(&model, &[("x", &x), ("dy", &dy)]);
    let report = f.out.with_file_name("report.json");
    let (ok, err) = grad(
        &f,
        &["--compare-exact", "--report", report.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("against the same pass with exact attention"),
        "{err}"
    );
    let exact_out = f.out.with_file_name("exact.safetensors");
    let (ok, err) = grad_to(&f, &exact_out, &["--attention", "exact"]);
    assert!(ok, "{err}");

    // Every output's error, as the two files give it.
    let (poly, _) = read_tensors(&f.out).unwrap();
    let (exact, _) = read_tensors(&exact_out).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let compared = json["compare_exact"].as_object().expect("compare_exact");
    assert_eq!(compared.len(), poly.len(), "{json}");
    for (name, tensor) in &poly {
        let expected = polygrad::reference::relative_error(
            &tensor.data,
            &polygrad::reference::widen(&exact[name].data),
        );
        let got = compared[name].as_f64().unwrap_or(f64::NAN);
        assert!(
            (got - expected).abs() <= 1e-12 * expected.max(1e-300),
            "{name}: reported {got}, the files give {expected}"
        );
    }
    // Random weights give logits of order 1: poly g = 2 is visibly not exact.
    assert!(compared["grad.x"].as_f64().unwrap() > 1e-4, "{json}");

    // With exact attention already, there is nothing to compare.
    let (ok, err) = grad(&f, &["--attention", "exact", "--compare-exact"]);
    assert!(!ok);
    assert!(err.contains("--compare-exact"), "{err}");
}

#[test]
fn grad_attention_auto_picks_each_layer_and_says_why() {
    let Some(_ctx) = common::gpu() else { return };
    let model = Model::random(
        small_model_config(2, 2, true, Attention::Poly { degree: 2 }),
        91,
    )
    .unwrap();
    // q and k weights x 0.1 in block 0 (a bound holds at g = 2), x 5 in block 1 (none does).
    let model = with_logit_scales(&model, &[0.1, 5.0]).unwrap();
    let (x, dy) = random_model_input(model.config(), 1, 30, 92);
    let f = files(&model, &[("x", &x), ("dy", &dy)]);
    let report = f.out.with_file_name("report.json");
    let args = ["--attention", "auto", "--tolerance", "1e-3"];
    let (ok, err) = grad(
        &f,
        &[&args[..], &["--report", report.to_str().unwrap()]].concat(),
    );
    assert!(ok, "{err}");
    assert!(err.contains("layer 0 chose poly g=2: certified"), "{err}");
    assert!(
        err.contains("layer 1 chose exact: exact: no degree up to 4"),
        "{err}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let layers = json["layers"].as_array().unwrap();
    assert_eq!(layers[0]["attention"], "poly", "{json}");
    assert_eq!(layers[0]["degree"], 2, "{json}");
    assert_eq!(layers[1]["attention"], "exact", "{json}");
    assert!(layers[1]["degree"].is_null(), "{json}");
    let reason = layers[1]["reason"].as_str().unwrap();
    assert!(reason.contains("sampled o errors (g=2: "), "{json}");

    // The options auto takes, and refuses.
    for (extra, named) in [
        (&["--attention", "auto"][..], "--tolerance"),
        (
            &["--attention", "auto", "--tolerance", "0"][..],
            "--tolerance",
        ),
        (
            &["--attention", "auto", "--tolerance", "-1"][..],
            "--tolerance",
        ),
        (
            &["--attention", "auto", "--tolerance", "NaN"][..],
            "--tolerance",
        ),
        (
            &[
                "--attention",
                "auto",
                "--tolerance",
                "1e-3",
                "--max-degree",
                "3",
            ][..],
            "--max-degree",
        ),
        (
            &[
                "--attention",
                "auto",
                "--tolerance",
                "1e-3",
                "--max-degree",
                "10",
            ][..],
            "--max-degree",
        ),
        (
            &[
                "--attention",
                "auto",
                "--tolerance",
                "1e-3",
                "--degree",
                "4",
            ][..],
            "--degree",
        ),
        (&["--tolerance", "1e-3"][..], "--tolerance"),
        (
            &["--attention", "poly", "--max-degree", "4"][..],
            "--max-degree",
        ),
    ] {
        let (ok, err) = grad(&f, extra);
        assert!(!ok, "{extra:?} was accepted");
        assert!(err.contains(named), "{extra:?}: {err}");
    }
}

/// Runs `polygrad error` with `args`; returns (success, stdout, stderr).
fn error_command(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_polygrad"))
        .env("POLYGRAD_TUNE", "off")
        .arg("error")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn error_sweeps_logits_and_degrees_and_draws_them() {
    let Some(_ctx) = common::gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("error.svg");
    let (ok, out, err) = error_command(&[
        "--n",
        "40",
        "--d-qk",
        "4",
        "--d-v",
        "3",
        "--causal",
        "--seed",
        "5",
        "--max-logits",
        "0.1,1,10",
        "--degrees",
        "2,4",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("n=40 d_qk=4 d_v=3 causal"), "{out}");
    // One row per (largest logit, degree): g, max |s|, R, certified (or "none (eps >= 1)"),
    // measured err(o), then o, dq, dk, dv.
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.first().is_some_and(|g| *g == "2" || *g == "4"))
        .collect();
    assert_eq!(rows.len(), 6, "{out}");
    let mut certified = 0;
    for row in &rows {
        let max_s: f64 = row[1].parse().unwrap();
        assert!(
            [0.1, 1.0, 10.0].iter().any(|s| (max_s - s).abs() < 1e-3),
            "{out}"
        );
        let measured: f64 = row[row.len() - 5].parse().unwrap();
        if let Ok(bound) = row[3].parse::<f64>() {
            certified += 1;
            assert!(measured <= bound, "{row:?}");
        }
    }
    assert!(certified >= 2, "{out}");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.contains("g=4 certified") && drawn.contains("g=2 measured"));

    for (args, named) in [
        (&["--degrees", "3"][..], "--degrees"),
        (&["--max-logits", "0"][..], "--max-logits"),
        (&["--max-logits", "nan"][..], "--max-logits"),
        (&["--n", "0"][..], "seq_len"),
        (&["--plot", "error.txt"][..], ".svg or .png"),
    ] {
        let (ok, _, err) = error_command(args);
        assert!(!ok, "{args:?} was accepted");
        assert!(err.contains(named), "{args:?}: {err}");
    }
}
