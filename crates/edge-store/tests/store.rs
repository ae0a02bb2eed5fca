//! Store behaviour: persistence, migrations, commits, group commit, watchers, usage and GC.

mod common;

use common::*;
use edge_spec::{Allocation, ClientStatus, DesiredStatus, EvalStatus};
use edge_store::{Batch, GcConfig, Options, SCHEMA_VERSION, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Store>();
}

#[tokio::test]
async fn reopen_keeps_objects_versions_and_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/edge.db");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.index(), 0);
    let i1 = put(
        &store,
        Batch {
            jobs: vec![job("web", 0)],
            nodes: vec![node("n1")],
            ..Batch::default()
        },
    )
    .await;
    let i2 = put(
        &store,
        Batch {
            jobs: vec![job("web", 1)],
            allocs: vec![alloc("a1", "web", "n1", 8080)],
            evals: vec![eval("e1", "web", EvalStatus::Complete, 0)],
            ..Batch::default()
        },
    )
    .await;
    assert_eq!((i1, i2), (1, 2));
    let before = store.read(|s| {
        (
            s.index,
            s.jobs.clone(),
            s.nodes.clone(),
            s.allocs.clone(),
            s.evals.clone(),
            s.usage.clone(),
        )
    });
    let events = store.events_after(0, 100).await.unwrap();
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.index, e.topic.as_str(), e.key.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (1, "job", "web"),
            (1, "node", "n1"),
            (2, "job", "web"),
            (2, "allocation", "a1"),
            (2, "evaluation", "e1"),
        ]
    );
    assert_eq!(events[3].payload["node_id"], "n1");
    assert_eq!(events[3].payload["modify_index"], 2);
    assert_eq!(store.events_after(1, 2).await.unwrap().len(), 2);
    assert!(store.events_after(2, 10).await.unwrap().is_empty());
    drop(store);

    let store = Store::open(&path).unwrap();
    assert_eq!(store.index(), 2);
    let after = store.read(|s| {
        (
            s.index,
            s.jobs.clone(),
            s.nodes.clone(),
            s.allocs.clone(),
            s.evals.clone(),
            s.usage.clone(),
        )
    });
    assert_eq!(before, after);
    let web = &after.1["web"];
    assert_eq!((web.version, web.create_index, web.modify_index), (1, 1, 2));
    assert_eq!(
        after.5["n1"].ports.iter().copied().collect::<Vec<_>>(),
        [8080]
    );

    let versions = store.job_versions("web").await.unwrap();
    assert_eq!(
        versions.iter().map(|j| j.version).collect::<Vec<_>>(),
        [1, 0]
    );
    assert_eq!(
        store
            .job_version("web", 0)
            .await
            .unwrap()
            .unwrap()
            .modify_index,
        1
    );
    assert!(store.job_version("web", 7).await.unwrap().is_none());

    // The event history is memory's: a restart starts it afresh, as
    // Nomad's event buffer does.
    assert!(store.events_after(0, 100).await.unwrap().is_empty());

    // The index keeps counting from where it was.
    let i3 = put(
        &store,
        Batch {
            delete_nodes: vec!["n1".into()],
            ..Batch::default()
        },
    )
    .await;
    assert_eq!(i3, 3);
}

/// One job id in two namespaces: two rows, two version histories, and the
/// namespace itself, all as they were after a reopen; purging one leaves
/// the other.
#[tokio::test]
async fn the_same_job_id_in_two_namespaces_is_two_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.db");
    let store = Store::open(&path).unwrap();
    let in_prod = |version| {
        let mut j = job("web", version);
        j.namespace = "prod".into();
        j
    };
    let mut a = alloc("a1", "web", "n1", 8080);
    a.namespace = "prod".into();
    put(
        &store,
        Batch {
            namespaces: vec![edge_spec::Namespace {
                name: "prod".into(),
                description: "production".into(),
                create_index: 0,
                modify_index: 0,
            }],
            jobs: vec![job("web", 0), in_prod(0)],
            nodes: vec![node("n1")],
            allocs: vec![a],
            ..Batch::default()
        },
    )
    .await;
    put(
        &store,
        Batch {
            jobs: vec![in_prod(1)],
            ..Batch::default()
        },
    )
    .await;
    drop(store);

    let store = Store::open(&path).unwrap();
    store.read(|s| {
        assert_eq!(s.jobs["web"].namespace, "default");
        assert_eq!(s.jobs["prod/web"].version, 1);
        assert_eq!(s.namespaces["prod"].description, "production");
        assert_eq!(s.job_allocs("prod/web").len(), 1);
        assert!(s.job_allocs("web").is_empty());
    });
    assert_eq!(store.job_versions("web").await.unwrap().len(), 1);
    assert_eq!(store.job_versions("prod/web").await.unwrap().len(), 2);
    put(
        &store,
        Batch {
            purge_jobs: vec!["prod/web".into()],
            ..Batch::default()
        },
    )
    .await;
    assert!(store.job_versions("prod/web").await.unwrap().is_empty());
    assert_eq!(store.job_versions("web").await.unwrap().len(), 1);
    put(
        &store,
        Batch {
            delete_namespaces: vec!["prod".into()],
            ..Batch::default()
        },
    )
    .await;
    drop(store);
    let store = Store::open(&path).unwrap();
    store.read(|s| {
        assert!(s.namespaces.is_empty());
        assert!(s.namespace("default").is_some());
        assert_eq!(s.jobs.len(), 1);
    });
}

