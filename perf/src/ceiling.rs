//! The pipeline's ceiling: what put and get could reach on this machine,
//! at this moment, if the code added nothing to the work they must do.
//!
//! `bench ceiling` ([`crate::bench_ceiling`]) measures the single-core
//! throughput of every stage a put and a get pass through (file
//! encryption, erasure coding, BLAKE3, session seal and open, loopback
//! copies, store write and read, and the benchmark's own input and
//! comparison). This module combines those rates into a ceiling, with no
//! clock and no I/O, so its arithmetic is tested on its own.
//!
//! The model. Each [`Step`] of a pipeline names a measured stage, how many
//! bytes it handles per byte of the file (`weight`: a 3-of-10 put seals
//! 10/3 bytes of shares per file byte), and its [`Lane`]:
//!
//! * [`Lane::Parallel`]: spreads over every core (ten server sessions, the
//!   writers' sealing);
//! * [`Lane::Serial`]: one thread does the steps of its group one after
//!   another (the encoder encrypts, codes and hashes a segment on one
//!   thread), so the group alone caps throughput at one core's worth; its
//!   CPU counts towards the cores too;
//! * [`Lane::Device`]: not CPU at all (the disk's own write-back), capped by
//!   the device, shared by everyone.
//!
//! With `c` cores, per-file-byte costs `w / r` (seconds), the ceiling is the
//! least of `c / sum(CPU costs)`, `1 / sum(costs of each serial group)` and
//! `1 / sum(device costs)`. It assumes perfect scheduling and no overhead:
//! a put at the ceiling would do nothing but its stages' work.

use std::collections::BTreeMap;

use serde::Serialize;

/// Where a step's work runs (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Spreads over every core.
    Parallel,
    /// Runs on one thread with the other steps of the same named group.
    Serial(&'static str),
    /// The storage device, not the CPU.
    Device,
}

/// A stage's measured single-core throughput.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    /// The stage (steps refer to it by this name).
    pub stage: &'static str,
    /// Bytes per second on one core (for a device stage: of the device).
    pub bytes_per_s: f64,
}

/// One step of a pipeline: a stage, its bytes per file byte, its lane.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// The measured stage this step is.
    pub stage: &'static str,
    /// Bytes the stage handles per byte of the file.
    pub weight: f64,
    /// Where it runs.
    pub lane: Lane,
}

/// One bound on throughput.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bound {
    /// `cpu (N cores)`, `serial: GROUP` or `device`.
    pub what: String,
    /// The file bytes per second it allows.
    pub bytes_per_s: f64,
}

/// A pipeline's ceiling and the bounds it is the least of.
#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    /// File bytes per second at the ceiling.
    pub bytes_per_s: f64,
    /// The binding bound's name.
    pub binding: String,
    /// CPU seconds per file byte, all steps but the device's, on one core.
    pub cpu_s_per_byte: f64,
    /// Every bound, tightest first.
    pub bounds: Vec<Bound>,
}

