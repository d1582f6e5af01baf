//! API-key rotation on the real binary (issue 13, item 5): the systemd credential file is
//! replaced with another key of the same user while the daemon runs, and the daemon goes on
//! with a session of the new key, without a restart. (The 15 s bound and a refused key are
//! checked in process on tokio's paused clock, `daemon::rotate`'s tests.)

use std::time::Duration;

use bunq_ipsync::bunq::ContextStore;
use bunq_ipsync::bunq::context::api_key_fingerprint;
use bunq_ipsync::bunq::model::IpStatus::{Active, Inactive};

use super::{A, running_on_a_key_credential, stop, wait_active};
use crate::support::write_atomically;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_systemd_credential_switches_the_running_daemon_to_the_new_key() {
    // The key comes from the credentials directory, which is watched.
    let (world, daemon, key_file) = running_on_a_key_credential().await;
    let pid = daemon.pid();
    // bunq allows one session-server call per 30 s and the daemon keeps to it: let the start-up
    // session's window pass, as it has long passed when a key is rotated in practice.
    tokio::time::sleep(Duration::from_secs(31)).await;

    let new_key = world.sim.add_api_key(world.key.user_id).unwrap();
    write_atomically(&key_file, &format!("{}\n", new_key.api_key.expose()));
    daemon
        .eventually("a session of the new key", async || {
            (world.sim.last_session_credential() == Some(new_key.credential_id)).then_some(())
        })
        .await;
    let store = ContextStore::open(&world.state_dir).unwrap();
    daemon
        .eventually("the new key's context saved", async || {
            let saved = store.load().ok()??.api_key_fingerprint;
            (saved == api_key_fingerprint(&new_key.api_key)).then_some(())
        })
        .await;
    assert_eq!(daemon.pid(), pid, "the same process");

    // Later runs still converge: an out-of-band deactivation is repaired by the schedule.
    let entry = world.managed_entries()[A].id;
    world
        .sim
        .set_entry_status(world.managed, entry, Inactive)
        .unwrap();
    wait_active(&world, &daemon, &[A]).await;
    assert_eq!(world.managed_entries()[A].status, Active);
    assert!(daemon.stderr().contains("switched to the new API key"));
    assert!(!daemon.stderr().contains(new_key.api_key.expose()));
    stop(daemon).await;
}