#[tokio::test]
async fn purge_and_deletes_write_delete_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("edge.db")).unwrap();
    put(
        &store,
        Batch {
            jobs: vec![job("web", 0)],
            nodes: vec![node("n1")],
            evals: vec![eval("e1", "web", EvalStatus::Pending, 0)],
            ..Batch::default()
        },
    )
    .await;
    put(
        &store,
        Batch {
            jobs: vec![job("web", 1)],
            ..Batch::default()
        },
    )
    .await;
    let i = put(
        &store,
        Batch {
            purge_jobs: vec!["web".into()],
            delete_nodes: vec!["n1".into()],
            delete_evals: vec!["e1".into()],
            ..Batch::default()
        },
    )
    .await;
    store.read(|s| {
        assert!(s.jobs.is_empty() && s.nodes.is_empty() && s.evals.is_empty());
    });
    assert!(store.job_versions("web").await.unwrap().is_empty());
    let ev = store.events_after(i - 1, 10).await.unwrap();
    assert_eq!(ev.len(), 3);
    assert!(
        ev.iter()
            .all(|e| e.kind == "deleted" && e.payload.is_null())
    );
    drop(store);
    let store = Store::open(&dir.path().join("edge.db")).unwrap();
    store.read(|s| assert!(s.jobs.is_empty() && s.nodes.is_empty() && s.evals.is_empty()));
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.db");
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 3)
        .unwrap();
    drop(conn);
    let err = Store::open(&path).err().unwrap();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported, .. }
            if found == SCHEMA_VERSION + 3 && supported == SCHEMA_VERSION),
        "{err}"
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION + 3);
}

#[tokio::test]
async fn an_existing_current_file_is_not_migrated_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.db");
    let store = Store::open(&path).unwrap();
    put(
        &store,
        Batch {
            nodes: vec![node("n1")],
            ..Batch::default()
        },
    )
    .await;
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.read(|s| s.nodes.len()), 1);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
}

#[derive(Debug)]
enum AppError {
    Rejected(&'static str),
    Store(StoreError),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        AppError::Store(e)
    }
}

#[tokio::test]
async fn a_closure_error_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("edge.db")).unwrap();
    put(
        &store,
        Batch {
            jobs: vec![job("web", 0)],
            ..Batch::default()
        },
    )
    .await;
    let res = store
        .commit(|_| -> Result<(Batch, ()), AppError> { Err(AppError::Rejected("no")) })
        .await;
    assert!(matches!(res, Err(AppError::Rejected("no"))));
    assert_eq!(store.index(), 1);
    assert_eq!(store.read(|s| s.index), 1);
    assert_eq!(store.events_after(1, 10).await.unwrap().len(), 0);

    // An empty batch does not bump the index either.
    let ((), i) = store
        .commit(|_| Ok::<_, StoreError>((Batch::default(), ())))
        .await
        .unwrap();
    assert_eq!((i, store.index()), (1, 1));
}

