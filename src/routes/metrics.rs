//! `GET /metrics` — Prometheus text exposition of every series DESIGN §10 lists.
//!
//! Each module keeps its own counters (requests in `metrics`, KMS calls in `kms::instrumented`, DEK
//! caches, auth refusals, payloads in `codec`); this handler only reads them at scrape time. Labels are
//! fixed words, never request data.

use actix_web::{HttpResponse, web};

use crate::kms::encrypt_cache::RotationReason;
use crate::kms::instrumented::KmsOp;
use crate::metrics::{CONTENT_TYPE, Exposition, Kind};
use crate::state::AppState;

/// Renders the exposition.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(render(&state))
}

/// Every family, in a stable order.
pub fn render(state: &AppState) -> String {
    let mut out = Exposition::default();
    state.metrics.write(&mut out);
    write_payloads(state, &mut out);
    write_kms(state, &mut out);
    write_caches(state, &mut out);
    write_auth(state, &mut out);
    write_bodies(state, &mut out);
    write_audit(state, &mut out);
    write_readiness(state, &mut out);
    out.finish()
}

fn write_payloads(state: &AppState, out: &mut Exposition) {
    use std::sync::atomic::Ordering::Relaxed;
    let c = state.codec.payload_counts();
    let name = "codec_payloads_total";
    out.family(name, Kind::Counter, "Payloads handled by the codec, by operation and result.")
        .sample(name, &[("operation", "encode"), ("result", "sealed")], c.sealed.load(Relaxed))
        .sample(name, &[("operation", "decode"), ("result", "opened")], c.opened.load(Relaxed))
        .sample(name, &[("operation", "decode"), ("result", "passed_through")], c.passed_through.load(Relaxed))
        .sample(name, &[("operation", "decode"), ("result", "failed")], c.failed.load(Relaxed));
}

fn write_kms(state: &AppState, out: &mut Exposition) {
    let stats = &state.kms_stats;
    let providers = stats.providers_in_use();
    let label = |p: crate::kms::Provider, op: KmsOp| [("provider", p.as_str()), ("operation", op.as_str())];
    out.family("codec_kms_calls_total", Kind::Counter, "KMS calls (each attempt), by provider and operation.");
    for &p in &providers {
        for op in KmsOp::ALL {
            out.sample("codec_kms_calls_total", &label(p, op), stats.get(p, op).calls);
        }
    }
    out.family("codec_kms_errors_total", Kind::Counter, "KMS calls that failed, by provider and operation.");
    for &p in &providers {
        for op in KmsOp::ALL {
            out.sample("codec_kms_errors_total", &label(p, op), stats.get(p, op).errors);
        }
    }
    out.family("codec_kms_call_duration_seconds", Kind::Histogram, "KMS call latency, by provider and operation.");
    for &p in &providers {
        for op in KmsOp::ALL {
            out.histogram("codec_kms_call_duration_seconds", &label(p, op), stats.latency(p, op));
        }
    }
}

fn write_caches(state: &AppState, out: &mut Exposition) {
    let encrypt = state.codec.encrypt_cache();
    let decrypt = state.codec.decrypt_cache();
    out.family("codec_dek_cache_hits_total", Kind::Counter, "Data keys found in the cache, by cache.")
        .sample("codec_dek_cache_hits_total", &[("cache", "encrypt")], encrypt.leases_reused())
        .sample("codec_dek_cache_hits_total", &[("cache", "decrypt")], decrypt.hits());
    out.family(
        "codec_dek_cache_misses_total",
        Kind::Counter,
        "Data keys not in the cache, by cache (encrypt: new data keys made; decrypt: lookups that needed an unwrap).",
    )
    .sample("codec_dek_cache_misses_total", &[("cache", "encrypt")], encrypt.keys_created())
    .sample("codec_dek_cache_misses_total", &[("cache", "decrypt")], decrypt.misses());
    out.family(
        "codec_dek_rotations_total",
        Kind::Counter,
        "Encrypt data keys made, by reason (scheduled: in the background ahead of the limits; on-demand: a request waited).",
    );
    for reason in [RotationReason::Scheduled, RotationReason::OnDemand] {
        out.sample("codec_dek_rotations_total", &[("reason", reason.as_str())], encrypt.rotations(reason));
    }
    out.family(
        "codec_dek_rotation_failures_total",
        Kind::Counter,
        "Background data-key renewals that failed (the current key kept serving).",
    )
    .sample("codec_dek_rotation_failures_total", &[], encrypt.failed_renewals());
    if let Some(since) = encrypt.since_last_rotation() {
        out.family(
            "codec_dek_seconds_since_last_rotation",
            Kind::Gauge,
            "Seconds since an encrypt data key was last made.",
        )
        .sample("codec_dek_seconds_since_last_rotation", &[], since.as_secs_f64());
    }
}

