//! WebSockets opened on a browser session live only as long as the session: the tunnel
//! checks it every `session.websocket_check` and is closed (with a close frame) once the
//! session was logged out, ended by the provider (back-channel logout, a failed refresh,
//! an administrator), replaced by a stronger login, or expired.
//!
//! A bearer-token WebSocket carries no session and is never checked: the token was
//! valid when the connection was made, as for any other request.

use std::sync::Arc;

use serde_json::Value;

use crate::auth::authenticate::access_token_outlived;
use crate::auth::{Identity, SessionInfo};
use crate::forward::websocket::Watch;
use crate::gateway::{Gateway, Runtime};

/// The watch of a tunnel opened with `identity`; `None` when it is not a session's.
pub fn for_tunnel(gw: &Arc<Gateway>, rt: &Runtime, identity: Option<&Identity>) -> Option<Watch> {
    let id = identity?;
    let info = Arc::new(id.session.clone()?);
    let every = rt.session.as_ref()?.settings().websocket_check;
    let provider_sid: Option<Arc<str>> =
        id.claims.get("sid").and_then(Value::as_str).map(Arc::from);
    let sub: Arc<str> = Arc::from(id.subject.as_str());
    let check = gw.clone();
    let metrics = gw.metrics.clone();
    Some(Watch {
        every,
        still_valid: Box::new(move || {
            let (gw, info, provider_sid, sub) = (
                check.clone(),
                info.clone(),
                provider_sid.clone(),
                sub.clone(),
            );
            Box::pin(async move { stands(&gw, &info, provider_sid.as_deref(), &sub).await })
        }),
        on_close: Box::new(move || metrics.websocket_closed()),
    })
}

/// Does the session still stand? Judged as a request of it would be, without refreshing:
/// a session that can refresh its access token stands until its lifetime ends.
async fn stands(gw: &Gateway, s: &SessionInfo, provider_sid: Option<&str>, sub: &str) -> bool {
    let now = crate::unix_now();
    if s.exp <= now {
        return false;
    }
    let rt = gw.runtime();
    let Some(codec) = &rt.session else {
        // A reload turned sessions off: no session stands.
        return false;
    };
    let leeway = rt.config.tokens.leeway.as_secs();
    if access_token_outlived(codec.settings(), leeway, s.at_exp, s.renewable, now) {
        return false;
    }
    if gw.revocations.is_ended(&s.sid, provider_sid, sub, s.iat) {
        return false;
    }
    match &gw.store {
        // Every ending (logout, back-channel logout, refresh failure) deletes the key. A
        // store that does not answer ends nothing: the next request of the session will
        // be refused (503) if it stays down.
        Some(store) => store.get(&s.sid).await.map_or(true, |v| v.is_some()),
        None => true,
    }
}