#[tokio::test]
async fn a_panicking_closure_fails_its_caller_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("edge.db")).unwrap();
    let res = store
        .commit(|_| -> Result<(Batch, ()), StoreError> { panic!("closure bug") })
        .await;
    assert!(matches!(res, Err(StoreError::WriterGone)));
    assert_eq!(
        put(
            &store,
            Batch {
                nodes: vec![node("n1")],
                ..Batch::default()
            }
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_are_gap_free_and_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("edge.db")).unwrap());
    put(
        &store,
        Batch {
            jobs: vec![job("counter", 0)],
            ..Batch::default()
        },
    )
    .await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .commit(|s| {
                    let mut j = s.jobs["counter"].clone();
                    let n: u64 = j.meta.get("n").map_or(0, |v| v.parse().unwrap());
                    j.meta.insert("n".into(), (n + 1).to_string());
                    Ok::<_, StoreError>((
                        Batch {
                            jobs: vec![j],
                            ..Batch::default()
                        },
                        n,
                    ))
                })
                .await
                .unwrap()
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    results.sort_by_key(|r| r.1);
    let indexes: Vec<u64> = results.iter().map(|r| r.1).collect();
    assert_eq!(indexes, (2..=201).collect::<Vec<_>>());
    // Each closure saw exactly the batches committed before its own.
    for (seen, index) in &results {
        assert_eq!(*seen, index - 2);
    }
    assert_eq!(store.index(), 201);
    let n = store.read(|s| s.jobs["counter"].meta["n"].clone());
    assert_eq!(n, "200");
    assert_eq!(store.events_after(1, 1000).await.unwrap().len(), 200);
    let path = store.db_path().to_path_buf();
    drop(tasks_done(store));
    let store = Store::open(&path).unwrap();
    assert_eq!(store.index(), 201);
    assert_eq!(store.read(|s| s.jobs["counter"].meta["n"].clone()), "200");
}

/// More reads than reader threads, beside commits: each queues for a free
/// reader and sees at least what had committed when it was asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_beside_commits_are_all_answered() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        readers: 2,
        ..Options::default()
    };
    let store = Arc::new(Store::open_with(&dir.path().join("edge.db"), &opts).unwrap());
    put(
        &store,
        Batch {
            jobs: vec![job("web", 0)],
            ..Batch::default()
        },
    )
    .await;
    let mut tasks = Vec::new();
    for v in 1..=50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            put(
                &store,
                Batch {
                    jobs: vec![job("web", v)],
                    ..Batch::default()
                },
            )
            .await;
            let versions = store.job_versions("web").await.unwrap();
            assert!(versions.iter().any(|j| j.version == v));
            assert!(store.job_version("web", v).await.unwrap().is_some());
            let events = store.events_after(0, 1000).await.unwrap();
            assert!(events.iter().any(|e| e.payload["version"] == v));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.job_versions("web").await.unwrap().len(), 51);
    drop(tasks_done(store));
}

fn tasks_done(store: Arc<Store>) -> Store {
    Arc::try_unwrap(store).ok().expect("all tasks finished")
}

#[tokio::test]
async fn wait_for_wakes_on_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("edge.db")).unwrap());
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            let start = std::time::Instant::now();
            (
                store.wait_for(0, Duration::from_secs(20)).await,
                start.elapsed(),
            )
        })
    };
    let mut sub = store.subscribe();
    tokio::task::yield_now().await;
    put(
        &store,
        Batch {
            nodes: vec![node("n1")],
            ..Batch::default()
        },
    )
    .await;
    let (index, waited) = waiter.await.unwrap();
    assert_eq!(index, 1);
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert!(sub.has_changed().unwrap());
    assert_eq!(*sub.borrow_and_update(), 1);
    // Already past: returns at once.
    assert_eq!(store.wait_for(0, Duration::from_secs(20)).await, 1);
}

#[tokio::test(start_paused = true)]
async fn wait_for_times_out_with_the_current_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("edge.db")).unwrap();
    let start = tokio::time::Instant::now();
    assert_eq!(store.wait_for(0, Duration::from_secs(30)).await, 0);
    assert!(start.elapsed() >= Duration::from_secs(30));
}