fn write_auth(state: &AppState, out: &mut Exposition) {
    out.family("codec_auth_failures_total", Kind::Counter, "Requests refused by authentication or policy, by reason.");
    for (reason, count) in state.authorizer.failures().snapshot() {
        out.sample("codec_auth_failures_total", &[("reason", reason)], count);
    }
    out.family(
        "codec_auth_passthrough_total",
        Kind::Counter,
        "Decodes answered with the payloads unchanged under on_deny = \"passthrough\", by reason.",
    );
    for (reason, count) in state.authorizer.failures().passthroughs() {
        out.sample("codec_auth_passthrough_total", &[("reason", reason)], count);
    }
}

fn write_bodies(state: &AppState, out: &mut Exposition) {
    let body = &state.protocol.body;
    out.family("codec_inflight_body_bytes", Kind::Gauge, "Request body bytes held now, across all requests.").sample(
        "codec_inflight_body_bytes",
        &[],
        body.in_use() as u64,
    );
    out.family(
        "codec_inflight_body_bytes_limit",
        Kind::Gauge,
        "server.max_inflight_body_bytes: past it, requests get 503 overloaded.",
    )
    .sample("codec_inflight_body_bytes_limit", &[], body.capacity() as u64);
}

fn write_audit(state: &AppState, out: &mut Exposition) {
    let stats = state.audit.stats();
    let s = stats.snapshot();
    out.family("codec_audit_queue_depth", Kind::Gauge, "Audit events accepted and not yet written.").sample(
        "codec_audit_queue_depth",
        &[],
        s.queue_depth,
    );
    out.family("codec_audit_events_written_total", Kind::Counter, "Audit events written to the database.").sample(
        "codec_audit_events_written_total",
        &[],
        s.written,
    );
    out.family(
        "codec_audit_events_lost_total",
        Kind::Counter,
        "Audit events lost: queue full, or the database stayed down past the retry buffer.",
    )
    .sample("codec_audit_events_lost_total", &[], s.lost);
    out.family(
        "codec_audit_requests_refused_total",
        Kind::Counter,
        "Requests answered 503 because their audit event could not be committed (fail-closed).",
    )
    .sample("codec_audit_requests_refused_total", &[], s.refused);
    out.family("codec_audit_write_failures_total", Kind::Counter, "Batch inserts that failed.").sample(
        "codec_audit_write_failures_total",
        &[],
        s.write_failures,
    );
    out.family("codec_audit_write_duration_seconds", Kind::Histogram, "Latency of successful batch inserts.")
        .histogram("codec_audit_write_duration_seconds", &[], stats.write_latency());
}

/// This replica's readiness and the last background check of each dependency (never run here: a scrape
/// does not wait on a KMS). Alert on `codec_dependency_up == 0`; the failing reason is a label of
/// `codec_dependency_failing`.
fn write_readiness(state: &AppState, out: &mut Exposition) {
    let ready = u8::from(state.readiness.local().ready());
    out.family("codec_ready", Kind::Gauge, "1 while this replica is ready (what the readiness probe sees).").sample(
        "codec_ready",
        &[],
        ready,
    );
    let Some(report) = state.readiness.last_dependencies() else { return };
    out.family("codec_dependency_up", Kind::Gauge, "1 if the dependency's last check passed, by dependency.");
    for (name, result) in &report.checks {
        out.sample("codec_dependency_up", &[("dependency", name.as_str())], u8::from(result.is_ok()));
    }
    out.family(
        "codec_dependency_failing",
        Kind::Gauge,
        "1 for each failing dependency, with the short reason (unreachable, timeout, access denied, …).",
    );
    for (name, result) in &report.checks {
        if let Err(reason) = result {
            out.sample("codec_dependency_failing", &[("dependency", name.as_str()), ("reason", *reason)], 1);
        }
    }
}
