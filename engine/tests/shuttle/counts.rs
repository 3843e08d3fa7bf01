//! A generation's count of entries (`generation_entries`) includes the stores on their way to
//! the worker, and stays exact when those stores are superseded, removed, cleared, refused
//! after a retirement, or dropped by a shutdown. (The count once started only when the worker
//! applied a store: the memoizer, which drops the versions of receivers whose count is 0, lost
//! results still in a mailbox.)

use super::*;

fn under(g: memokit_engine::Generation) -> InsertOptions {
    InsertOptions::new().generations(g, None)
}

#[test]
fn a_store_is_counted_from_the_moment_it_returns() {
    check(|| {
        let e = engine(100, 2, 2);
        let g = e.new_generation();
        // How many of the writer's keys have been stored.
        let stored = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (e, stored) = (e.clone(), stored.clone());
            thread::spawn(move || {
                for k in 0..2u64 {
                    e.insert_with_options(k, k, under(g));
                    assert_eq!(e.generation_entries(g), k + 1, "applied or not, counted once");
                    stored.store(k as usize + 1, Ordering::SeqCst);
                }
                // A new value for key 0: the one it replaces counts until a worker drops it.
                e.insert_with_options(0, 10, under(g));
                assert!((2..=3).contains(&e.generation_entries(g)));
            })
        };
        let reader = spawn_with(&e, move |e| {
            for _ in 0..2 {
                let n = stored.load(Ordering::SeqCst) as u64;
                assert!(e.generation_entries(g) >= n, "a store that had returned");
            }
        });
        writer.join().unwrap();
        reader.join().unwrap();
        e.flush();
        assert_eq!(e.generation_entries(g), 2);
        e.retire(g);
        e.run_maintenance();
        assert_eq!(e.generation_entries(g), 0);
        e.validate().unwrap();
    });
}

#[test]
fn counts_stay_exact_when_stores_race_removes_clears_and_retirement() {
    check(|| {
        let e = engine(100, 2, 2);
        let (g, h) = (e.new_generation(), e.new_generation());
        let writer = spawn_with(&e, move |e| {
            e.insert_with_options(0, 0, under(g));
            e.insert_with_options(1, 1, under(g));
            e.insert_with_options(2, 2, under(h));
            e.insert_with_options(0, 10, under(g));
        });
        let remover = spawn_with(&e, move |e| {
            e.remove(&0);
            e.retire(h);
            e.clear();
        });
        writer.join().unwrap();
        remover.join().unwrap();
        e.run_maintenance(); // applies everything, then reclaims what `h` left
        let visible = (0..2u64).filter(|k| e.get(k).is_some()).count() as u64;
        assert_eq!(e.generation_entries(g), visible, "resident under g");
        assert_eq!(e.generation_entries(h), 0, "retired and reclaimed");
        assert_eq!(e.len(), visible);
        e.validate().unwrap();
        e.shutdown();
        assert_eq!(e.generation_entries(g), 0, "dropped by the shutdown");
    });
}

#[test]
fn a_shutdown_racing_stores_gives_their_counts_back() {
    check(|| {
        let e = engine(100, 2, 2);
        let g = e.new_generation();
        let writer = spawn_with(&e, move |e| {
            for k in 0..3u64 {
                e.insert_with_options(k, k, under(g));
            }
        });
        e.shutdown();
        writer.join().unwrap();
        assert_eq!(e.generation_entries(g), 0, "nothing is kept after shutdown");
    });
}

/// Two callers retire one generation while a third stores and computes under it and a fourth
/// clears: once both retirements have returned nothing of the generation is served, and after
/// one maintenance step nothing of it is left (entries, counts, weight), within capacity.
#[test]
fn two_retirements_racing_stores_computations_and_clear_leave_nothing_behind() {
    check(|| {
        let e = engine(3, 2, 2);
        let g = e.new_generation();
        e.insert(100, 100);
        let writer = spawn_with(&e, move |e| {
            for k in 0..3u64 {
                e.insert_with_options(k, k, under(g));
            }
            assert_eq!(e.get_or_insert_with_options(5, under(g), || 50), 50);
        });
        let retirers: Vec<_> = (0..2).map(|_| spawn_with(&e, move |e| e.retire(g))).collect();
        let clearer = spawn_with(&e, move |e| e.clear());
        for r in retirers {
            r.join().unwrap();
        }
        for k in [0, 1, 2, 5] {
            assert_eq!(e.get(&k), None, "key {k} of a retired generation");
        }
        writer.join().unwrap();
        clearer.join().unwrap();
        e.run_maintenance();
        let s = e.stats();
        assert_eq!(e.generation_entries(g), 0, "{s:?}");
        let live = u64::from(e.get(&100).is_some());
        assert_eq!((e.len(), s.entries, s.weight), (live, live, live), "{s:?}");
        e.validate().unwrap();
    });
}
