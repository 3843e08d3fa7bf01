//! The engine's operations on a small key domain (16 `u8` keys) against the naive model in
//! `memokit_fuzz::Model`: inserts with TTLs and up to two generations, lookups, removes,
//! single-flight lookups, generation retirement, clock advances, flush, maintenance, clear.
//!
//! Two kinds of run, picked by the input: a capacity larger than the key domain, where every
//! lookup must give exactly the model's answer and `len()` must match the model after flushes
//! and maintenance; and a tiny capacity (0 to 7 entries), where a lookup may miss but never
//! return any value other than the model's.

#![no_main]

use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use memokit_engine::{Engine, Generation, InsertOptions, ManualClock};
use memokit_fuzz::{check_eq, check_within, validate, Model, Step, Ttl, Val, TICK};

const KEYS: u8 = 16;
/// Generations issued before the first operation.
const FIRST_GENS: usize = 2;

#[derive(Arbitrary, Debug)]
struct Config {
    /// `None`: a capacity larger than the key domain (exact run); `Some(n)`: `n % 8` entries.
    tiny: Option<u8>,
    /// 1, 2 or 4 shards.
    shards: u8,
    /// One worker, or two.
    two_workers: bool,
}

/// Which generations a value is stored under; the bytes index the generations issued so far.
#[derive(Arbitrary, Clone, Copy, Debug)]
enum Gens {
    None,
    One(u8),
    Two(u8, u8),
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// `insert`, `insert_with_ttl` or `insert_with_options`, depending on the options.
    Insert {
        key: u8,
        ttl: Ttl,
        gens: Gens,
    },
    Get {
        key: u8,
    },
    Contains {
        key: u8,
    },
    Remove {
        key: u8,
    },
    /// `get_or_insert_with` or `get_or_insert_with_options`.
    GetOrInsert {
        key: u8,
        ttl: Ttl,
        gens: Gens,
        /// What the computation does while it runs (single-threaded, so deterministic).
        during: Option<During>,
    },
    /// `get_or_try_insert_with_ref`, the computation failing or not.
    TryInsert {
        key: u8,
        ttl: Ttl,
        gens: Gens,
        fail: bool,
    },
    NewGeneration,
    Retire {
        gen: u8,
    },
    Advance(Step),
    Flush,
    Maintain,
    Clear,
}

/// An operation run inside a `get_or_insert_with` computation, on the same thread.
#[derive(Arbitrary, Clone, Copy, Debug)]
enum During {
    /// `remove(key)`: detaches the computation; its value is returned but not stored.
    Remove,
    /// `insert(key, ..)`: supersedes the computation; the inserted value stays.
    Insert(Ttl),
    /// Retires a generation; if the computation's value carries it, it is not stored.
    Retire(u8),
    /// `clear()`: detaches every computation.
    Clear,
    /// Moves the clock: the deadline counts from the store, after the computation.
    Advance(Step),
    /// Inserts another key (the same key counts as `Insert(Never)`).
    InsertOther(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    config: Config,
    ops: Vec<Op>,
}

struct Run {
    engine: Engine<u8, Val>,
    clock: ManualClock,
    model: Model<u8>,
    gens: Vec<Generation>,
    token: Arc<()>,
    next_id: u64,
}

impl Run {
    fn fresh(&mut self) -> Val {
        self.next_id += 1;
        Val::new(self.next_id, 0, &self.token)
    }

    fn resolve(&self, g: Gens) -> (Option<(Generation, Option<Generation>)>, [u64; 2]) {
        let pick = |i: u8| self.gens[usize::from(i) % self.gens.len()];
        match g {
            Gens::None => (None, [0, 0]),
            Gens::One(a) => {
                let a = pick(a);
                (Some((a, None)), [a.id(), 0])
            }
            Gens::Two(a, b) => {
                let (a, b) = (pick(a), pick(b));
                (Some((a, Some(b))), [a.id(), b.id()])
            }
        }
    }

