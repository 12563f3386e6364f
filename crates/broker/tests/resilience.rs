//! Hostile and careless clients over raw sockets: claimed frame lengths cost no memory beyond
//! the request budget while a real producer keeps being served; idle and half-sent frames are
//! closed after the configured times; connections over the limits are refused at once.
//!
//! Memory is measured with a counting global allocator (bytes currently allocated by this
//! test process, broker included), which is exact where RSS is not: a large zeroed allocation
//! is mapped lazily and barely shows in RSS.
#![allow(unsafe_code)] // The counting allocator below; nothing else.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BufMut;
use common::{Client, batch, records};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::records::Compression;
use tokio::io::AsyncWriteExt;
use waterline_broker::{Broker, BrokerConfig, RunningBroker};

/// Counts the bytes currently allocated through the global allocator.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` with the caller's own arguments; the counter is
// only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MIB: usize = 1 << 20;

async fn start(dir: &std::path::Path, tune: impl FnOnce(&mut BrokerConfig)) -> RunningBroker {
    let mut config = common::config(dir);
    tune(&mut config);
    Broker::start(config).await.unwrap()
}

async fn api_versions_ok(c: &mut Client) -> bool {
    let r: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    r.error_code == 0
}

/// Sends a frame length and `body_bytes` of its body, then nothing more.
async fn claim(addr: std::net::SocketAddr, len: usize, body_bytes: usize) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut f = Vec::new();
    f.put_i32(len as i32);
    f.extend(std::iter::repeat_n(0u8, body_bytes));
    s.write_all(&f).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimed_lengths_cost_no_memory_and_a_producer_keeps_being_served() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path(), |c| {
        c.max_queued_request_bytes = 16 * MIB;
        c.max_frame_bytes = 7 * MIB;
        c.request_read_timeout_ms = 60_000;
    })
    .await;
    let addr = b.local_addr();
    // Warm up: the producer's topic exists and the runtime's threads have started.
    let mut producer = Client::connect(addr).await;
    let p = common::produce(
        &mut producer,
        "live",
        batch(&records(3, 1), Compression::None),
    )
    .await;
    assert_eq!(p.error_code, 0);

    let before = ALLOCATED.load(Ordering::Relaxed);
    // 100 connections claim 6 MiB frames (600 MiB in all) and send 1 KiB of each.
    let mut attackers = Vec::new();
    for _ in 0..100 {
        attackers.push(claim(addr, 6 * MIB, 1024).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = ALLOCATED.load(Ordering::Relaxed).saturating_sub(before);
    assert!(
        grown < 32 * MIB,
        "claims of 600 MiB grew allocations by {} MiB (budget 16 MiB)",
        grown / MIB
    );

    // A real producer is served meanwhile: small requests fit the reserved part of the budget.
    let started = Instant::now();
    let p = common::produce(
        &mut producer,
        "live",
        batch(&records(5, 10), Compression::None),
    )
    .await;
    assert_eq!(p.error_code, 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let mut fresh = Client::connect(addr).await;
    assert!(api_versions_ok(&mut fresh).await);

    drop(attackers);
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_frames_are_closed_active_connections_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path(), |c| {
        c.connections_max_idle_ms = 400;
        c.request_read_timeout_ms = 400;
    })
    .await;
    let addr = b.local_addr();
    let mut idle = Client::connect(addr).await;
    let mut half_length = Client::connect(addr).await;
    half_length.stream.write_all(&[0, 0]).await.unwrap();
    let mut half_body = Client::connect(addr).await;
    let mut f = Vec::new();
    f.put_i32(100);
    f.extend([0u8; 30]);
    half_body.stream.write_all(&f).await.unwrap();
    let mut active = Client::connect(addr).await;

    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1200) {
        assert!(api_versions_ok(&mut active).await);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    for (name, c) in [
        ("idle", &mut idle),
        ("half a length", &mut half_length),
        ("half a body", &mut half_body),
    ] {
        assert!(c.is_closed().await, "{name} connection still open");
    }
    assert!(
        api_versions_ok(&mut active).await,
        "an active connection stays"
    );
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limits_are_refused_at_once() {
    for per_ip in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let b = start(dir.path(), |c| {
            if per_ip {
                c.max_connections_per_ip = Some(2);
            } else {
                c.max_connections = Some(2);
            }
        })
        .await;
        let addr = b.local_addr();
        let mut first = Client::connect(addr).await;
        let mut second = Client::connect(addr).await;
        assert!(api_versions_ok(&mut first).await && api_versions_ok(&mut second).await);
        let mut over = Client::connect(addr).await;
        let started = Instant::now();
        assert!(
            over.is_closed().await,
            "per_ip={per_ip}: over the limit but open"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "refused at once"
        );
        // A slot frees up when a connection closes.
        drop(first);
        let mut again = None;
        for _ in 0..50 {
            let mut c = Client::connect(addr).await;
            if !c.is_closed_within(Duration::from_millis(100)).await {
                again = Some(c);
                break;
            }
        }
        let mut again = again.expect("a slot frees when a connection closes");
        assert!(api_versions_ok(&mut again).await);
        b.shutdown().await.unwrap();
    }
}
