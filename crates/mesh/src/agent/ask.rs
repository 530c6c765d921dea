//! Request/reply: [`MeshAgent::ask`].
//!
//! The request is a record in the target's `asks` lane, sent by the same script as any message
//! but with `require_alive`: when the target has no live presence the script answers
//! "no responders" and writes nothing, in the request's own round trip. Otherwise the request
//! expires at its deadline (on the scripts' clock), and the responder's reply carries that
//! deadline: the asker's inbox stores it under the correlation id when it is in time, or drops
//! and counts it (`late`).
//!
//! A request to a live target is delivered by its send: stored pending and pushed whole to the
//! responder, which takes nothing; the reply's send stores it and pushes it whole to the asker.
//! An ask is then two scripts, one after the other. The stored copies are what survives a
//! dropped connection: a request nobody acknowledged is redelivered after the responder's
//! visibility timeout, and the asker takes its reply from its inbox when its subscription came
//! back or its fallback timer fired. Replies that came by push are forgotten in batches.

use std::time::{Duration, Instant};

use coordkit_core::BoxFuture;
use coordkit_core::time::{RetryDelay, duration_ms};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{oneshot, watch};

use super::error::{AgentError, Result};
use super::types::Reply;
use super::wire::{self, Body, Outgoing, RawSent, RawTaken, code};
use super::{InboxRef, MeshAgent, add};

impl MeshAgent {
    /// Asks `target` a question and waits at most `timeout` for its reply. The outcomes are
    /// distinct: [`Reply::Answer`], [`Reply::Failed`] (the responder's handler failed),
    /// [`Reply::Timeout`] (it was alive and did not answer in time), [`Reply::NoResponders`]
    /// (it was not alive: answered at once, in the request's round trip, nothing written).
    ///
    /// The wait ends on the asker's wake channel (the reply's send publishes there), never by
    /// polling; a reply that comes after the deadline is dropped and counted. Errors reaching
    /// Redis, sending the request or taking its reply, are retried until the deadline: the
    /// request is then sent again under its correlation id (a failed send may have stored it;
    /// a failed take may have taken the reply, its answer lost with the connection), so it may
    /// be answered twice; the asker takes one reply, the other expires with the ask (counted
    /// late). `timeout` is 1 ms to 2^35 ms.
    pub async fn ask<Q, R>(&self, target: &str, request: &Q, timeout: Duration) -> Result<Reply<R>>
    where
        Q: Serialize,
        R: DeserializeOwned,
    {
        let inbox = self.inbox_of(target)?;
        let payload = self.encode(request)?;
        self.ask_inbox(&inbox, target, payload, timeout).await
    }

    /// An ask into `inbox` (an agent's or a capability's); `target` names it in errors. Boxed
    /// as a `dyn Future`: the wait's future is deep, and a caller's `?` on an unboxed one made
    /// rustc's `Send` check overflow its recursion limit.
    pub(super) fn ask_inbox<'a, R>(
        &'a self,
        inbox: &'a InboxRef,
        target: &'a str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Reply<R>>>
    where
        R: DeserializeOwned + 'a,
    {
        Box::pin(self.ask_inbox_unboxed(inbox, target, payload, timeout))
    }