/// A node's watch wakes for commits that touch its allocations only, and
/// ends when the node is deleted. Real time: commits run on the store's
/// own thread, which paused time would not wait for.
#[tokio::test]
async fn wait_for_node_wakes_only_for_its_own_allocations() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("edge.db")).unwrap());
    put(
        &store,
        Batch {
            nodes: vec![node("n1"), node("n2")],
            allocs: vec![alloc("a1", "web", "n1", 8080)],
            ..Batch::default()
        },
    )
    .await;
    let at = store.read(|s| s.node_alloc_index("n1"));
    assert_eq!(at, 1);
    // Already past: at once.
    assert_eq!(
        store.wait_for_node("n1", 0, Duration::from_secs(30)).await,
        1
    );
    let watch = |node: &'static str| {
        let store = store.clone();
        tokio::spawn(async move { store.wait_for_node(node, 1, Duration::from_secs(30)).await })
    };
    let n1 = watch("n1");
    let n2 = watch("n2");
    tokio::task::yield_now().await;
    // Another node's allocation: n1's watch sleeps on, n2's wakes.
    let i = put(
        &store,
        Batch {
            allocs: vec![alloc("a2", "web", "n2", 8080)],
            ..Batch::default()
        },
    )
    .await;
    assert_eq!(n2.await.unwrap(), i);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!n1.is_finished(), "n1 woke for n2's allocation");
    // Nor for its agent's own report.
    let mut running = alloc("a1", "web", "n1", 8080);
    running.client_status = ClientStatus::Running;
    put(
        &store,
        Batch {
            allocs: vec![running.clone()],
            ..Batch::default()
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!n1.is_finished(), "n1 woke for its agent's report");
    let mut stopped = running;
    stopped.desired_status = DesiredStatus::Stop;
    let i = put(
        &store,
        Batch {
            allocs: vec![stopped],
            ..Batch::default()
        },
    )
    .await;
    assert_eq!(n1.await.unwrap(), i);
    // Nothing for it: the timeout, with the node's index.
    let start = tokio::time::Instant::now();
    assert_eq!(
        store
            .wait_for_node("n2", 99, Duration::from_millis(200))
            .await,
        2
    );
    assert!(start.elapsed() >= Duration::from_millis(200));
    // A deleted node's watch ends at once.
    let gone = watch("n2");
    tokio::task::yield_now().await;
    put(
        &store,
        Batch {
            delete_nodes: vec!["n2".into()],
            ..Batch::default()
        },
    )
    .await;
    let start = tokio::time::Instant::now();
    gone.await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(20));
}

/// What an agent's watch answer leans on: the jobs changed after an
/// index, and the index after which an allocation left a node's list.
#[tokio::test]
async fn changed_jobs_and_removed_allocations_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("edge.db")).unwrap();
    let i1 = put(
        &store,
        Batch {
            jobs: vec![job("web", 0), job("api", 0)],
            allocs: vec![
                alloc("a1", "web", "n1", 8080),
                alloc("a2", "api", "n1", 8081),
            ],
            ..Batch::default()
        },
    )
    .await;
    let i2 = put(
        &store,
        Batch {
            jobs: vec![job("web", 1)],
            ..Batch::default()
        },
    )
    .await;
    store.read(|s| {
        let after =
            |i: u64| -> Vec<String> { s.jobs_modified_after(i).map(|j| j.id.clone()).collect() };
        assert_eq!(after(0).len(), 2);
        assert_eq!(after(i1), ["web"]);
        assert!(after(i2).is_empty());
        assert!(s.node_removed_index("n1") <= i1, "nothing left n1 after i1");
    });
    let i3 = put(
        &store,
        Batch {
            purge_jobs: vec!["api".into()],
            ..Batch::default()
        },
    )
    .await;
    store.read(|s| {
        assert_eq!(s.node_removed_index("n1"), i3);
        assert_eq!(s.jobs_modified_after(0).count(), 1);
    });
    // Reopened: the same jobs by index; what left before is not known per
    // node any more, so every node's next answer lists its ids.
    let path = store.db_path().to_path_buf();
    drop(store);
    let store = Store::open(&path).unwrap();
    store.read(|s| {
        let ids: Vec<String> = s.jobs_modified_after(i1).map(|j| j.id.clone()).collect();
        assert_eq!(ids, ["web"]);
        assert_eq!(s.node_removed_index("n1"), i3 + 1);
        assert_eq!(s.node_removed_index("n9"), i3 + 1);
    });
}