    fn options(&self, ttl: Ttl, gens: Gens) -> (InsertOptions, Option<Duration>, [u64; 2]) {
        let (g, raw) = self.resolve(gens);
        let mut opts = InsertOptions::new();
        if let Some(d) = ttl.duration() {
            opts = opts.ttl(d);
        }
        if let Some((a, b)) = g {
            opts = opts.generations(a, b);
        }
        (opts, ttl.duration(), raw)
    }

    /// Values alive outside the engine: none (every value the target gets back is dropped at
    /// once), so the token's count minus one is what the engine holds.
    fn values_held(&self) -> u64 {
        Arc::strong_count(&self.token) as u64 - 1
    }

    fn check_flushed(&self, step: usize, op: &Op) {
        let len = self.engine.len();
        check_eq!(self.values_held(), len, step, op, "values alive vs len() after flush");
        check_eq!(self.engine.weighted_size(), len, step, op, "weighted_size() vs len()");
        let s = self.engine.stats();
        check_eq!(s.entries, len, step, op, "stats().entries vs len()");
        check_eq!(s.hits + s.misses, self.model.lookups, step, op, "hits + misses vs lookups");
        if self.model.exact {
            check_within(len, self.model.len_bounds(), "len()", step, op);
            check_eq!((s.hits, s.misses), (self.model.hits, self.model.misses), step, op, "stats");
            for &g in &self.gens {
                if self.engine.is_live(g) {
                    let want = self.model.generation_entries(g.id());
                    let got = self.engine.generation_entries(g);
                    let what = "generation_entries of a live generation";
                    check_within(got, want, what, step, op);
                }
            }
        } else {
            let most = self.model.entries.len() as u64;
            if len > most {
                panic!(
                    "divergence after step {step} ({op:?}): len() {len} but the model stores \
                     at most {most}"
                );
            }
        }
    }

