//! The behaviour every [`LinkStore`] backend must show.
//!
//! Backends call [`run_all`] from their own tests with a fresh store. Codes
//! and key names carry a random suffix, so the suite can also run against a
//! shared, long-lived cluster without clashing with an earlier run.

use std::sync::Arc;

use crate::{
    ApiKey, CodeKind, DeleteOutcome, Link, LinkQuery, LinkState, LinkStore, LinkUpdate, Scope,
    StateFilter, StoreError, UpdateOutcome,
};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// A link with every optional field set, for round-trip checks.
pub fn sample_link(code: &str, kind: CodeKind) -> Link {
    Link {
        code: code.to_owned(),
        // Each link has its own id, as the generator issues them.
        id: (rand::random::<u64>() >> 24) as i64 + 1,
        kind,
        url: "https://example.com/a/path?q=1#frag".to_owned(),
        redirect: 307,
        created_at: 1_764_000_000_000,
        expires_at: Some(4_102_444_800_000),
        deleted_at: None,
        owner: Some("ci".to_owned()),
        tags: vec!["launch".to_owned(), "q4-2026".to_owned()],
        public_stats: false,
    }
}

/// Runs every check in turn; panics on the first failure.
pub async fn run_all(store: Arc<dyn LinkStore>) {
    ping_answers(&*store).await;
    link_round_trips(&*store).await;
    minimal_link_round_trips(&*store).await;
    unknown_code_is_none(&*store).await;
    taken_alias_conflicts(&*store).await;
    taken_generated_code_is_never_overwritten(&*store).await;
    far_future_and_near_expiries_round_trip(&*store).await;
    delete_marks_deleted_and_keeps_code_taken(&*store).await;
    concurrent_alias_claims_have_one_winner(store.clone()).await;
    api_keys_round_trip_and_revoke(&*store).await;
    id_reservations_only_rise(&*store).await;
    listing_pages_an_owners_links_newest_first(&*store).await;
    listing_filters_by_state_tag_and_text(&*store).await;
    update_changes_fields_but_never_a_deleted_link(&*store).await;
}

fn query(owner: &str, limit: usize) -> LinkQuery {
    LinkQuery {
        owner: owner.to_owned(),
        before_id: None,
        limit,
        q: None,
        tag: None,
        state: StateFilter::All,
        now_ms: 1_800_000_000_000,
    }
}

/// Links of a fresh owner, ids ascending from a random base.
async fn owned_links(store: &dyn LinkStore, owner: &str, n: usize) -> Vec<Link> {
    let base = (rand::random::<u32>() as i64) << 20;
    let mut links = Vec::new();
    for i in 0..n {
        let mut link = sample_link(&unique("own"), CodeKind::Alias);
        link.id = base + i as i64;
        link.owner = Some(owner.to_owned());
        link.expires_at = None;
        store.create_link(&link).await.expect("create");
        links.push(link);
    }
    links
}

pub async fn listing_pages_an_owners_links_newest_first(store: &dyn LinkStore) {
    let owner = unique("team");
    let other = unique("team");
    let mut links = owned_links(store, &owner, 7).await;
    owned_links(store, &other, 2).await;
    links.reverse();
    let mut seen = Vec::new();
    let mut q = query(&owner, 3);
    loop {
        let page = store.list_links(&q).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        q.before_id = Some(last.id);
        seen.extend(page);
    }
    assert_eq!(seen, links, "every link of the owner, once, newest first");
    assert_eq!(
        store
            .list_links(&query(&unique("nobody"), 10))
            .await
            .unwrap(),
        vec![]
    );
}