/// Why a ceiling cannot be computed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CeilingError {
    /// A step names a stage that was not measured.
    #[error("stage {0:?} was not measured")]
    Unmeasured(&'static str),
    /// A stage's rate is zero, negative or not a number.
    #[error("stage {0:?} has no usable rate ({1})")]
    BadRate(&'static str, f64),
    /// A step's weight is negative or not a number.
    #[error("step {0:?} has a bad weight ({1})")]
    BadWeight(&'static str, f64),
    /// Cores not positive.
    #[error("cores must be positive, not {0}")]
    BadCores(f64),
    /// No step with a positive weight: nothing bounds the pipeline.
    #[error("the pipeline has no work")]
    NoWork,
}

/// Combine measured stage rates into the ceiling of `steps` on `cores`
/// cores (see the module docs for the model).
///
/// # Errors
/// [`CeilingError`] for a step naming an unmeasured stage, an unusable rate
/// or weight, non-positive cores, or a pipeline with no work.
pub fn combine(rates: &[Measured], steps: &[Step], cores: f64) -> Result<Ceiling, CeilingError> {
    if !(cores.is_finite() && cores > 0.0) {
        return Err(CeilingError::BadCores(cores));
    }
    let mut cpu = 0.0f64;
    let mut device = 0.0f64;
    let mut serial: BTreeMap<&'static str, f64> = BTreeMap::new();
    for s in steps {
        if !(s.weight.is_finite() && s.weight >= 0.0) {
            return Err(CeilingError::BadWeight(s.stage, s.weight));
        }
        if s.weight == 0.0 {
            continue;
        }
        let rate = rates
            .iter()
            .find(|m| m.stage == s.stage)
            .ok_or(CeilingError::Unmeasured(s.stage))?
            .bytes_per_s;
        if rate.is_nan() || rate <= 0.0 {
            return Err(CeilingError::BadRate(s.stage, rate));
        }
        // An infinite rate (a stage too fast to time) costs nothing.
        let cost = s.weight / rate;
        match s.lane {
            Lane::Parallel => cpu += cost,
            Lane::Serial(group) => {
                cpu += cost;
                *serial.entry(group).or_default() += cost;
            }
            Lane::Device => device += cost,
        }
    }
    let mut bounds = Vec::new();
    let mut bound = |what: String, cost: f64, capacity: f64| {
        if cost > 0.0 {
            bounds.push(Bound {
                what,
                bytes_per_s: capacity / cost,
            });
        }
    };
    bound(format!("cpu ({cores} cores)"), cpu, cores);
    for (group, cost) in &serial {
        bound(format!("serial: {group}"), *cost, 1.0);
    }
    bound("device".to_string(), device, 1.0);
    if bounds.is_empty() {
        return Err(CeilingError::NoWork);
    }
    bounds.sort_by(|a, b| a.bytes_per_s.total_cmp(&b.bytes_per_s));
    Ok(Ceiling {
        bytes_per_s: bounds[0].bytes_per_s,
        binding: bounds[0].what.clone(),
        cpu_s_per_byte: cpu,
        bounds,
    })
}

/// Group name of the upload's encoder (one task, a segment at a time).
pub const ENCODER: &str = "encoder";

/// Stage names (the keys `bench_ceiling` measures under).
pub mod stage {
    /// The benchmark producing its generated input (a copy).
    pub const INPUT: &str = "bench input";
    /// The benchmark comparing the download with the input.
    pub const COMPARE: &str = "bench compare";
    /// ChaCha20 over the file (encryption and decryption are the same).
    pub const FILE_CIPHER: &str = "file cipher (ChaCha20)";
    /// Reed-Solomon encode, per byte of original data.
    pub const ERASURE_ENCODE: &str = "erasure encode";
    /// Reed-Solomon decode from recovery blocks only, per byte of original.
    pub const ERASURE_DECODE: &str = "erasure decode";
    /// BLAKE3 of a block.
    pub const BLAKE3: &str = "BLAKE3";
    /// Sealing a storage message into Noise frames.
    pub const SEAL: &str = "session seal";
    /// Opening Noise frames.
    pub const OPEN: &str = "session open";
    /// Writing to and reading from a loopback TCP socket (both copies).
    pub const LOOPBACK: &str = "loopback TCP";
    /// A share store's writes (page cache, XXH3 checksum).
    pub const STORE_WRITE: &str = "store write";
    /// A share store's close: fsync of what was written (the device).
    pub const STORE_SYNC: &str = "store fsync";
    /// A share store's reads of blocks.
    pub const STORE_READ: &str = "store read";
}

/// The steps of a put of a k-of-n file: the encoder (one task) encrypts,
/// codes and hashes; every share byte is sealed, crosses loopback, is
/// opened and stored.
pub fn put_steps(k: u16, n: u16) -> Vec<Step> {
    let e = f64::from(n) / f64::from(k.max(1));
    let s = |stage, weight, lane| Step {
        stage,
        weight,
        lane,
    };
    vec![
        s(stage::INPUT, 1.0, Lane::Parallel),
        s(stage::FILE_CIPHER, 1.0, Lane::Serial(ENCODER)),
        s(stage::ERASURE_ENCODE, 1.0, Lane::Serial(ENCODER)),
        // The ciphertext's hash, and each block's.
        s(stage::BLAKE3, 1.0 + e, Lane::Serial(ENCODER)),
        s(stage::SEAL, e, Lane::Parallel),
        s(stage::LOOPBACK, e, Lane::Parallel),
        s(stage::OPEN, e, Lane::Parallel),
        s(stage::STORE_WRITE, e, Lane::Parallel),
        s(stage::STORE_SYNC, e, Lane::Device),
    ]
}

/// The steps of a get from primary shares (the download prefers them: no
/// erasure decoding): k blocks of 1/k of each segment are read, sealed,
/// carried, opened, hashed, and each segment's decoding task hashes its
/// ciphertext and decrypts it (on any core: segments decode side by side).
pub fn get_steps() -> Vec<Step> {
    let s = |stage, weight, lane| Step {
        stage,
        weight,
        lane,
    };
    vec![
        s(stage::STORE_READ, 1.0, Lane::Parallel),
        s(stage::SEAL, 1.0, Lane::Parallel),
        s(stage::LOOPBACK, 1.0, Lane::Parallel),
        s(stage::OPEN, 1.0, Lane::Parallel),
        // Each block's hash, by the receiver of its share (on whichever
        // core runs it), then the ciphertext's and the decryption, by
        // each segment's decoding task (segments decode side by side).
        s(stage::BLAKE3, 1.0, Lane::Parallel),
        s(stage::BLAKE3, 1.0, Lane::Parallel),
        s(stage::FILE_CIPHER, 1.0, Lane::Parallel),
        s(stage::COMPARE, 1.0, Lane::Parallel),
    ]
}

/// `measured` as a fraction of `ceiling` (0 for a ceiling of 0).
pub fn fraction(measured: f64, ceiling: f64) -> f64 {
    if ceiling > 0.0 && ceiling.is_finite() {
        measured / ceiling
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1e6;

    fn m(stage: &'static str, mb_s: f64) -> Measured {
        Measured {
            stage,
            bytes_per_s: mb_s * MB,
        }
    }

    fn step(stage: &'static str, weight: f64, lane: Lane) -> Step {
        Step {
            stage,
            weight,
            lane,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn parallel_stages_add_their_costs_and_share_the_cores() {
        let rates = [m("a", 100.0), m("b", 300.0)];
        // One stage on two cores: twice its single-core rate.
        let c = combine(&rates, &[step("a", 1.0, Lane::Parallel)], 2.0).unwrap();
        assert!(close(c.bytes_per_s, 200.0 * MB), "{c:?}");
        // Two stages: 1/100 + 1/300 s per MB on one core = 75 MB/s; 150 on two.
        let c = combine(
            &rates,
            &[
                step("a", 1.0, Lane::Parallel),
                step("b", 1.0, Lane::Parallel),
            ],
            2.0,
        )
        .unwrap();
        assert!(close(c.bytes_per_s, 150.0 * MB), "{c:?}");
        assert_eq!(c.binding, "cpu (2 cores)");
        assert!(close(c.cpu_s_per_byte, (1.0 / 100.0 + 1.0 / 300.0) / MB));
    }

    #[test]
    fn weights_scale_a_stage_cost() {
        // 10/3 bytes of shares per file byte through a 1000 MB/s stage on
        // two cores: 600 MB/s of file.
        let c = combine(
            &[m("seal", 1000.0)],
            &[step("seal", 10.0 / 3.0, Lane::Parallel)],
            2.0,
        )
        .unwrap();
        assert!(close(c.bytes_per_s, 600.0 * MB), "{c:?}");
        // A step of weight 0 costs nothing, even for a stage not measured.
        let c = combine(
            &[m("seal", 1000.0)],
            &[
                step("seal", 1.0, Lane::Parallel),
                step("unmeasured", 0.0, Lane::Parallel),
            ],
            1.0,
        )
        .unwrap();
        assert!(close(c.bytes_per_s, 1000.0 * MB));
    }

    #[test]
    fn a_serial_group_caps_at_one_core_and_still_uses_cpu() {
        let rates = [m("enc", 150.0), m("hash", 300.0), m("net", 1000.0)];
        let steps = [
            step("enc", 1.0, Lane::Serial("encoder")),
            step("hash", 1.0, Lane::Serial("encoder")),
            step("net", 1.0, Lane::Parallel),
        ];
        let c = combine(&rates, &steps, 2.0).unwrap();
        // The encoder thread: 1/150 + 1/300 s per MB = 100 MB/s at most.
        assert!(close(c.bytes_per_s, 100.0 * MB), "{c:?}");
        assert_eq!(c.binding, "serial: encoder");
        // The CPU bound counts the encoder's work: 2 / (1/150+1/300+1/1000).
        let cpu = c.bounds.iter().find(|b| b.what.starts_with("cpu")).unwrap();
        assert!(close(
            cpu.bytes_per_s,
            2.0 / (1.0 / 150.0 + 1.0 / 300.0 + 1.0 / 1000.0) * MB
        ));
        // On one core the CPU binds instead (the encoder cannot have a core
        // of its own beside the rest).
        let c = combine(&rates, &steps, 1.0).unwrap();
        assert_eq!(c.binding, "cpu (1 cores)");
        assert!(close(
            c.bytes_per_s,
            1.0 / (1.0 / 150.0 + 1.0 / 300.0 + 1.0 / 1000.0) * MB
        ));
        // Two groups are bounded apart, not together.
        let c = combine(
            &rates,
            &[
                step("enc", 1.0, Lane::Serial("x")),
                step("hash", 1.0, Lane::Serial("y")),
            ],
            4.0,
        )
        .unwrap();
        assert!(close(c.bytes_per_s, 150.0 * MB), "{c:?}");
        assert_eq!(c.binding, "serial: x");
        assert_eq!(c.bounds.len(), 3);
    }

    #[test]
    fn a_device_bounds_without_using_cpu() {
        let rates = [m("write", 1000.0), m("fsync", 400.0)];
        let steps = [
            step("write", 10.0 / 3.0, Lane::Parallel),
            step("fsync", 10.0 / 3.0, Lane::Device),
        ];
        let c = combine(&rates, &steps, 2.0).unwrap();
        // The disk takes 400 MB/s of shares: 120 MB/s of file.
        assert!(close(c.bytes_per_s, 120.0 * MB), "{c:?}");
        assert_eq!(c.binding, "device");
        assert!(close(c.cpu_s_per_byte, 10.0 / 3.0 / 1000.0 / MB));
        // tmpfs: an fsync too fast to time does not bound anything.
        let rates = [m("write", 1000.0), m("fsync", f64::INFINITY)];
        let c = combine(&rates, &steps, 2.0).unwrap();
        assert!(close(c.bytes_per_s, 600.0 * MB), "{c:?}");
        assert_eq!(c.bounds.len(), 1);
    }

    #[test]
    fn bad_inputs_are_errors_not_numbers() {
        let ok = [m("a", 100.0)];
        let par = |s| [step(s, 1.0, Lane::Parallel)];
        assert_eq!(
            combine(&ok, &par("b"), 2.0).unwrap_err(),
            CeilingError::Unmeasured("b")
        );
        for bad in [0.0, -1.0, f64::NAN] {
            assert!(matches!(
                combine(&[m("a", bad)], &par("a"), 2.0),
                Err(CeilingError::BadRate("a", _))
            ));
        }
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                combine(&ok, &[step("a", bad, Lane::Parallel)], 2.0),
                Err(CeilingError::BadWeight("a", _))
            ));
        }
        for cores in [0.0, -2.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                combine(&ok, &par("a"), cores),
                Err(CeilingError::BadCores(_))
            ));
        }
        assert_eq!(combine(&ok, &[], 2.0).unwrap_err(), CeilingError::NoWork);
    }

    #[test]
    fn put_and_get_steps_follow_the_encoding() {
        // Every stage at 1000 MB/s: a 3-of-10 put costs, per file byte, 1
        // (input), 1 + 1 + 13/3 on the encoder (cipher, erasure, BLAKE3),
        // and 10/3 for each of seal, loopback, open and store write.
        let all = [
            stage::INPUT,
            stage::COMPARE,
            stage::FILE_CIPHER,
            stage::ERASURE_ENCODE,
            stage::ERASURE_DECODE,
            stage::BLAKE3,
            stage::SEAL,
            stage::OPEN,
            stage::LOOPBACK,
            stage::STORE_WRITE,
            stage::STORE_SYNC,
            stage::STORE_READ,
        ];
        let rates: Vec<Measured> = all.iter().map(|s| m(s, 1000.0)).collect();
        let put = combine(&rates, &put_steps(3, 10), 2.0).unwrap();
        let e = 10.0 / 3.0;
        let cpu = 1.0 + 1.0 + 1.0 + (1.0 + e) + 4.0 * e;
        assert!(close(put.cpu_s_per_byte, cpu / 1000.0 / MB), "{put:?}");
        assert!(close(put.bytes_per_s, 2.0 * 1000.0 / cpu * MB), "{put:?}");
        let enc = put.bounds.iter().find(|b| b.what == "serial: encoder");
        assert!(close(enc.unwrap().bytes_per_s, 1000.0 / (3.0 + e) * MB));
        let dev = put.bounds.iter().find(|b| b.what == "device").unwrap();
        assert!(close(dev.bytes_per_s, 1000.0 / e * MB));
        // 1-of-1 ships each byte once.
        let one = combine(&rates, &put_steps(1, 1), 2.0).unwrap();
        assert!(close(one.cpu_s_per_byte, 9.0 / 1000.0 / MB), "{one:?}");
        // A get from primaries: 1 + 1 + 1 + 1 + 2 + 1 + 1 = 8.
        let get = combine(&rates, &get_steps(), 2.0).unwrap();
        assert!(close(get.cpu_s_per_byte, 8.0 / 1000.0 / MB), "{get:?}");
        assert!(close(get.bytes_per_s, 250.0 * MB));
        // Segments decode side by side: no step of a get is serial.
        assert!(
            get.bounds.iter().all(|b| !b.what.starts_with("serial")),
            "{get:?}"
        );
        assert!(close(fraction(200.0, 250.0), 0.8));
        assert_eq!(fraction(1.0, 0.0), 0.0);
    }
}
