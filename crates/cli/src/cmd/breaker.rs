//! `coordkit breaker …`: state and figures, operator states.

use coordkit_circuit_breaker::{CircuitBreaker, Forced, Snapshot, State};
use serde_json::{Value, json};

use super::listing::{malformed_json, names_report};
use super::{Ctx, any_exists};
use crate::app::BreakerCommand;
use crate::fail::{Fail, Outcome};
use crate::out::{Report, fields, table};
use crate::time::timestamp_or_dash;

pub(crate) async fn run(ctx: &Ctx, command: &BreakerCommand) -> Outcome {
    match command {
        BreakerCommand::Ls { state } => ctx.read(|| list(ctx, *state)).await,
        BreakerCommand::Show { name } => {
            let breaker = open(ctx, name, true).await?;
            ctx.read(|| show(&breaker)).await
        }
        BreakerCommand::ForceOpen { name } => {
            ctx.no_watch("breaker force-open")?;
            let breaker = open(ctx, name, false).await?;
            let what = format!("force breaker {name} open (every call rejected until cleared)");
            ctx.change(&what, change(&breaker, Some(Forced::Open)))
                .await
        }
        BreakerCommand::ForceClosed { name, no_count } => {
            ctx.no_watch("breaker force-closed")?;
            let breaker = open(ctx, name, false).await?;
            let (to, how) = if *no_count {
                (Forced::Disabled, "counting nothing")
            } else {
                (Forced::MetricsOnly, "still counting outcomes")
            };
            let what =
                format!("force breaker {name} closed (every call admitted, {how}, until cleared)");
            ctx.change(&what, change(&breaker, Some(to))).await
        }
        BreakerCommand::Clear { name } => {
            ctx.no_watch("breaker clear")?;
            let breaker = open(ctx, name, true).await?;
            let what = format!("clear breaker {name} (closed, with an empty window)");
            ctx.change(&what, change(&breaker, None)).await
        }
    }
}

/// The breaker `name`, under the rules its state was last written with: the breaker's
/// script applies the caller's rules (window size, open and half-open periods), so a handle
/// with other rules would misread the window and could move the breaker differently from its
/// own processes. A breaker keeps no state while it is closed and unused (and its state
/// expires when idle), so only `show` and `clear` need one stored: forcing one that has none
/// is how an operator stops calls to a component before its breaker ever tripped.
async fn open(ctx: &Ctx, name: &str, must_exist: bool) -> Outcome<CircuitBreaker> {
    let breaker = CircuitBreaker::builder(&ctx.pool, &ctx.keyspace, name).build()?;
    let keys = [breaker.state_key().clone(), breaker.probes_key().clone()];
    let exists = any_exists(&ctx.pool, &keys).await?;
    if must_exist && !exists {
        return Err(Fail::failed(format!(
            "unknown breaker {name:?} in namespace {:?}: no state stored (never used, or \
             expired while closed and idle)",
            ctx.namespace()
        )));
    }
    match breaker.stored_config().await? {
        Some(rules) => Ok(CircuitBreaker::builder(&ctx.pool, &ctx.keyspace, name)
            .config(rules)
            .build()?),
        None if exists => Err(Fail::failed(format!(
            "breaker {name:?} in namespace {:?} has no stored rules yet (its state was written \
             by a coordkit before 0.2, or only by its probes): its next transition or recorded \
             call stores them; until then use the application's own handle",
            ctx.namespace()
        ))),
        // Nothing stored: the rules do not matter to a force, which starts the state.
        None => Ok(breaker),
    }
}

