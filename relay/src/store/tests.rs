//! Every statement, on SQLite and (when MAILROOM_TEST_DATABASE_URL is set)
//! PostgreSQL.

use super::testing;
use super::*;
use crate::domain::{MessageId, Outcome, RecipientKind, RecipientState, Reply, Stream};
use list_hygiene::subscriber::Change;
use list_hygiene::suppression::{Reason, Scope, Target, TargetKind};

fn message(stream: Stream, rcpts: &[&str], idem: Option<(&str, &str)>) -> PreparedMessage {
    PreparedMessage {
        id: MessageId::new(),
        stream,
        api_key_id: "k1".into(),
        sender: "shop@shop.example".into(),
        subject: "s".into(),
        message_id_header: "<x@shop.example>".into(),
        dkim: None,
        tags: "[]".into(),
        metadata: "{}".into(),
        raw: b"Subject: s\r\n\r\nhi\r\n".to_vec(),
        recipients: rcpts
            .iter()
            .map(|a| PreparedRecipient {
                kind: RecipientKind::To,
                address: (*a).into(),
                domain: "x.example".into(),
                suppressed: None,
            })
            .collect(),
        response: "{\"first\":true}".into(),
        idempotency: idem.map(|(k, h)| IdempotencyClaim {
            key: k.into(),
            request_hash: h.into(),
        }),
        created_at: now_ms(),
    }
}

#[tokio::test]
async fn an_enqueued_message_is_claimed_once_and_finished() {
    for t in testing::all().await {
        let s = &t.store;
        let m = message(Stream::Transactional, &["a@x.example", "b@x.example"], None);
        assert_eq!(
            s.enqueue_batch(std::slice::from_ref(&m)).await.unwrap(),
            vec![EnqueueOutcome::Accepted]
        );
        let now = now_ms();
        let mut c = s
            .claim(Stream::Transactional, now, now + 60_000, 10, "tok", "n1")
            .await
            .unwrap();
        c.sort_by_key(|c| c.idx);
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|c| c.attempts == 1 && c.lease_token == "tok"));
        // Leased rows are not due again until the lease ends.
        assert!(
            s.claim(Stream::Transactional, now, now + 60_000, 10, "tok2", "n1")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            s.queue_depth(Stream::Transactional).await.unwrap().inflight,
            2
        );

        let done = s
            .finish_batch(&[
                (
                    c[0].clone(),
                    now,
                    Outcome::Delivered(Reply {
                        code: Some(250),
                        text: "ok".into(),
                        host: Some("h".into()),
                    }),
                ),
                (
                    c[1].clone(),
                    now,
                    Outcome::bounced(Reply {
                        code: Some(550),
                        text: "no such user".into(),
                        host: None,
                    }),
                ),
            ])
            .await
            .unwrap();
        assert_eq!(done, vec![true, true]);
        let r = s.get_recipients(&m.id).await.unwrap();
        assert_eq!(
            r.iter().map(|r| r.state).collect::<Vec<_>>(),
            [RecipientState::Delivered, RecipientState::Bounced]
        );
        let a = s.get_attempts(&m.id).await.unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].smtp_code, Some(550));
        assert_eq!(
            s.queue_depth(Stream::Transactional).await.unwrap(),
            QueueDepth::default()
        );
    }
}