    fn step(&mut self, step: usize, op: &Op) {
        match *op {
            Op::Insert { key, ttl, gens } => {
                let key = key % KEYS;
                let v = self.fresh();
                let id = v.id;
                let (opts, d, raw) = self.options(ttl, gens);
                match (ttl, gens) {
                    (Ttl::Never, Gens::None) => self.engine.insert(key, v),
                    (_, Gens::None) => self.engine.insert_with_ttl(key, v, d.unwrap()),
                    _ => self.engine.insert_with_options(key, v, opts),
                }
                self.model.store(key, id, d, raw, 1);
                // Read-your-writes at once, before any flush.
                let got = self.engine.get(&key).map(|v| v.id);
                self.model.check_lookup(&key, got, &("get right after", op));
            }
            Op::Get { key } => {
                let key = key % KEYS;
                let got = self.engine.get(&key).map(|v| v.id);
                self.model.check_lookup(&key, got, op);
            }
            Op::Contains { key } => {
                let key = key % KEYS;
                let got = self.engine.contains_key(&key);
                let want = self.model.visible(&key);
                if got && want.is_none() || !got && want.is_some() && self.model.exact {
                    panic!(
                        "divergence at step {step} ({op:?}): contains_key {got}, model {want:?}"
                    );
                }
                // Counted like a lookup.
                self.model.check_lookup(&key, want.filter(|_| got), op);
            }
            Op::Remove { key } => {
                let key = key % KEYS;
                self.engine.remove(&key);
                self.model.entries.remove(&key);
                let got = self.engine.get(&key).map(|v| v.id);
                self.model.check_lookup(&key, got, &("get right after", op));
            }
            Op::GetOrInsert { key, ttl, gens, during } => {
                let key = key % KEYS;
                let v = self.fresh();
                let id = v.id;
                let side = self.fresh(); // a value for `During::Insert*`
                let (opts, d, raw) = self.options(ttl, gens);
                // A caller under a generation already retired computes for itself: it neither
                // stores nor drops what is stored for the key (it must not displace a live
                // computation, nor drop a value such a computation stores meanwhile).
                let stale = !self.model.gens_live(&raw);
                let mut ran = false;
                let mut keep = !stale;
                let Run { engine, clock, model, gens: issued, .. } = &mut *self;
                let compute = || {
                    ran = true;
                    // The computation runs only on a miss.
                    model.check_lookup(&key, None, op);
                    if let Some(what) = during {
                        keep = during_compute(engine, clock, model, issued, key, what, side, op)
                            && keep;
                    }
                    v
                };
                let got = match (ttl, gens) {
                    (Ttl::Never, Gens::None) => engine.get_or_insert_with(key, compute),
                    _ => engine.get_or_insert_with_options(key, opts, compute),
                }
                .id;
                if ran {
                    if got != id {
                        panic!("step {step} ({op:?}): computed {id} but returned {got}");
                    }
                    // The leader stores its value unless the TTL is zero or it was detached.
                    if keep && d != Some(Duration::ZERO) {
                        self.model.store(key, id, d, raw, 1);
                    }
                } else {
                    if got == id {
                        panic!("step {step} ({op:?}): returned the fresh value without computing");
                    }
                    self.model.check_lookup(&key, Some(got), op);
                }
            }
            Op::TryInsert { key, ttl, gens, fail } => {
                let key = key % KEYS;
                let v = self.fresh();
                let id = v.id;
                let (opts, d, raw) = self.options(ttl, gens);
                let stale = !self.model.gens_live(&raw); // see `Op::GetOrInsert`
                let mut ran = false;
                let r: Result<Val, ()> = self.engine.get_or_try_insert_with_ref(
                    &key,
                    opts,
                    |k| *k,
                    || {
                        ran = true;
                        if fail {
                            Err(())
                        } else {
                            Ok(v)
                        }
                    },
                );
                match r {
                    Ok(got) => self.computed(step, op, key, ran, got.id, id, d, raw, stale),
                    Err(()) => {
                        if !ran {
                            panic!("step {step} ({op:?}): an error without a computation");
                        }
                        // A miss; nothing stored, nothing dropped.
                        self.model.check_lookup(&key, None, op);
                    }
                }
            }
            Op::NewGeneration => {
                let g = self.engine.new_generation();
                if !self.model.issued.insert(g.id()) {
                    panic!("step {step}: generation id {} issued twice", g.id());
                }
                if !self.engine.is_live(g) {
                    panic!("step {step}: a new generation {} is not live", g.id());
                }
                self.gens.push(g);
            }
            Op::Retire { gen } => {
                let g = self.gens[usize::from(gen) % self.gens.len()];
                self.engine.retire(g);
                self.model.retired.insert(g.id());
            }
            Op::Advance(s) => {
                if let Some(d) = self.model.advance(s.duration()) {
                    self.clock.advance(d);
                }
            }
            Op::Flush => {
                self.engine.flush();
                self.check_flushed(step, op);
            }
            Op::Maintain => {
                self.engine.run_maintenance();
                self.model.maintain();
                self.check_flushed(step, op);
                let cap = self.model.capacity;
                let w = self.engine.weighted_size();
                if w > cap {
                    panic!("step {step}: weighted_size {w} over capacity {cap} after maintenance");
                }
            }
            Op::Clear => {
                self.engine.clear();
                self.model.entries.clear();
                check_eq!(self.engine.len(), 0, step, op, "len() after clear");
                check_eq!(self.values_held(), 0, step, op, "values alive after clear");
            }
        }
        // Generations: live exactly when the model has not retired them.
        for &g in &self.gens {
            let want = !self.model.retired.contains(&g.id());
            check_eq!(self.engine.is_live(g), want, step, op, "is_live");
        }
        check_eq!(self.clock.now().as_nanos() as u64, self.model.now, step, op, "clock");
    }