#[tokio::test]
async fn usage_follows_live_allocations() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("edge.db")).unwrap();
    let a1 = alloc("a1", "web", "n1", 8080);
    let a2 = alloc("a2", "web", "n1", 8081);
    put(
        &store,
        Batch {
            allocs: vec![a1.clone(), a2.clone()],
            ..Batch::default()
        },
    )
    .await;
    store.read(|s| {
        let u = &s.usage["n1"];
        assert_eq!((u.cpu, u.memory, u.allocs), (200, 512, 2));
        assert_eq!(u.ports.iter().copied().collect::<Vec<_>>(), [8080, 8081]);
        assert_eq!(s.job_allocs("web").len(), 2);
        assert_eq!(s.node_allocs("n1").len(), 2);
    });

    // Running is still live; an update must not count it twice.
    let mut running = a1.clone();
    running.client_status = ClientStatus::Running;
    put(
        &store,
        Batch {
            allocs: vec![running.clone()],
            ..Batch::default()
        },
    )
    .await;
    store.read(|s| {
        assert_eq!(s.usage["n1"].allocs, 2);
        let listed: Vec<_> = s
            .node_allocs("n1")
            .iter()
            .map(|a| (a.id.as_str(), a.client_status))
            .collect();
        assert_eq!(
            listed,
            [("a1", ClientStatus::Running), ("a2", ClientStatus::Pending)],
            "the node's list holds the updated copy"
        );
    });

    // Terminal: resources freed, the alloc itself kept.
    let mut failed = a2.clone();
    failed.client_status = ClientStatus::Failed;
    put(
        &store,
        Batch {
            allocs: vec![failed],
            ..Batch::default()
        },
    )
    .await;
    store.read(|s| {
        let u = &s.usage["n1"];
        assert_eq!((u.cpu, u.allocs), (100, 1));
        assert_eq!(u.ports.iter().copied().collect::<Vec<_>>(), [8080]);
        assert_eq!(s.job_allocs("web").len(), 2);
    });

    // Moved to another node.
    let mut moved = running.clone();
    moved.node_id = "n2".into();
    put(
        &store,
        Batch {
            allocs: vec![moved.clone()],
            ..Batch::default()
        },
    )
    .await;
    store.read(|s| {
        assert!(!s.usage.contains_key("n1"));
        assert_eq!(s.usage["n2"].cpu, 100);
        assert_eq!(
            s.node_allocs("n1")
                .iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>(),
            ["a2"]
        );
        assert_eq!(s.node_allocs("n2").len(), 1);
    });

    // Desired stop frees it even while still running on the node.
    let mut stopping = moved;
    stopping.desired_status = DesiredStatus::Stop;
    put(
        &store,
        Batch {
            allocs: vec![stopping],
            ..Batch::default()
        },
    )
    .await;
    store.read(|s| assert!(s.usage.is_empty()));

    let path = store.db_path().to_path_buf();
    drop(store);
    let store = Store::open(&path).unwrap();
    store.read(|s| {
        assert!(s.usage.is_empty());
        assert_eq!(s.allocs.len(), 2);
    });
}

#[tokio::test]
async fn a_failed_transaction_fails_the_group_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.db");
    let opts = Options {
        busy_timeout: Duration::from_millis(50),
        ..Options::default()
    };
    let store = Store::open_with(&path, &opts).unwrap();
    put(
        &store,
        Batch {
            nodes: vec![node("n1")],
            ..Batch::default()
        },
    )
    .await;

    let locker = rusqlite::Connection::open(&path).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let res = store
        .commit(|_| {
            Ok::<_, AppError>((
                Batch {
                    nodes: vec![node("n2")],
                    ..Batch::default()
                },
                (),
            ))
        })
        .await;
    assert!(
        matches!(res, Err(AppError::Store(StoreError::Sqlite { .. }))),
        "{res:?}"
    );
    assert_eq!(store.index(), 1);
    store.read(|s| {
        assert_eq!(s.index, 1);
        assert!(!s.nodes.contains_key("n2"));
    });
    locker.execute_batch("ROLLBACK").unwrap();

    // The writer's own view was reset too: the next closure sees no n2.
    let (saw_n2, i) = store
        .commit(|s| {
            let saw = s.nodes.contains_key("n2");
            Ok::<_, StoreError>((
                Batch {
                    nodes: vec![node("n3")],
                    ..Batch::default()
                },
                saw,
            ))
        })
        .await
        .unwrap();
    assert!(!saw_n2);
    assert_eq!(i, 2);
}