#[tokio::test]
async fn streams_have_separate_queues() {
    for t in testing::all().await {
        let s = &t.store;
        s.enqueue_batch(&[message(Stream::Marketing, &["m@x.example"], None)])
            .await
            .unwrap();
        let now = now_ms();
        assert!(
            s.claim(Stream::Transactional, now, now + 1000, 10, "t", "n1")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            s.claim(Stream::Marketing, now, now + 1000, 10, "t", "n1")
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn a_suppressed_recipient_is_stored_but_never_claimed() {
    for t in testing::all().await {
        let s = &t.store;
        let mut m = message(Stream::Marketing, &["a@x.example", "b@x.example"], None);
        m.recipients[0].suppressed = Some("unsubscribe (marketing)".into());
        let id = m.id;
        s.enqueue_batch(&[m]).await.unwrap();
        let now = now_ms();
        let claimed = s
            .claim(Stream::Marketing, now, now + 1000, 10, "t", "n1")
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "only the unsuppressed recipient");
        let rows = s.get_recipients(&id).await.unwrap();
        assert_eq!(rows[0].state, RecipientState::Suppressed);
        assert_eq!(
            rows[0].last_reply.as_deref(),
            Some("suppressed: unsubscribe (marketing)")
        );
    }
}

#[tokio::test]
async fn suppressions_are_added_matched_by_scope_and_expiry_listed_and_removed() {
    for t in testing::all().await {
        let s = &t.store;
        let now = now_ms();
        let entry =
            |scope: &str, kind: &str, value: &str, expires_at: Option<i64>| SuppressionRecord {
                scope: scope.parse().unwrap(),
                kind: kind.parse().unwrap(),
                value: value.into(),
                reason: Reason::Manual,
                source: None,
                created_at: now,
                expires_at,
            };
        s.upsert_suppression(&entry("marketing", "address", "a@x.example", None))
            .await
            .unwrap();
        s.upsert_suppression(&entry("global", "domain", "blocked.example", None))
            .await
            .unwrap();
        s.upsert_suppression(&entry("global", "address", "old@x.example", Some(now - 1)))
            .await
            .unwrap();
        // Upserting again updates instead of failing.
        let mut again = entry("marketing", "address", "a@x.example", None);
        again.reason = Reason::Unsubscribe;
        s.upsert_suppression(&again).await.unwrap();

        let values = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let m = s
            .matching_suppressions(
                Stream::Marketing,
                &values(&["a@x.example", "blocked.example", "old@x.example"]),
            )
            .await
            .unwrap();
        let mut got: Vec<(&str, &str)> = m
            .iter()
            .map(|r| (r.value.as_str(), r.reason.as_str()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("a@x.example", "unsubscribe"),
                ("blocked.example", "manual")
            ]
        );
        let t_only = s
            .matching_suppressions(Stream::Transactional, &values(&["a@x.example"]))
            .await
            .unwrap();
        assert!(
            t_only.is_empty(),
            "a marketing entry doesn't stop transactional mail"
        );

        assert_eq!(
            s.list_suppressions(None, None, 10, 0).await.unwrap().len(),
            3
        );
        assert_eq!(
            s.list_suppressions(Some(Scope::Global), None, 10, 0)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            s.list_suppressions(None, Some("a@x.example"), 10, 0)
                .await
                .unwrap()
                .len(),
            1
        );
        let (all, newest) = s.suppression_values_since(0).await.unwrap();
        assert_eq!((all.len(), newest), (3, now));
        assert!(
            s.suppression_values_since(now + 1)
                .await
                .unwrap()
                .0
                .is_empty()
        );

        let blocked = Target::Domain("blocked.example".into());
        assert!(s.delete_suppression(Scope::Global, &blocked).await.unwrap());
        assert!(!s.delete_suppression(Scope::Global, &blocked).await.unwrap());

        // A row that no longer parses is an error, not a guess or a panic.
        sqlx::query(
            "INSERT INTO suppressions (scope, kind, value, reason, source, created_at, expires_at) \
             VALUES ('everywhere', 'address', 'z@x.example', 'manual', NULL, 0, NULL)",
        )
        .execute(&s.pool)
        .await
        .unwrap();
        let err = s
            .list_suppressions(None, Some("z@x.example"), 10, 0)
            .await
            .unwrap_err();
        assert!(format!("{err:?}").contains("everywhere"), "{err:?}");
    }
}

#[tokio::test]
async fn a_subscriber_row_whose_status_no_longer_parses_is_an_error() {
    for t in testing::all().await {
        let s = &t.store;
        sqlx::query(
            "INSERT INTO lists (id, name, from_address, created_at) VALUES ('l', 'L', 'a@b.example', 0)",
        )
        .execute(&s.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO subscribers (list_id, address, status, created_at, updated_at) \
             VALUES ('l', 'x@y.example', 'active', 0, 0)",
        )
        .execute(&s.pool)
        .await
        .unwrap();
        let err = s
            .change_status(None, "x@y.example", Change::Unsubscribe, "test", None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("\"active\""), "{err}");
        assert!(s.get_subscriber("l", "x@y.example").await.is_err());
    }
}

#[tokio::test]
async fn a_lease_that_expires_is_claimed_again_and_the_stale_holder_cannot_finish() {
    for t in testing::all().await {
        let s = &t.store;
        s.enqueue_batch(&[message(Stream::Transactional, &["a@x.example"], None)])
            .await
            .unwrap();
        let now = now_ms();
        let first = s
            .claim(Stream::Transactional, now, now + 100, 10, "dead", "n1")
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        // The holder "dies"; once its lease has passed another worker gets the row.
        let later = now + 200;
        let second = s
            .claim(
                Stream::Transactional,
                later,
                later + 60_000,
                10,
                "alive",
                "n1",
            )
            .await
            .unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].attempts, 2);
        let stale = Outcome::Delivered(Reply {
            code: Some(250),
            text: "late".into(),
            host: None,
        });
        assert_eq!(
            s.finish_batch(&[(first[0].clone(), now, stale)])
                .await
                .unwrap(),
            vec![false]
        );
        let ok = Outcome::Delivered(Reply {
            code: Some(250),
            text: "ok".into(),
            host: None,
        });
        assert_eq!(
            s.finish_batch(&[(second[0].clone(), later, ok)])
                .await
                .unwrap(),
            vec![true]
        );
    }
}

