//! The Raft log and vote come back after a restart exactly as acknowledged, truncation and
//! purging included, and a damaged vote is an error rather than a forgotten vote.

use openraft::storage::RaftLogStorageExt;
use openraft::testing::{blank_ent, log_id};
use openraft::{RaftLogReader, Vote, storage::RaftLogStorage};
use strata_cluster::TypeConfig;
use strata_cluster::store::LogStore;
use strata_cluster::types::typ;

fn entries(term: u64, from: u64, to: u64) -> Vec<typ::Entry> {
    (from..to)
        .map(|i| blank_ent::<TypeConfig>(term, 0, i))
        .collect()
}

async fn indexes(log: &mut LogStore) -> Vec<(u64, u64)> {
    log.try_get_log_entries(..)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.log_id.leader_id.term, e.log_id.index))
        .collect()
}

#[tokio::test]
async fn truncation_inside_a_batch_purge_and_vote_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogStore::open(dir.path()).await.unwrap();
    // Two appends, so two batches: 0..5 and 5..10.
    log.blocking_append(entries(1, 0, 5)).await.unwrap();
    log.blocking_append(entries(1, 5, 10)).await.unwrap();
    // A new leader's entries replace 7.. : the batch 5..10 goes, 5 and 6 are written again.
    log.truncate(log_id(1, 0, 7)).await.unwrap();
    log.blocking_append(entries(2, 7, 9)).await.unwrap();
    log.purge(log_id(1, 0, 2)).await.unwrap();
    log.save_vote(&Vote::new(2, 1)).await.unwrap();
    let want: Vec<(u64, u64)> = (3..7).map(|i| (1, i)).chain([(2, 7), (2, 8)]).collect();
    assert_eq!(indexes(&mut log).await, want);
    drop(log);

    let mut log = LogStore::open(dir.path()).await.unwrap();
    assert_eq!(indexes(&mut log).await, want);
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 0, 2)));
    assert_eq!(state.last_log_id, Some(log_id(2, 0, 8)));
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
}

#[tokio::test]
async fn a_damaged_vote_is_an_error_and_a_damaged_commit_hint_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogStore::open(dir.path()).await.unwrap();
    log.save_vote(&Vote::new(3, 0)).await.unwrap();
    log.save_committed(Some(log_id(3, 0, 4))).await.unwrap();
    drop(log);
    for name in ["vote", "committed"] {
        let path = dir.path().join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 0x20;
        std::fs::write(&path, bytes).unwrap();
    }
    let mut log = LogStore::open(dir.path()).await.unwrap();
    assert!(log.read_vote().await.is_err());
    assert_eq!(log.read_committed().await.unwrap(), None);
}

#[tokio::test]
async fn a_torn_tail_is_cut_at_the_last_whole_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogStore::open(dir.path()).await.unwrap();
    log.blocking_append(entries(1, 0, 3)).await.unwrap();
    log.blocking_append(entries(1, 3, 6)).await.unwrap();
    drop(log);
    // Cut the segment file in the middle of the second batch, as a crash mid-write would.
    let segment = walk(dir.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a segment file");
    let len = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 20)
        .unwrap();
    let mut log = LogStore::open(dir.path()).await.unwrap();
    assert_eq!(
        indexes(&mut log).await,
        (0..3).map(|i| (1, i)).collect::<Vec<_>>()
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
