//! Choice of kernel variant by measurement: on first use of a kernel family and shape class on
//! an adapter, the candidates are timed briefly and the fastest kept, in memory and in a cache
//! file keyed by adapter, driver and polygrad version. A cache that cannot be read, parsed or
//! written, or that names a variant that no longer exists, gives a warning and a fresh
//! measurement, never an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::reference::{relative_error, widen};

/// When the tuner measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TuneMode {
    /// No measurement: each family's built-in default for the adapter.
    Off,
    /// Cached choices where there are any, a measurement (then cached) where not. The default.
    Cached,
    /// Measure again, ignoring and then replacing what is cached: each class once in the
    /// process, its later products taking that choice.
    Retune,
}

impl TuneMode {
    /// POLYGRAD_TUNE=off|cached|retune; anything else (or unset) is `Cached`, with a warning
    /// for a value that is set but not understood.
    pub fn from_env() -> Self {
        match std::env::var("POLYGRAD_TUNE") {
            Ok(v) => v.parse().unwrap_or_else(|e| {
                eprintln!("warning: {e}; tuning from the cache");
                TuneMode::Cached
            }),
            Err(_) => TuneMode::Cached,
        }
    }
}

impl std::str::FromStr for TuneMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(TuneMode::Off),
            "cached" => Ok(TuneMode::Cached),
            "retune" => Ok(TuneMode::Retune),
            other => Err(format!(
                "POLYGRAD_TUNE={other} is not one of off, cached, retune"
            )),
        }
    }
}

/// The cache file's contents: choices (variant names) by shape class, for one adapter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TuneCache {
    /// "adapter name | driver | polygrad version": a cache made under another key is stale.
    pub key: String,
    /// The chosen variant of each shape class.
    pub choices: BTreeMap<String, String>,
}

/// The tuner of one context: its mode, where its cache lives, and what it has chosen.
#[derive(Debug)]
pub struct Tuner {
    /// Off, cached or retune.
    pub mode: TuneMode,
    path: Option<PathBuf>,
    cache: TuneCache,
    /// A matmul variant used for every product whatever the mode (`ops::matmul::pin_variant`).
    pub pinned_matmul: Option<String>,
}

/// The directory for tune caches: POLYGRAD_CACHE_DIR, else $XDG_CACHE_HOME/polygrad, else
/// $HOME/.cache/polygrad.
pub fn default_cache_dir() -> Option<PathBuf> {
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    env("POLYGRAD_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| env("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("polygrad")))
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache").join("polygrad")))
}

impl Tuner {
    /// A tuner for the adapter `key`, reading `dir`/tune.json when the mode is `Cached`.
    pub fn new(mode: TuneMode, dir: Option<&Path>, key: &str) -> Self {
        let path = dir.map(|d| d.join("tune.json"));
        let mut cache = TuneCache {
            key: key.to_string(),
            choices: BTreeMap::new(),
        };
        if let (TuneMode::Cached, Some(path)) = (mode, &path) {
            match read_cache(path) {
                Ok(Some(found)) if found.key == key => cache.choices = found.choices,
                Ok(Some(found)) => eprintln!(
                    "note: tune cache {} was made for {}; measuring again for {key}",
                    path.display(),
                    found.key
                ),
                Ok(None) => {}
                Err(e) => eprintln!("warning: {e}; measuring again"),
            }
        }
        Tuner {
            mode,
            path,
            cache,
            pinned_matmul: None,
        }
    }

    /// The choices so far.
    pub fn cache(&self) -> &TuneCache {
        &self.cache
    }

    /// The choice for `class`: cached, or measured earlier in this process. A `Retune` tuner
    /// starts from no choices, so that each class is measured once in the process (measuring it
    /// at every product made `polygrad tune` time each class again at every layer and chunk
    /// size, and keep whichever measurement came last).
    pub fn cached(&self, class: &str) -> Option<&str> {
        self.cache.choices.get(class).map(String::as_str)
    }

    /// Forgets a cached choice that no longer names a variant (a stale entry), with a warning.
    pub fn forget(&mut self, class: &str, why: &str) {
        if let Some(old) = self.cache.choices.remove(class) {
            eprintln!("warning: tune cache entry {class} = {old}: {why}; measuring again");
        }
    }

    /// Records a measured choice and writes the cache file (a failure to write is a warning).
    pub fn record(&mut self, class: &str, variant: &str) {
        self.cache
            .choices
            .insert(class.to_string(), variant.to_string());
        if let Some(path) = &self.path {
            if let Err(e) = write_cache(path, &self.cache) {
                eprintln!("warning: {e}; the choice is kept for this process only");
            }
        }
    }
}

/// The cache at `path`: None when there is no file; an error naming the file when it cannot be
/// read or parsed.
pub fn read_cache(path: &Path) -> Result<Option<TuneCache>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("tune cache {} cannot be read: {e}", path.display())),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("tune cache {} is corrupt: {e}", path.display()))
}