    async fn ask_inbox_unboxed<R>(
        &self,
        inbox: &InboxRef,
        target: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Reply<R>>
    where
        R: DeserializeOwned,
    {
        super::config::timeout_ms(timeout)?;
        let corr = self.next_corr();
        // Subscribe before the request leaves, so the reply's push cannot be missed.
        let own = self.own_wake().await?;
        let (_expecting, pushed) = own.expect_reply(&corr);
        let mut pushed = Some(pushed);
        let mut wake = own.signal(code::LANE_REPLY);
        wake.borrow_and_update();
        let deadline = Instant::now() + timeout;
        let mut retry = RetryDelay::new(Duration::from_millis(10), Duration::from_millis(500));
        // A send whose connection dropped may or may not have stored the request: send it
        // again, under the same correlation id, until the deadline. A request stored twice is
        // answered twice; the asker takes one reply, the other expires with the ask.
        // The request, due in what is left of the timeout.
        let send = || {
            let left = duration_ms(deadline.saturating_duration_since(Instant::now())).max(1);
            let outgoing = Outgoing::request(&corr, left);
            let payload = &payload;
            async move { self.send_raw(inbox, outgoing, payload).await }
        };
        let sent = loop {
            match send().await {
                Ok(sent) => break sent,
                Err(e) if e.is_retryable() => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(e);
                    }
                    tracing::debug!(agent = %self.name(), "sending a request: {e}; trying again");
                    tokio::time::sleep(retry.next_delay().min(left)).await;
                }
                Err(e) => return Err(e),
            }
        };
        retry.reset();
        if sent == RawSent::NoResponders {
            add(&self.inner.counters.no_responders, 1);
            return Ok(Reply::NoResponders);
        }
        // The reply comes pushed whole (a request and its reply are then two round trips);
        // a wake-up (the subscription came back: a push may have been missed) or the
        // fallback timer sends the asker to take it from its inbox instead.
        let fallback = self.inner.config.fallback_wake;
        if let Some(body) = pushed_reply(&mut pushed, &mut wake, timeout.min(fallback)).await {
            return self.pushed_answer(target, &corr, &body);
        }
        // Whether a take failed: it may have run and its answer been lost with the connection,
        // and the reply with it. The request is then sent again, under its correlation id.
        let mut resend = false;
        loop {
            wake.borrow_and_update();
            let past = Instant::now() >= deadline;
            if resend && !past {
                match send().await {
                    Ok(_) => resend = false,
                    Err(e) if e.is_retryable() => {
                        tracing::debug!(agent = %self.name(), "sending a request: {e}; trying again");
                        let left = deadline.saturating_duration_since(Instant::now());
                        tokio::time::sleep(retry.next_delay().min(left)).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            match self.take_raw(&corr).await {
                Ok(RawTaken::Taken { body, .. }) => {
                    add(&self.inner.counters.replies, 1);
                    let body =
                        Body::decode(&body).map_err(|reason| undecodable(target, &corr, reason))?;
                    return reply_of(target, &corr, &body.payload);
                }
                Ok(RawTaken::Malformed) => {
                    return Err(coordkit_core::Error::corrupt(
                        self.keys()[wire::REPLIES].as_str(),
                        format!("the reply to {corr} is not a record (dead-lettered)"),
                    )
                    .into());
                }
                Ok(RawTaken::Absent) => retry.reset(),
                Err(e) if e.is_retryable() && !past => {
                    tracing::debug!(agent = %self.name(), "taking a reply: {e}; asking again");
                    resend = true;
                    let wait = retry
                        .next_delay()
                        .min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
            if past {
                add(&self.inner.counters.timeouts, 1);
                return Ok(Reply::Timeout);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(body) = pushed_reply(&mut pushed, &mut wake, left.min(fallback)).await {
                return self.pushed_answer(target, &corr, &body);
            }
        }
    }

    /// The answer of a reply that came by push; its stored copy is forgotten in the
    /// background, batched with others.
    fn pushed_answer<R: DeserializeOwned>(
        &self,
        target: &str,
        corr: &str,
        body: &Body,
    ) -> Result<Reply<R>> {
        add(&self.inner.counters.replies, 1);
        self.forget_later(corr);
        reply_of(target, corr, &body.payload)
    }

    /// Sends the reply to a request delivered to this agent (`corr` from its body), due by the
    /// request's deadline.
    pub(crate) async fn reply_raw(
        &self,
        to: &str,
        corr: &str,
        result: std::result::Result<Vec<u8>, String>,
        deadline_ms: u64,
    ) -> Result<RawSent> {
        let mut payload = Vec::new();
        match result {
            Ok(bytes) => {
                payload.push(code::REPLY_OK);
                payload.extend_from_slice(&bytes);
            }
            Err(text) => {
                payload.push(code::REPLY_ERR);
                payload.extend_from_slice(text.as_bytes());
            }
        }
        self.check_size(payload.len())?;
        let asker = self.inbox_of(to)?;
        self.send_raw(&asker, Outgoing::reply(corr, deadline_ms), &payload)
            .await
    }
}

/// Waits at most `wait` for the pushed reply or a wake-up; the reply's body if it came.
async fn pushed_reply(
    pushed: &mut Option<oneshot::Receiver<Body>>,
    wake: &mut watch::Receiver<u64>,
    wait: Duration,
) -> Option<Body> {
    let sleep = tokio::time::sleep(wait);
    tokio::pin!(sleep);
    let reply = async {
        match pushed.as_mut() {
            Some(rx) => rx.await.ok(),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        got = reply => {
            if got.is_none() {
                // The route is gone (it cannot be while the guard lives): stop watching it.
                *pushed = None;
            }
            got
        }
        changed = wake.changed() => {
            if changed.is_err() {
                (&mut sleep).await;
            }
            None
        }
        _ = &mut sleep => None,
    }
}

fn undecodable(target: &str, corr: &str, reason: String) -> AgentError {
    AgentError::UndecodableReply {
        from: target.to_owned(),
        corr: corr.to_owned(),
        reason,
    }
}

/// The reply a reply's payload (its status byte, then the answer or the error) says.
fn reply_of<R: DeserializeOwned>(target: &str, corr: &str, payload: &[u8]) -> Result<Reply<R>> {
    match payload.split_first() {
        Some((&code::REPLY_OK, json)) => {
            serde_json::from_slice(json)
                .map(Reply::Answer)
                .map_err(|e| {
                    undecodable(
                        target,
                        corr,
                        format!("not a {}: {e}", std::any::type_name::<R>()),
                    )
                })
        }
        Some((&code::REPLY_ERR, text)) => {
            Ok(Reply::Failed(String::from_utf8_lossy(text).into_owned()))
        }
        _ => Err(undecodable(target, corr, "no reply status".to_owned())),
    }
}