pub async fn listing_filters_by_state_tag_and_text(store: &dyn LinkStore) {
    let owner = unique("team");
    let now = 1_800_000_000_000;
    let links = owned_links(store, &owner, 4).await;
    // 0: active, tagged "blue", url with "Docs"; 1: expired; 2: deleted; 3: active.
    store
        .update_link(
            &links[0].code,
            &LinkUpdate {
                url: Some("https://example.com/Docs/intro".into()),
                tags: Some(vec!["blue".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store
        .update_link(
            &links[1].code,
            &LinkUpdate {
                expires_at: Some(Some(now - 1)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store.delete_link(&links[2].code, now - 1).await.unwrap();
    let codes = |page: Vec<Link>| page.into_iter().map(|l| l.code).collect::<Vec<_>>();
    let mut q = query(&owner, 10);
    q.state = StateFilter::Active;
    assert_eq!(
        codes(store.list_links(&q).await.unwrap()),
        vec![links[3].code.clone(), links[0].code.clone()]
    );
    q.state = StateFilter::Expired;
    assert_eq!(
        codes(store.list_links(&q).await.unwrap()),
        vec![links[1].code.clone()]
    );
    q.state = StateFilter::Deleted;
    assert_eq!(
        codes(store.list_links(&q).await.unwrap()),
        vec![links[2].code.clone()]
    );
    q.state = StateFilter::All;
    q.tag = Some("blue".into());
    assert_eq!(
        codes(store.list_links(&q).await.unwrap()),
        vec![links[0].code.clone()]
    );
    q.tag = None;
    q.q = Some("docs/INTRO".into());
    assert_eq!(
        codes(store.list_links(&q).await.unwrap()),
        vec![links[0].code.clone()],
        "text matches the URL, whatever the case"
    );
    q.q = Some(links[3].code[4..].to_uppercase());
    assert_eq!(
        codes(store.list_links(&q).await.unwrap()),
        vec![links[3].code.clone()],
        "text matches the code"
    );
}

pub async fn update_changes_fields_but_never_a_deleted_link(store: &dyn LinkStore) {
    let link = sample_link(&unique("upd"), CodeKind::Alias);
    store.create_link(&link).await.unwrap();
    let update = LinkUpdate {
        url: Some("https://example.org/new".into()),
        expires_at: Some(None),
        redirect: Some(301),
        tags: Some(vec![]),
        public_stats: Some(true),
    };
    let mut expected = link.clone();
    expected.url = "https://example.org/new".into();
    expected.expires_at = None;
    expected.redirect = 301;
    expected.tags = vec![];
    expected.public_stats = true;
    assert_eq!(
        store.update_link(&link.code, &update).await.unwrap(),
        UpdateOutcome::Updated(expected.clone())
    );
    assert_eq!(store.get_link(&link.code).await.unwrap(), Some(expected));
    // Only the fields given change.
    let later = Some(Some(4_102_444_800_000));
    let changed = store
        .update_link(
            &link.code,
            &LinkUpdate {
                expires_at: later,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let UpdateOutcome::Updated(changed) = changed else {
        panic!("{changed:?}")
    };
    assert_eq!(changed.expires_at, Some(4_102_444_800_000));
    assert_eq!(changed.url, "https://example.org/new");
    assert_eq!(store.get_link(&link.code).await.unwrap(), Some(changed));
    store
        .delete_link(&link.code, 1_800_000_000_000)
        .await
        .unwrap();
    assert_eq!(
        store.update_link(&link.code, &update).await.unwrap(),
        UpdateOutcome::Deleted
    );
    assert_eq!(
        store.update_link(&unique("none"), &update).await.unwrap(),
        UpdateOutcome::NotFound
    );
}

pub async fn id_reservations_only_rise(store: &dyn LinkStore) {
    // A worker id no other run of the suite uses at the same moment.
    let worker = (rand::random::<u16>() % 1024).max(1);
    let base = store.id_reservation(worker).await.unwrap();
    let at = base.max(1_800_000_000_000) + 1_000;
    store.reserve_ids(worker, at).await.unwrap();
    assert_eq!(store.id_reservation(worker).await.unwrap(), at);
    store.reserve_ids(worker, at - 500).await.unwrap();
    assert_eq!(
        store.id_reservation(worker).await.unwrap(),
        at,
        "a lower reservation never replaces a higher one"
    );
    store.reserve_ids(worker, at + 250).await.unwrap();
    assert_eq!(store.id_reservation(worker).await.unwrap(), at + 250);
}

pub async fn ping_answers(store: &dyn LinkStore) {
    store.ping().await.expect("ping");
}

pub async fn link_round_trips(store: &dyn LinkStore) {
    let link = sample_link(&unique("rt"), CodeKind::Alias);
    store.create_link(&link).await.expect("create");
    assert_eq!(store.get_link(&link.code).await.unwrap(), Some(link));
}

pub async fn minimal_link_round_trips(store: &dyn LinkStore) {
    let mut link = sample_link(&unique("min"), CodeKind::Generated);
    link.expires_at = None;
    link.owner = None;
    link.redirect = 302;
    store.create_link(&link).await.expect("create");
    let got = store.get_link(&link.code).await.unwrap().expect("present");
    assert_eq!(got, link);
    assert_eq!(got.state_at(i64::MAX), LinkState::Active);
}

pub async fn unknown_code_is_none(store: &dyn LinkStore) {
    assert_eq!(store.get_link(&unique("none")).await.unwrap(), None);
}

pub async fn taken_alias_conflicts(store: &dyn LinkStore) {
    let code = unique("taken");
    let first = sample_link(&code, CodeKind::Alias);
    store.create_link(&first).await.expect("first create");
    let mut second = first.clone();
    second.url = "https://example.org/other".into();
    match store.create_link(&second).await {
        Err(StoreError::Conflict(c)) => assert_eq!(c, code),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // The first link is untouched.
    assert_eq!(store.get_link(&code).await.unwrap(), Some(first));
}

/// A generated code written a second time (an id reissued after a clock
/// step or a lost lease) is refused, and the first link stays intact.
pub async fn taken_generated_code_is_never_overwritten(store: &dyn LinkStore) {
    let code = unique("gen");
    let first = sample_link(&code, CodeKind::Generated);
    store.create_link(&first).await.expect("first create");
    let mut second = first.clone();
    second.id += 1;
    second.url = "https://example.org/overwritten".into();
    second.expires_at = None;
    match store.create_link(&second).await {
        Err(StoreError::Conflict(c)) => assert_eq!(c, code),
        other => panic!("a second write of a generated code must be refused, got {other:?}"),
    }
    assert_eq!(store.get_link(&code).await.unwrap(), Some(first));
}

/// Links expiring soon, in 2037, after 2038-01-19 (past a 32-bit expiry
/// clock) and beyond any TTL a database accepts are all kept as written.
pub async fn far_future_and_near_expiries_round_trip(store: &dyn LinkStore) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (label, expires_at) in [
        ("soon", now + 3_600_000),
        ("y2037", 2_114_380_800_000),   // 2037-01-01
        ("y2040", 2_208_988_800_000),   // 2040-01-01
        ("y2106", 4_294_967_296_000),   // past u32 seconds
        ("y9999", 253_402_300_799_000), // the last RFC 3339 second
    ] {
        let mut link = sample_link(&unique(label), CodeKind::Generated);
        link.expires_at = Some(expires_at);
        store
            .create_link(&link)
            .await
            .unwrap_or_else(|e| panic!("a link expiring at {label} is stored: {e}"));
        assert_eq!(
            store.get_link(&link.code).await.unwrap(),
            Some(link.clone())
        );
        assert_eq!(link.state_at(now), LinkState::Active);
        assert_eq!(
            store.delete_link(&link.code, now).await.unwrap(),
            DeleteOutcome::Deleted,
            "a link expiring at {label} can be deleted"
        );
        let deleted = store
            .get_link(&link.code)
            .await
            .unwrap()
            .expect("tombstone");
        assert_eq!(deleted.deleted_at, Some(now));
    }
}

pub async fn delete_marks_deleted_and_keeps_code_taken(store: &dyn LinkStore) {
    let link = sample_link(&unique("del"), CodeKind::Alias);
    store.create_link(&link).await.unwrap();
    assert_eq!(
        store
            .delete_link(&link.code, 1_800_000_000_000)
            .await
            .unwrap(),
        DeleteOutcome::Deleted
    );
    let got = store
        .get_link(&link.code)
        .await
        .unwrap()
        .expect("tombstone");
    assert_eq!(got.deleted_at, Some(1_800_000_000_000));
    assert_eq!(got.state_at(0), LinkState::Deleted);
    assert_eq!(
        store
            .delete_link(&link.code, 1_900_000_000_000)
            .await
            .unwrap(),
        DeleteOutcome::AlreadyDeleted
    );
    assert!(matches!(
        store.create_link(&link).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.delete_link(&unique("nodel"), 1).await.unwrap(),
        DeleteOutcome::NotFound
    );
}

pub async fn concurrent_alias_claims_have_one_winner(store: Arc<dyn LinkStore>) {
    let code = unique("race");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            let mut link = sample_link(&code, CodeKind::Alias);
            link.url = format!("https://example.com/{i}");
            tokio::spawn(async move { (link.url.clone(), store.create_link(&link).await) })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (url, res) = t.await.unwrap();
        match res {
            Ok(()) => winners.push(url),
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim wins");
    let stored = store.get_link(&code).await.unwrap().unwrap();
    assert_eq!(stored.url, winners[0]);
}

pub async fn api_keys_round_trip_and_revoke(store: &dyn LinkStore) {
    let name = unique("key");
    let key = ApiKey {
        name: name.clone(),
        hash: format!("{:064x}", rand::random::<u128>()),
        prefix: "sl_abcd".into(),
        created_at: 1_764_000_000_000,
        revoked_at: None,
        owner: unique("team"),
        scopes: vec![Scope::LinksRead, Scope::Admin],
        rate_limit: Some(120),
    };
    store.create_api_key(&key).await.unwrap();
    assert_eq!(
        store.find_api_key(&key.hash).await.unwrap(),
        Some(key.clone())
    );
    assert!(store.list_api_keys().await.unwrap().contains(&key));
    let mut dup = key.clone();
    dup.hash = format!("{:064x}", rand::random::<u128>());
    assert!(matches!(
        store.create_api_key(&dup).await,
        Err(StoreError::KeyNameTaken(_))
    ));
    assert!(store
        .revoke_api_key(&name, 1_800_000_000_000)
        .await
        .unwrap());
    assert!(!store
        .revoke_api_key(&name, 1_800_000_000_001)
        .await
        .unwrap());
    let revoked = store.find_api_key(&key.hash).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(1_800_000_000_000));
    assert_eq!(store.find_api_key("0").await.unwrap(), None);
}