/// Groups staged while an earlier one is being written fail with it, and
/// the writer's state goes back to the disk's; so does a failed GC's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_staged_on_a_failed_write_fail_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.db");
    let opts = Options {
        busy_timeout: Duration::from_millis(50),
        ..Options::default()
    };
    let store = Arc::new(Store::open_with(&path, &opts).unwrap());
    let mut done = alloc("done", "web", "n1", 1);
    done.client_status = ClientStatus::Complete;
    done.desired_status = DesiredStatus::Stop;
    put(
        &store,
        Batch {
            nodes: vec![node("n1")],
            allocs: vec![done],
            ..Batch::default()
        },
    )
    .await;

    let locker = rusqlite::Connection::open(&path).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .commit(move |_| {
                    Ok::<_, StoreError>((
                        Batch {
                            nodes: vec![node(&format!("x{i}"))],
                            ..Batch::default()
                        },
                        (),
                    ))
                })
                .await
        }));
    }
    for t in tasks {
        let res = t.await.unwrap();
        assert!(matches!(res, Err(StoreError::Sqlite { .. })), "{res:?}");
    }
    let gc = GcConfig {
        alloc_age: Duration::ZERO,
        ..GcConfig::default()
    };
    let res = store.gc(&gc, wall_ms()).await;
    assert!(matches!(res, Err(StoreError::Sqlite { .. })), "{res:?}");
    assert_eq!(store.index(), 1);
    locker.execute_batch("ROLLBACK").unwrap();

    let (seen, i) = store
        .commit(|s| {
            let seen = (
                s.nodes.keys().cloned().collect::<Vec<_>>(),
                s.allocs.contains_key("done"),
            );
            Ok::<_, StoreError>((
                Batch {
                    nodes: vec![node("n2")],
                    ..Batch::default()
                },
                seen,
            ))
        })
        .await
        .unwrap();
    assert_eq!(seen, (vec!["n1".to_string()], true));
    assert_eq!(i, 2);
    let report = store.gc(&gc, wall_ms()).await.unwrap();
    assert_eq!(report.allocs, 1);
    store.read(|s| assert!(!s.allocs.contains_key("done")));
}

#[tokio::test]
async fn gc_removes_old_history_from_disk_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("edge.db")).unwrap();
    let hour = 3_600_000;
    let now = 10 * hour;
    for v in 0..15 {
        put(
            &store,
            Batch {
                jobs: vec![job("web", v)],
                ..Batch::default()
            },
        )
        .await;
    }
    let mut old_done = alloc("old-done", "web", "n1", 1);
    old_done.client_status = ClientStatus::Complete;
    old_done.modify_time = now - 2 * hour;
    let mut old_stopped = alloc("old-stopped", "web", "n1", 2);
    old_stopped.desired_status = DesiredStatus::Stop;
    old_stopped.modify_time = now - 2 * hour;
    let mut stopping_running = alloc("stopping-running", "web", "n1", 3);
    stopping_running.desired_status = DesiredStatus::Stop;
    stopping_running.client_status = ClientStatus::Running;
    stopping_running.modify_time = now - 2 * hour;
    let mut new_failed = alloc("new-failed", "web", "n1", 4);
    new_failed.client_status = ClientStatus::Failed;
    new_failed.modify_time = now - 1000;
    let mut old_live = alloc("old-live", "web", "n1", 5);
    old_live.client_status = ClientStatus::Running;
    old_live.modify_time = now - 5 * hour;
    put(
        &store,
        Batch {
            allocs: vec![
                old_done,
                old_stopped,
                stopping_running,
                new_failed,
                old_live,
            ],
            evals: vec![
                eval("old-complete", "web", EvalStatus::Complete, now - 2 * hour),
                eval("old-blocked", "web", EvalStatus::Blocked, now - 2 * hour),
                eval("old-pending", "web", EvalStatus::Pending, now - 2 * hour),
                eval("new-failed", "web", EvalStatus::Failed, now - 1000),
            ],
            ..Batch::default()
        },
    )
    .await;
    let cfg = GcConfig {
        keep_versions: 3,
        keep_events: 5,
        ..GcConfig::default()
    };
    let report = store.gc(&cfg, now).await.unwrap();
    // Version 0 stays past `keep_versions`: the allocations kept run it.
    assert_eq!(report.versions, 11);
    assert_eq!(report.allocs, 2);
    assert_eq!(report.evals, 1);
    // 15 job events + 5 allocs + 4 evals, newest 5 kept; none older than the
    // hour (event times are the real clock, far past `now`).
    assert_eq!(report.events, 24 - 5);

    let versions: Vec<u64> = store
        .job_versions("web")
        .await
        .unwrap()
        .iter()
        .map(|j| j.version)
        .collect();
    assert_eq!(versions, [14, 13, 12, 0]);
    let check = |s: &edge_store::State| {
        let mut allocs: Vec<&str> = s.allocs.keys().map(String::as_str).collect();
        allocs.sort();
        assert_eq!(allocs, ["new-failed", "old-live", "stopping-running"]);
        assert_eq!(s.job_allocs("web").len(), 3);
        let evals: Vec<&str> = s.evals.keys().map(String::as_str).collect();
        assert_eq!(evals, ["new-failed", "old-blocked", "old-pending"]);
        assert_eq!(s.usage["n1"].allocs, 1);
    };
    store.read(check);
    assert_eq!(store.events_after(0, 100).await.unwrap().len(), 5);
    assert_eq!(store.index(), 16, "gc does not bump the index");

    // Events past their age go even when fewer than `keep_events`.
    let far_future = i64::MAX / 2;
    let forever = Duration::from_millis(far_future as u64);
    let cfg2 = GcConfig {
        alloc_age: forever,
        eval_age: forever,
        ..cfg.clone()
    };
    let report = store.gc(&cfg2, far_future).await.unwrap();
    assert_eq!((report.events, report.allocs, report.evals), (5, 0, 0));

    let path = store.db_path().to_path_buf();
    drop(store);
    let store = Store::open(&path).unwrap();
    store.read(check);
}

