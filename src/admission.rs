//! The decision for a live request: [`decision::decide`] with the request's own
//! credential, recorded in the request's context, and its outcome for the caller (the
//! main listener and forward-auth alike).

use std::sync::Arc;

use crate::auth::Identity;
use crate::authz::AllowReason;
use crate::context::{LoginStart, RequestContext};
use crate::decision::{self, Asked, Verdict};
use crate::gateway::{Gateway, Runtime};
use crate::response::Denial;
use crate::rules::StepUp;

/// What the caller does with an admitted request.
#[derive(Debug)]
pub enum Admitted {
    /// Allowed: forward it, with this identity (if any) in the identity headers.
    Forward(Option<Arc<Identity>>),
    /// A CORS preflight allowed by `cors_preflight = "allow"`: forward it with no
    /// identity and no credential (its credential was not judged, so none is passed on).
    Preflight,
    /// A browser without a credential (or whose session is below a rule's step-up) on
    /// rules that let it log in: start a login that returns to this (validated) `rd`,
    /// asking the provider for this authentication level.
    LogIn(String, Option<StepUp>),
}

/// Decides the request and records the verdict in `ctx` (rule, upstream, subject, the
/// cookies of a refreshed or ended session).
pub async fn authorize(
    gw: &Gateway,
    rt: &Runtime,
    ctx: &mut RequestContext,
    asked: &Asked<'_>,
) -> Result<Admitted, Denial> {
    let mut auth = gw.authenticator(rt);
    let verdict = decision::decide(&rt.config.rules, asked, &mut auth).await;
    ctx.set_cookies.append(&mut auth.set_cookies);
    record(ctx, &verdict);
    let Verdict {
        identity, outcome, ..
    } = &verdict;
    let Err(refusal) = outcome else {
        ctx.reason = verdict.reason();
        if matches!(outcome, Ok(AllowReason::CorsPreflight)) {
            return Ok(Admitted::Preflight);
        }
        return Ok(Admitted::Forward(identity.clone()));
    };
    if (verdict.may_log_in() || verdict.step_up().is_some()) && ctx.browser && rt.session.is_some()
    {
        let step_up = verdict.login_level().cloned();
        if step_up.is_some() {
            gw.metrics.step_up("started");
        }
        return match std::mem::take(&mut ctx.login) {
            LoginStart::Redirect => Ok(Admitted::LogIn(
                match asked.query {
                    Some(q) => format!("{}?{q}", asked.path.as_str()),
                    None => asked.path.as_str().to_owned(),
                },
                step_up,
            )),
            LoginStart::RedirectTo(rd) => Ok(Admitted::LogIn(rd, step_up)),
            // The login URL it names asks for the level of the rule of its `rd`.
            LoginStart::Offer(login) => Err(Denial::LoginRequired { login }),
        };
    }
    if let (Some(id), decision::Refusal::Rule(denied)) = (identity, refusal) {
        tracing::debug!(subject = %id.subject, rule = denied.rule, reason = %denied.reason.explain(), "denied");
    }
    Err(refusal.clone().into())
}

fn record(ctx: &mut RequestContext, verdict: &Verdict<'_>) {
    ctx.rule = verdict.rule();
    ctx.upstream = verdict.upstream();
    if let Some(id) = &verdict.identity {
        ctx.subject = Some(id.subject.clone());
        if !id.from_bearer {
            ctx.signed_in = Some(id.user().to_owned());
        }
    }
}