/// Writes the cache atomically (a temporary file renamed over the old one).
pub fn write_cache(path: &Path, cache: &TuneCache) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("tune cache {} cannot be written: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let text = serde_json::to_string_pretty(cache).map_err(|e| e.to_string())?;
    let tmp = path.with_extension(format!("json.{}.partial", std::process::id()));
    std::fs::write(&tmp, text).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

/// Deterministic probe inputs in [-1, 1), different for each `salt`: the same data on every
/// run, so that candidates are timed on the same work.
pub(crate) fn probe_values(len: usize, salt: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i + salt) * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

/// Timed runs of every candidate after its first, untimed one (which compiles its pipelines).
const SCREEN_ROUNDS: usize = 2;
/// Timed rounds, after SCREEN_ROUNDS, of the candidates within CLOSE of the fastest: on a
/// shared machine two rounds left close candidates to chance (fresh tunes of one class chose
/// three different variants, BENCHMARKS.md); the clearly slower are not timed again.
const CLOSE_ROUNDS: usize = 4;
const CLOSE: f64 = 1.5;

/// What one run of a candidate is for ([`fastest_agreeing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Round {
    /// The first run: untimed (it compiles), its result compared with the others'.
    Check,
    /// Timed, every candidate that agreed.
    Screen,
    /// Timed, the candidates within [`CLOSE`] of the fastest screened. A caller may time these
    /// on a larger probe, nearer the products it tunes for, than the screening rounds.
    Close,
}

/// `run` (which waits for the GPU) once, and how long it took.
pub(crate) fn timed<T>(run: impl FnOnce() -> crate::Result<T>) -> crate::Result<(Duration, T)> {
    let start = Instant::now();
    let value = run()?;
    Ok((start.elapsed(), value))
}

/// The fastest of `candidates` whose result agrees with the first candidate's to f32 rounding
/// (relative error over the whole result at most 1e-4, as the tests measure it); a disagreeing
/// candidate is warned about and not used. `run_once(candidate, round)` runs a candidate once
/// and returns its time and, for [`Round::Check`], its result; None for one that cannot run
/// here. Each candidate first runs once untimed, giving its result; then [`SCREEN_ROUNDS`]
/// rounds time every candidate once in turn, and [`CLOSE_ROUNDS`] more those within [`CLOSE`]
/// of the fastest, each keeping its best of these last rounds. In turn rather than back to
/// back: on a shared machine a slow spell of a few seconds then slows every candidate of a
/// round alike instead of deciding between two (a fresh tune timing back to back once chose a
/// product variant that ran 2x slower in the pass than the best; BENCHMARKS.md). None when no
/// candidate ran.
pub(crate) fn fastest_agreeing<C: Copy + std::fmt::Display>(
    family: &str,
    candidates: &[C],
    mut run_once: impl FnMut(C, Round) -> crate::Result<Option<(Duration, Option<Vec<f32>>)>>,
) -> crate::Result<Option<C>> {
    let mut agreeing = Vec::new();
    let mut first: Option<(C, Vec<f32>)> = None;
    for &candidate in candidates {
        let Some((_, result)) = run_once(candidate, Round::Check)? else {
            continue;
        };
        let result = result.unwrap_or_default();
        match &first {
            None => first = Some((candidate, result)),
            Some((reference, expected)) => {
                if relative_error(&result, &widen(expected)) > 1e-4 {
                    eprintln!(
                        "warning: {family} {candidate} disagrees with {reference} on this adapter; not used"
                    );
                    continue;
                }
            }
        }
        agreeing.push((candidate, Duration::MAX));
    }
    let mut best_of_rounds = |agreeing: &mut Vec<(C, Duration)>, round: Round, rounds: usize| {
        for _ in 0..rounds {
            for (candidate, best) in agreeing.iter_mut() {
                if let Some((time, _)) = run_once(*candidate, round)? {
                    *best = (*best).min(time);
                }
            }
        }
        crate::Result::Ok(())
    };
    best_of_rounds(&mut agreeing, Round::Screen, SCREEN_ROUNDS)?;
    if let Some(fastest) = agreeing.iter().map(|&(_, time)| time).min() {
        agreeing.retain(|&(_, time)| time.as_secs_f64() <= CLOSE * fastest.as_secs_f64());
    }
    // The close rounds may run another probe: only their times are compared.
    for (_, best) in agreeing.iter_mut() {
        *best = Duration::MAX;
    }
    best_of_rounds(&mut agreeing, Round::Close, CLOSE_ROUNDS)?;
    Ok(agreeing
        .into_iter()
        .min_by_key(|&(_, time)| time)
        .map(|(candidate, _)| candidate))
}