#[tokio::test]
async fn gc_keeps_every_version_an_allocation_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("edge.db")).unwrap();
    for v in 0..4 {
        put(
            &store,
            Batch {
                jobs: vec![job("web", v)],
                ..Batch::default()
            },
        )
        .await;
    }
    let mut running = alloc("running", "web", "n1", 1);
    running.job_version = 1;
    running.client_status = ClientStatus::Running;
    let mut stopping = alloc("stopping", "web", "n1", 2);
    stopping.job_version = 2;
    stopping.desired_status = DesiredStatus::Stop;
    stopping.client_status = ClientStatus::Running;
    put(
        &store,
        Batch {
            allocs: vec![running, stopping],
            ..Batch::default()
        },
    )
    .await;
    let cfg = GcConfig {
        keep_versions: 1,
        ..GcConfig::default()
    };
    let report = store.gc(&cfg, wall_ms()).await.unwrap();
    assert_eq!(report.versions, 1, "only version 0 is unused");
    for v in [1, 2, 3] {
        assert!(
            store.job_version("web", v).await.unwrap().is_some(),
            "version {v}"
        );
    }
    assert!(store.job_version("web", 0).await.unwrap().is_none());
}

#[tokio::test]
async fn writes_keep_at_most_max_versions_besides_those_still_running() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        max_versions: 3,
        ..Options::default()
    };
    let store = Store::open_with(&dir.path().join("edge.db"), &opts).unwrap();
    for v in 0..10 {
        let mut batch = Batch {
            jobs: vec![job("web", v)],
            ..Batch::default()
        };
        if v == 1 {
            let mut a = alloc("runs-v1", "web", "n1", 1);
            a.job_version = 1;
            a.client_status = ClientStatus::Running;
            batch.allocs.push(a);
        }
        put(&store, batch).await;
    }
    let versions: Vec<u64> = store
        .job_versions("web")
        .await
        .unwrap()
        .iter()
        .map(|j| j.version)
        .collect();
    assert_eq!(versions, [9, 8, 7, 1]);
}

#[tokio::test]
async fn gc_keeps_the_file_bounded_over_many_updates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("edge.db")).unwrap();
    let cfg = GcConfig {
        keep_events: 1_000,
        ..GcConfig::default()
    };
    let mut peak = 0;
    for i in 0..10_000u64 {
        put(
            &store,
            Batch {
                jobs: vec![job("web", i)],
                ..Batch::default()
            },
        )
        .await;
        if (i + 1) % 1_000 == 0 {
            peak = peak.max(disk_size(&store));
            store.gc(&cfg, wall_ms()).await.unwrap();
        }
    }
    let after = disk_size(&store);
    assert!(peak < 4_000_000, "db+wal peaked at {peak} bytes");
    assert!(after < 1_000_000, "db+wal is {after} bytes after gc");
    assert_eq!(store.job_versions("web").await.unwrap().len(), 10);
    assert_eq!(store.events_after(0, 100_000).await.unwrap().len(), 1_000);
    assert_eq!(store.index(), 10_000);
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn acl_policies_tokens_and_bootstrap_survive_reopen_and_stay_out_of_events() {
    use edge_spec::acl::{AclPolicy, AclToken, Policy, TokenType};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.db");
    let store = Store::open(&path).unwrap();
    let token = |id: &str| AclToken {
        accessor_id: id.to_string(),
        name: format!("{id} token"),
        token_type: TokenType::Client,
        policies: vec!["readonly".to_string()],
        secret_hash: "ab".repeat(32),
        create_time: 1,
        expiration_time: Some(10),
        create_index: 0,
        modify_index: 0,
    };
    let i1 = put(
        &store,
        Batch {
            acl_policies: vec![AclPolicy {
                name: "readonly".to_string(),
                description: String::new(),
                rules: "node { policy = \"read\" }".to_string(),
                parsed: Policy::default(),
                create_index: 0,
                modify_index: 0,
            }],
            acl_tokens: vec![token("t1"), token("t2")],
            acl_bootstrap: true,
            ..Batch::default()
        },
    )
    .await;
    put(
        &store,
        Batch {
            delete_acl_tokens: vec!["t2".to_string()],
            // A second bootstrap record keeps the first index.
            acl_bootstrap: true,
            ..Batch::default()
        },
    )
    .await;
    assert!(store.events_after(0, 100).await.unwrap().is_empty());
    drop(store);
    let store = Store::open(&path).unwrap();
    store.read(|s| {
        assert_eq!(s.acl_bootstrap, Some(i1));
        assert_eq!(s.acl_policies["readonly"].create_index, i1);
        assert_eq!(s.acl_tokens.keys().collect::<Vec<_>>(), vec!["t1"]);
        assert_eq!(s.acl_tokens["t1"].expiration_time, Some(10));
    });
}