    /// Checks a single-flight lookup that returned `got`; `ran` says whether the computation
    /// (which would have returned `fresh`) ran.
    #[allow(clippy::too_many_arguments)]
    fn computed(
        &mut self,
        step: usize,
        op: &Op,
        key: u8,
        ran: bool,
        got: u64,
        fresh: u64,
        ttl: Option<Duration>,
        gens: [u64; 2],
        stale: bool,
    ) {
        if ran {
            if got != fresh {
                panic!("step {step} ({op:?}): computed {fresh} but returned {got}");
            }
            // A miss: allowed only where the model has nothing visible (or with evictions).
            self.model.check_lookup(&key, None, op);
            // The leader stores its value unless the TTL is zero (then nothing is touched), or
            // its generations were retired before the call (then it computed for itself and
            // touched nothing either).
            if ttl != Some(Duration::ZERO) && !stale {
                self.model.store(key, fresh, ttl, gens, 1);
            }
        } else {
            if got == fresh {
                panic!("step {step} ({op:?}): returned the fresh value without computing");
            }
            self.model.check_lookup(&key, Some(got), op);
        }
    }
}

/// Runs `what` inside the computation of `key`; returns whether the computation's value is
/// still to be stored (as far as the model knows: its generations are checked at the store).
#[allow(clippy::too_many_arguments)]
fn during_compute(
    engine: &Engine<u8, Val>,
    clock: &ManualClock,
    model: &mut Model<u8>,
    issued: &[Generation],
    key: u8,
    what: During,
    side: Val,
    op: &Op,
) -> bool {
    let keep = match what {
        During::Remove => {
            engine.remove(&key);
            model.entries.remove(&key);
            false
        }
        During::Insert(ttl) => {
            let id = side.id;
            match ttl.duration() {
                None => engine.insert(key, side),
                Some(d) => engine.insert_with_ttl(key, side, d),
            }
            model.store(key, id, ttl.duration(), [0, 0], 1);
            false
        }
        During::InsertOther(k) => {
            let (k, id) = (k % KEYS, side.id);
            engine.insert(k, side);
            model.store(k, id, None, [0, 0], 1);
            k != key
        }
        During::Retire(g) => {
            let g = issued[usize::from(g) % issued.len()];
            engine.retire(g);
            model.retired.insert(g.id());
            true
        }
        During::Clear => {
            engine.clear();
            model.entries.clear();
            false
        }
        During::Advance(s) => {
            if let Some(d) = model.advance(s.duration()) {
                clock.advance(d);
            }
            true
        }
    };
    // The running computation is never visible; whatever the operation left is.
    let got = engine.get(&key).map(|v| v.id);
    model.check_lookup(&key, got, &("get inside the computation", op));
    keep
}

fuzz_target!(|input: Input| {
    let Input { config, ops } = input;
    let clock = ManualClock::new();
    let (capacity, exact) = match config.tiny {
        None => (4 * u64::from(KEYS), true),
        Some(n) => (u64::from(n % 8), false),
    };
    let engine = Engine::builder()
        .max_capacity(capacity)
        .shards(1 << (config.shards % 3))
        .workers(if config.two_workers { 2 } else { 1 })
        .tick(TICK)
        .clock(clock.clone())
        .build()
        .expect("engine builds");
    let mut run = Run {
        gens: (0..FIRST_GENS).map(|_| engine.new_generation()).collect(),
        engine,
        clock,
        model: Model::new(capacity, exact),
        token: Arc::new(()),
        next_id: 0,
    };
    for g in &run.gens {
        run.model.issued.insert(g.id());
    }
    for (step, op) in ops.iter().enumerate() {
        run.step(step, op);
        validate(run.engine.validate(), step, op);
    }
    // Everything goes when the engine does.
    run.engine.flush();
    run.check_flushed(ops.len(), &Op::Flush);
    let token = run.token.clone();
    drop(run);
    if Arc::strong_count(&token) != 1 {
        panic!("{} values still alive after the engine was dropped", Arc::strong_count(&token) - 1);
    }
});