/// Every breaker of the namespace (one call), and with `with_state` each one's state, read
/// under its stored rules.
async fn list(ctx: &Ctx, with_state: bool) -> Outcome<Report> {
    let listing = CircuitBreaker::list(&ctx.pool, &ctx.keyspace).await?;
    if !with_state {
        return Ok(names_report("breaker", ctx.namespace(), &listing));
    }
    let mut rows = Vec::with_capacity(listing.names.len());
    let mut breakers = Vec::with_capacity(listing.names.len());
    for name in &listing.names {
        // Listed, its keys may have expired since (closed and idle): shown as gone.
        let breaker = match open(ctx, name, true).await {
            Ok(breaker) => breaker,
            Err(fail) if fail.code == 1 => {
                rows.push(vec![
                    name.clone(),
                    "(no state)".to_owned(),
                    "-".to_owned(),
                    "-".to_owned(),
                ]);
                breakers.push(json!({ "breaker": name, "state": null }));
                continue;
            }
            Err(fail) => return Err(fail),
        };
        let s = breaker.snapshot().await?;
        rows.push(vec![
            name.clone(),
            s.state.as_str().to_owned(),
            format!("{}/{}", s.failures, s.calls),
            s.epoch.to_string(),
        ]);
        breakers.push(snapshot_json(name, &s));
    }
    let mut human = table(&["breaker", "state", "failed/calls", "epoch"], rows);
    human.push_str(&format!(
        "{} breaker(s) in namespace {}\n",
        listing.names.len(),
        ctx.namespace()
    ));
    Ok(Report {
        human,
        json: json!({
            "kind": "breaker",
            "names": listing.names,
            "breakers": breakers,
            "malformed": malformed_json(&listing),
        }),
    })
}

fn snapshot_json(name: &str, s: &Snapshot) -> Value {
    json!({
        "breaker": name,
        "state": s.state.as_str(),
        "epoch": s.epoch,
        "calls": s.calls,
        "failures": s.failures,
        "slow_calls": s.slow_calls,
        "failure_rate": s.failure_rate(),
        "slow_call_rate": s.slow_call_rate(),
        "consecutive_failures": s.consecutive_failures,
        "opened_at_ms": s.opened_at_ms,
        "open_until_ms": s.open_until_ms,
        "half_open_successes": s.half_open_successes,
        "probes_in_flight": s.probes_in_flight,
        "reopenings": s.reopenings,
    })
}

async fn show(breaker: &CircuitBreaker) -> Outcome<Report> {
    let s = breaker.snapshot().await?;
    let open_until = match s.state {
        State::Open => timestamp_or_dash(Some(s.open_until_ms)),
        _ => "-".to_owned(),
    };
    let human = fields([
        ("breaker", breaker.name().to_owned()),
        ("state", s.state.as_str().to_owned()),
        ("epoch", s.epoch.to_string()),
        ("calls in window", s.calls.to_string()),
        (
            "failures",
            format!("{} ({:.1}%)", s.failures, s.failure_rate() * 100.0),
        ),
        (
            "slow calls",
            format!("{} ({:.1}%)", s.slow_calls, s.slow_call_rate() * 100.0),
        ),
        ("consecutive failures", s.consecutive_failures.to_string()),
        ("last opened", timestamp_or_dash(Some(s.opened_at_ms))),
        ("open until", open_until),
        ("half-open successes", s.half_open_successes.to_string()),
        ("probes in flight", s.probes_in_flight.to_string()),
        ("re-openings", s.reopenings.to_string()),
    ]);
    Ok(Report {
        human,
        json: snapshot_json(breaker.name(), &s),
    })
}

/// Forces (`Some`) or clears (`None`) the breaker, saying the state before and after.
async fn change(breaker: &CircuitBreaker, to: Option<Forced>) -> Outcome<Report> {
    let before = breaker.snapshot().await?.state;
    let (after, epoch) = match to {
        Some(to) => breaker.force(to).await?,
        None => breaker.clear().await?,
    };
    let action = match to {
        Some(Forced::Open) => "force_open",
        Some(_) => "force_closed",
        None => "clear",
    };
    Ok(Report {
        human: format!(
            "breaker {}: {} -> {} (epoch {epoch})\n",
            breaker.name(),
            before.as_str(),
            after.as_str()
        ),
        json: json!({
            "breaker": breaker.name(),
            "action": action,
            "before": before.as_str(),
            "state": after.as_str(),
            "epoch": epoch,
        }),
    })
}