#[tokio::test]
async fn the_event_history_holds_the_newest_max_events() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        max_events: 3,
        ..Options::default()
    };
    let store = Store::open_with(&dir.path().join("edge.db"), &opts).unwrap();
    for v in 0..5 {
        put(
            &store,
            Batch {
                jobs: vec![job("web", v)],
                ..Batch::default()
            },
        )
        .await;
    }
    let events = store.events_after(0, 100).await.unwrap();
    let versions: Vec<_> = events
        .iter()
        .map(|e| e.payload["version"].clone())
        .collect();
    assert_eq!(versions, [2, 3, 4]);
    assert_eq!(
        events.iter().map(|e| e.index).collect::<Vec<_>>(),
        [3, 4, 5]
    );
}

/// An agent's report moves an allocation's modify index, not the index of
/// the server's changes that its node's watch waits on.
#[tokio::test]
async fn reports_leave_the_server_change_index_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("edge.db")).unwrap();
    let a = alloc("a1", "web", "n1", 1);
    put(
        &store,
        Batch {
            allocs: vec![a.clone()],
            ..Batch::default()
        },
    )
    .await;
    let indexes = |s: &edge_store::State| {
        let a = &s.allocs["a1"];
        (
            a.modify_index,
            a.alloc_modify_index,
            s.node_alloc_index("n1"),
        )
    };
    assert_eq!(store.read(indexes), (1, 1, 1));
    let mut reported = store.read(|s| (*s.allocs["a1"]).clone());
    reported.client_status = ClientStatus::Running;
    reported.client_description = "started".into();
    reported.health = Some(edge_spec::AllocHealth {
        healthy: true,
        timestamp: 1,
    });
    put(
        &store,
        Batch {
            allocs: vec![reported.clone()],
            ..Batch::default()
        },
    )
    .await;
    assert_eq!(store.read(indexes), (2, 1, 1));
    let mut stopped = store.read(|s| (*s.allocs["a1"]).clone());
    stopped.desired_status = DesiredStatus::Stop;
    put(
        &store,
        Batch {
            allocs: vec![stopped],
            ..Batch::default()
        },
    )
    .await;
    assert_eq!(store.read(indexes), (3, 3, 3));
    // Kept across a reopen.
    let path = store.db_path().to_path_buf();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.read(indexes), (3, 3, 3));
}

/// The job's and the node's lists give each allocation as it is now: an
/// update in place, a move to another node and a removal all show.
#[test]
fn job_and_node_lists_follow_every_change_of_an_allocation() {
    let mut s = edge_store::State::default();
    let mut a = alloc("a1", "web", "n1", 0);
    s.apply_in_memory(Batch {
        allocs: vec![a.clone(), alloc("a2", "web", "n1", 0)],
        ..Batch::default()
    });
    a.client_status = ClientStatus::Running;
    s.apply_in_memory(Batch {
        allocs: vec![a.clone()],
        ..Batch::default()
    });
    let status = |list: Vec<&Allocation>| -> Vec<(String, ClientStatus)> {
        list.iter()
            .map(|a| (a.id.clone(), a.client_status))
            .collect()
    };
    let both = vec![
        ("a1".to_string(), ClientStatus::Running),
        ("a2".to_string(), ClientStatus::Pending),
    ];
    assert_eq!(status(s.job_allocs("web")), both);
    assert_eq!(status(s.node_allocs("n1")), both);

    a.node_id = "n2".to_string();
    s.apply_in_memory(Batch {
        allocs: vec![a],
        ..Batch::default()
    });
    assert_eq!(status(s.node_allocs("n2")), vec![both[0].clone()]);
    assert_eq!(status(s.node_allocs("n1")), vec![both[1].clone()]);
    assert_eq!(status(s.job_allocs("web")), both);
}