#[tokio::test]
async fn the_heartbeat_renews_a_nodes_leases_and_a_restart_takes_them_back() {
    for t in testing::all().await {
        let s = &t.store;
        s.enqueue_batch(&[
            message(Stream::Transactional, &["a@x.example"], None),
            message(Stream::Transactional, &["b@x.example"], None),
        ])
        .await
        .unwrap();
        let now = now_ms();
        let mine = s
            .claim(Stream::Transactional, now, now + 1_000, 1, "t1", "n1")
            .await
            .unwrap();
        let theirs = s
            .claim(Stream::Transactional, now, now + 1_000, 1, "t2", "n2")
            .await
            .unwrap();
        assert_eq!((mine.len(), theirs.len()), (1, 1));
        // Renewed: not claimable after the first lease would have ended.
        assert_eq!(s.heartbeat("n1", "run", now + 60_000).await.unwrap(), 1);
        let stolen = s
            .claim(
                Stream::Transactional,
                now + 2_000,
                now + 9_000,
                10,
                "t3",
                "n3",
            )
            .await
            .unwrap();
        assert_eq!(stolen.len(), 1, "only n2's lapsed lease");
        assert_eq!(stolen[0].address, theirs[0].address);
        // n1 restarts: its lease is due at once, its attempt still counted,
        // and n3's lease is not touched.
        assert_eq!(s.reclaim_node_leases("n1").await.unwrap(), 1);
        let again = s
            .claim(Stream::Transactional, now_ms(), now + 9_000, 10, "t4", "n1")
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].address, mine[0].address);
        assert_eq!(again[0].attempts, 2);
        // The interrupted holder can no longer record its outcome.
        let late = Outcome::Delivered(Reply {
            code: Some(250),
            text: "late".into(),
            host: None,
        });
        assert_eq!(
            s.finish_batch(&[(mine[0].clone(), now, late)])
                .await
                .unwrap(),
            vec![false]
        );
    }
}

#[tokio::test]
async fn a_deferred_recipient_waits_until_its_retry_time() {
    for t in testing::all().await {
        let s = &t.store;
        s.enqueue_batch(&[message(Stream::Marketing, &["a@x.example"], None)])
            .await
            .unwrap();
        let now = now_ms();
        let c = s
            .claim(Stream::Marketing, now, now + 60_000, 1, "t", "n1")
            .await
            .unwrap();
        let retry_at = now + 10_000;
        let f = Outcome::Deferred {
            reply: Reply {
                code: Some(451),
                text: "try later".into(),
                host: None,
            },
            retry_at,
        };
        s.finish_batch(&[(c[0].clone(), now, f)]).await.unwrap();
        assert!(
            s.claim(Stream::Marketing, now + 5_000, now + 65_000, 1, "t2", "n1")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(s.next_due(Stream::Marketing).await.unwrap(), Some(retry_at));
        let again = s
            .claim(
                Stream::Marketing,
                retry_at,
                retry_at + 60_000,
                1,
                "t3",
                "n1",
            )
            .await
            .unwrap();
        assert_eq!(again[0].attempts, 2);
    }
}

#[tokio::test]
async fn released_work_is_due_at_once_and_its_attempt_not_counted() {
    for t in testing::all().await {
        let s = &t.store;
        s.enqueue_batch(&[message(Stream::Transactional, &["a@x.example"], None)])
            .await
            .unwrap();
        let now = now_ms();
        let c = s
            .claim(Stream::Transactional, now, now + 600_000, 1, "t", "n1")
            .await
            .unwrap();
        s.release(&c).await.unwrap();
        let again = s
            .claim(
                Stream::Transactional,
                now_ms(),
                now + 600_000,
                1,
                "t2",
                "n1",
            )
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 1);
    }
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    for t in testing::all().await {
        let s = &t.store;
        let first = message(Stream::Transactional, &["a@x.example"], Some(("k", "h1")));
        let mut retry = message(Stream::Transactional, &["a@x.example"], Some(("k", "h1")));
        retry.response = "{\"second\":true}".into();
        let other = message(Stream::Transactional, &["a@x.example"], Some(("k", "h2")));
        let out = s
            .enqueue_batch(&[first.clone(), retry.clone(), other])
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                EnqueueOutcome::Accepted,
                EnqueueOutcome::Replayed("{\"first\":true}".into()),
                EnqueueOutcome::KeyReused
            ]
        );
        assert!(
            s.get_message(&retry.id).await.unwrap().is_none(),
            "a replay stores nothing"
        );
        let now = now_ms();
        assert_eq!(
            s.claim(Stream::Transactional, now, now + 1000, 10, "t", "n1")
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(s.prune_idempotency(now + 1).await.unwrap(), 1);
    }
}

#[tokio::test]
async fn raw_bytes_come_back_unchanged() {
    for t in testing::all().await {
        let s = &t.store;
        let mut m = message(Stream::Transactional, &["a@x.example"], None);
        m.raw = (0..=255u8).collect();
        s.enqueue_batch(std::slice::from_ref(&m)).await.unwrap();
        let (stream, raw) = s.get_raw(&m.id).await.unwrap().unwrap();
        assert_eq!((stream.as_str(), raw), ("transactional", m.raw.clone()));
        let id = m.id.to_string();
        let payloads = s
            .delivery_payloads(&[id.as_str(), "no-such-id"])
            .await
            .unwrap();
        assert_eq!(payloads.len(), 1);
        assert_eq!(
            (payloads[&id].sender.as_str(), &payloads[&id].raw),
            ("shop@shop.example", &m.raw)
        );
    }
}

/// Several relay processes share one PostgreSQL: concurrent claimers never
/// get the same row (FOR UPDATE SKIP LOCKED).
#[tokio::test]
async fn concurrent_claimers_on_postgres_never_share_a_row() {
    let Some(t) = testing::postgres().await else {
        return;
    };
    let s = &t.store;
    let batch: Vec<_> = (0..200)
        .map(|i| message(Stream::Marketing, &[&format!("r{i}@x.example")], None))
        .collect();
    s.enqueue_batch(&batch).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8 {
        let s = s.clone();
        tasks.spawn(async move {
            let mut got = Vec::new();
            loop {
                let now = now_ms();
                let c = s
                    .claim(
                        Stream::Marketing,
                        now,
                        now + 600_000,
                        7,
                        &format!("w{w}"),
                        "n1",
                    )
                    .await
                    .unwrap();
                if c.is_empty() {
                    break got;
                }
                got.extend(c.into_iter().map(|c| c.message_id));
            }
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.unwrap());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!((n, all.len()), (200, 200));
}

/// A write transaction that reads before it writes still commits when
/// another connection commits meanwhile. On SQLite a deferred transaction
/// fails here with SQLITE_BUSY at once (its snapshot is stale); `begin`
/// takes the write lock up front, so the other writer waits instead.
#[tokio::test]
async fn a_write_transaction_that_reads_first_survives_a_concurrent_writer() {
    for t in testing::all().await {
        let s = t.store.clone();
        let entry = |value: &str| SuppressionRecord {
            scope: Scope::Global,
            kind: TargetKind::Address,
            value: value.into(),
            reason: Reason::Manual,
            source: None,
            created_at: now_ms(),
            expires_at: None,
        };
        let mut tx = s.begin().await.unwrap();
        let (before,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM suppressions")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        let other = tokio::spawn({
            let s = s.clone();
            let e = entry("other@x.example");
            async move { s.upsert_suppression(&e).await }
        });
        // Long enough for the other connection to commit, were it allowed.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        sqlx::query(
            "INSERT INTO suppressions (scope, kind, value, reason, created_at) \
             VALUES ('global', 'address', 'mine@x.example', 'manual', $1)",
        )
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .expect("the transaction's own write");
        tx.commit().await.unwrap();
        other.await.unwrap().expect("the other connection's write");
        let (after,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM suppressions")
            .fetch_one(&s.pool)
            .await
            .unwrap();
        assert_eq!(after, before + 2);
    }
}
