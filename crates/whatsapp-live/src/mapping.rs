//! Pure translations between whatsapp-rust and wagate: library events into
//! what the adapter observed, library errors into [`WhatsAppError`], JIDs
//! both ways, and protocol answers into domain values. No socket needed to
//! test any of it.

use std::time::Duration;

use time::OffsetDateTime;
use wagate_domain::{
    About, Absence, Jid, JidKind, LastError, PictureType, ProfilePicture, SessionErrorCode,
};
use wagate_whatsapp_port::{Refusal, SessionEventKind, WhatsAppError};
use whatsapp_rust::pair_code::PairError;
use whatsapp_rust::types::events::{ConnectFailureReason, Event};
use whatsapp_rust::usync::{UsyncOutcome, UsyncProtocolKind, UsyncProtocolResult, UsyncResponse};
use whatsapp_rust::{ClientError, IqError, Server};

/// What one library event means to the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Observed {
    /// A QR code to show, valid for `ttl`.
    Qr { code: String, ttl: Duration },
    /// The phone linked us; a login follows.
    PairSuccess,
    /// Logged in and ready.
    Connected,
    /// The connection dropped; `String` says how.
    Lost(String),
    /// The server asked us to slow down (stream error 429).
    RateLimited,
    /// The QR codes ran out but a phone-number code is still valid: keep
    /// waiting for it, without a QR.
    QrExhaustedCodePending,
    /// WhatsApp refused the connection for now; try again later.
    Refused(LastError),
    /// This attempt is over for good.
    Ended(Ending),
}

/// How an attempt ended for good, and what to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ending {
    /// Report `LoggedOut` (the link is gone: erase the keys) rather than
    /// `Disconnected` (the link is kept).
    pub unlinked: bool,
    /// Why.
    pub error: LastError,
}

impl Ending {
    fn unlinked(code: SessionErrorCode, message: impl Into<String>) -> Self {
        Self {
            unlinked: true,
            error: last_error(code, message),
        }
    }

    fn kept(code: SessionErrorCode, message: impl Into<String>) -> Self {
        Self {
            unlinked: false,
            error: last_error(code, message),
        }
    }

    /// The event that reports this ending.
    pub(crate) fn event(&self) -> SessionEventKind {
        if self.unlinked {
            SessionEventKind::LoggedOut {
                error: Some(self.error.clone()),
            }
        } else {
            SessionEventKind::Disconnected {
                error: Some(self.error.clone()),
            }
        }
    }
}

pub(crate) fn last_error(code: SessionErrorCode, message: impl Into<String>) -> LastError {
    LastError {
        code,
        message: message.into(),
    }
}

/// What a library event means, or `None` for events the adapter ignores.
pub(crate) fn observe(event: &Event) -> Option<Observed> {
    use SessionErrorCode as C;
    Some(match event {
        Event::PairingQrCode(qr) => Observed::Qr {
            code: qr.code.clone(),
            ttl: qr.timeout,
        },
        Event::PairSuccess(_) => Observed::PairSuccess,
        Event::Connected(_) => Observed::Connected,
        Event::Disconnected(d) => Observed::Lost(d.reason.to_string()),
        Event::StreamError(e) if e.code == "429" => Observed::RateLimited,
        Event::LoggedOut(l) => {
            let mut message = match l.reason {
                ConnectFailureReason::AccountLocked => {
                    "WhatsApp locked the account and unlinked this device".to_owned()
                }
                _ => "the phone unlinked this device".to_owned(),
            };
            if let Some(text) = l
                .logout_message
                .as_ref()
                .and_then(|m| m.header.clone().or_else(|| m.subtext.clone()))
                .filter(|t| !t.trim().is_empty())
            {
                message.push_str(": ");
                message.push_str(text.trim());
            }
            Observed::Ended(Ending::unlinked(C::LoggedOutByPhone, message))
        }
        Event::TemporaryBan(b) => {
            let minutes = b.expire.num_minutes().max(1);
            Observed::Ended(Ending::kept(
                C::TemporaryBan,
                format!(
                    "WhatsApp banned the account for about {minutes} min (reason {})",
                    b.code
                ),
            ))
        }
        Event::ClientOutdated(_) => Observed::Ended(Ending::kept(
            C::ClientOutdated,
            "WhatsApp refused the announced client version as outdated \
             (update wagate, or unpin whatsapp.live.version)",
        )),
        Event::StreamReplaced(_) => Observed::Ended(Ending::kept(
            C::StreamReplaced,
            "another client connected with this device's keys and replaced this connection",
        )),
        Event::ConnectFailure(f) => {
            let mut message = format!("WhatsApp refused the connection ({:?})", f.reason);
            if let Some(text) = f.message.as_deref().filter(|t| !t.trim().is_empty()) {
                message.push_str(": ");
                message.push_str(text.trim());
            }
            if f.reason.should_reconnect() {
                Observed::Refused(last_error(C::Unreachable, message))
            } else {
                Observed::Ended(Ending::kept(C::ConnectFailure, message))
            }
        }
        Event::PairError(e) => Observed::Ended(Ending::unlinked(
            C::PairingFailed,
            format!("pairing failed: {}", e.error),
        )),
        Event::PairingQrCodesExhausted(x) if !x.disconnected => Observed::QrExhaustedCodePending,
        Event::PairingQrCodesExhausted(_) => Observed::Ended(Ending::unlinked(
            C::PairingFailed,
            "no QR code was scanned in time; connect again for new ones",
        )),
        Event::QrScannedWithoutMultidevice(_) => Observed::Ended(Ending::unlinked(
            C::PairingFailed,
            "the QR code was scanned by a phone without multi-device support",
        )),
        _ => return None,
    })
}

/// Everything the runner needs to know about one pass of the client's run
/// loop (one connect attempt and the connection it made, if any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Pass {
    /// The transport (WebSocket) was opened.
    pub transport_opened: bool,
    /// Why the transport could not be opened, if it was tried and failed.
    pub transport_error: Option<String>,
    /// A QR code was shown during the pass.
    pub saw_qr: bool,
    /// The phone linked us during the pass.
    pub saw_pair_success: bool,
    /// The pass reached `Connected`.
    pub saw_connected: bool,
    /// A `Disconnected` event was reported (and published) in the pass.
    pub lost: bool,
    /// WhatsApp refused the connection for now (already published).
    pub refused: bool,
    /// The server asked for a slower pace.
    pub rate_limited: bool,
    /// The pass ended for good.
    pub ending: Option<Ending>,
}

/// What to do once a pass is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Stop for good (the ending, if any, is reported by the caller).
    Stop,
    /// Connect again after `attempt`'s backoff; publish `report` first.
    Retry {
        /// The backoff step to wait (`None`: at once).
        attempt: Option<u32>,
        /// What to publish before waiting, if anything.
        report: Option<LastError>,
    },
}

/// How many extra backoff steps a rate-limit answer costs.
pub(crate) const RATE_LIMIT_PENALTY: u32 = 5;

/// Decides what follows a pass, given how many failed attempts came before
/// it (`failures`, reset by every `Connected`) and the server URL for the
/// message.
pub(crate) fn next_after(pass: &Pass, failures: u32, url: &str) -> Next {
    if pass.ending.is_some() {
        return Next::Stop;
    }
    let penalty = if pass.rate_limited {
        RATE_LIMIT_PENALTY
    } else {
        0
    };
    if pass.saw_pair_success && !pass.saw_connected {
        // WhatsApp closes the stream right after pairing (code 515) and
        // expects the login at once.
        return Next::Retry {
            attempt: None,
            report: None,
        };
    }
    if pass.lost || pass.refused {
        // Already reported as it happened.
        return Next::Retry {
            attempt: Some(failures + penalty),
            report: None,
        };
    }
    if pass.saw_connected || pass.saw_qr {
        // The server ended the stream on purpose without a reason we could
        // see (e.g. a restart request): come back soon, nothing to report.
        return Next::Retry {
            attempt: Some(failures + penalty),
            report: None,
        };
    }
    let message = match (&pass.transport_error, pass.transport_opened) {
        (Some(e), _) => format!("could not reach WhatsApp at {url}: {e}"),
        (None, true) => format!(
            "reached {url} but the WhatsApp handshake or login failed \
             (is it a WhatsApp server, and its certificate accepted?)"
        ),
        (None, false) => format!("could not reach WhatsApp at {url}"),
    };
    Next::Retry {
        attempt: Some(failures + penalty),
        report: Some(last_error(SessionErrorCode::Unreachable, message)),
    }
}

/// The library JID of a domain JID.
pub(crate) fn to_wa_jid(jid: &Jid) -> whatsapp_rust::Jid {
    let server = match jid.kind() {
        JidKind::User => Server::Pn,
        JidKind::Lid => Server::Lid,
        JidKind::Group => Server::Group,
        JidKind::Channel => Server::Newsletter,
    };
    whatsapp_rust::Jid::new(jid.user_part(), server)
}

/// The bare domain JID of a library JID, when it is of a kind wagate knows.
pub(crate) fn from_wa_jid(jid: &whatsapp_rust::Jid) -> Option<Jid> {
    let server = match jid.server {
        Server::Pn => "s.whatsapp.net",
        Server::Lid => "lid",
        Server::Group => "g.us",
        Server::Newsletter => "newsletter",
        _ => return None,
    };
    Jid::parse(&format!("{}@{server}", jid.user)).ok()
}

/// `ABCD1234` → `ABCD-1234`, as people read pairing codes.
pub(crate) fn format_pairing_code(code: &str) -> String {
    let clean: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if clean.len() == 8 {
        format!("{}-{}", &clean[..4], &clean[4..])
    } else {
        clean
    }
}

/// A library profile picture as the domain's.
pub(crate) fn picture(
    p: whatsapp_rust::ProfilePicture,
    kind: PictureType,
) -> Result<ProfilePicture, WhatsAppError> {
    if p.url.is_empty() {
        return Err(WhatsAppError::NotFound(None));
    }
    Ok(ProfilePicture {
        id: p.id,
        url: p.url,
        kind,
        direct_path: p.direct_path.filter(|s| !s.is_empty()),
        hash: p.hash.filter(|s| !s.is_empty()),
    })
}

/// The error of a profile-picture IQ: WhatsApp answers 404 when there is no
/// picture and 401 when privacy settings hide it.
pub(crate) fn picture_error(e: &IqError) -> WhatsAppError {
    match e {
        IqError::ServerError { code: 404, .. } => WhatsAppError::NotFound(Some(Absence::NotSet)),
        IqError::ServerError {
            code: 401 | 403, ..
        } => WhatsAppError::NotFound(Some(Absence::Hidden)),
        other => iq_error(other),
    }
}

/// The common mapping of a failed IQ.
pub(crate) fn iq_error(e: &IqError) -> WhatsAppError {
    match e {
        IqError::Timeout => WhatsAppError::Timeout,
        IqError::NotConnected => WhatsAppError::NotConnected,
        IqError::ClientState(inner) => match inner.as_ref() {
            ClientError::NotConnected | ClientError::NotLoggedIn => WhatsAppError::NotConnected,
            ClientError::Iq(iq) => iq_error(iq),
            other => WhatsAppError::Unavailable(format!("the connection failed: {other}")),
        },
        IqError::Socket(_) | IqError::Disconnected(_) | IqError::InternalChannelClosed => {
            WhatsAppError::Unavailable(format!("the connection failed: {e}"))
        }
        IqError::EncryptSend(_) => WhatsAppError::Unavailable(format!("sending failed: {e}")),
        IqError::ServerError { code, text, .. } => server_error(*code, text),
        IqError::UnexpectedResponseType { .. }
        | IqError::DuplicateRequestId(_)
        | IqError::EncodeError(_)
        | IqError::ParseError(_) => WhatsAppError::Internal(format!("{e:#}")),
        _ => WhatsAppError::Internal(format!("{e:#}")),
    }
}

/// WhatsApp's error code: a timeout, a transient failure (429, 5xx), or a
/// refusal for good (any other 4xx: asking again the same way is refused
/// again, so a send fails at once instead of being retried for a day).
fn server_error(code: u16, text: &str) -> WhatsAppError {
    match code {
        408 | 504 => WhatsAppError::Timeout,
        429 | 500..=599 => {
            WhatsAppError::Unavailable(format!("WhatsApp answered {code} {text}").trim().into())
        }
        400..=499 => WhatsAppError::Refused(Refusal::Server(code)),
        _ => WhatsAppError::Internal(format!("WhatsApp answered {code} {text}").trim().into()),
    }
}

/// The error of a phone-number pairing request.
pub(crate) fn pair_error(e: &PairError) -> WhatsAppError {
    use whatsapp_rust::wacore::pair_code::PairCodeError as P;
    match e {
        PairError::RequestFailed(iq) => iq_error(iq),
        PairError::PairCode(P::CodeAlreadyOutstanding { remaining }) => {
            WhatsAppError::Unavailable(format!(
                "a pairing code for another phone number is still valid for {} s; \
                 try again after it expires",
                remaining.as_secs().max(1)
            ))
        }
        PairError::PairCode(
            P::PhoneNumberRequired | P::PhoneNumberTooShort | P::PhoneNumberNotInternational,
        ) => WhatsAppError::InvalidTarget(e.to_string()),
        other => WhatsAppError::Internal(other.to_string()),
    }
}

/// The about text of `queried` in a usync answer (status protocol), with
/// the LID the same answer gave, if any.
pub(crate) fn about_from_usync(
    response: &UsyncResponse,
    queried: &whatsapp_rust::Jid,
) -> (Result<About, WhatsAppError>, Option<whatsapp_rust::Jid>) {
    let user = response
        .users
        .iter()
        .find(|u| u.id.as_ref().is_some_and(|id| id.user == queried.user))
        .or_else(|| response.users.first());
    let Some(user) = user else {
        return (Err(WhatsAppError::NotFound(None)), None);
    };
    let lid = match user.protocol(UsyncProtocolKind::Lid) {
        Some(UsyncProtocolResult::Lid(UsyncOutcome::Value(Some(lid)))) => Some(lid.clone()),
        _ => None,
    };
    let about = match user.protocol(UsyncProtocolKind::Status) {
        Some(UsyncProtocolResult::Status(UsyncOutcome::Value(status))) => {
            match status.status.as_deref().filter(|s| !s.is_empty()) {
                Some(text) => Ok(About {
                    text: text.to_owned(),
                    set_at: status
                        .timestamp
                        .filter(|t| *t > 0)
                        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok()),
                }),
                None => Err(WhatsAppError::NotFound(Some(Absence::NotSet))),
            }
        }
        Some(UsyncProtocolResult::Status(UsyncOutcome::Error(e))) => match e.code {
            Some(404) => Err(WhatsAppError::NotFound(Some(Absence::NotSet))),
            Some(401 | 403) => Err(WhatsAppError::NotFound(Some(Absence::Hidden))),
            Some(code) => Err(server_error(code, e.text.as_deref().unwrap_or(""))),
            None => Err(WhatsAppError::NotFound(None)),
        },
        _ => Err(WhatsAppError::NotFound(None)),
    };
    (about, lid)
}

#[cfg(test)]
mod tests {
    use whatsapp_rust::types::events as ev;

    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    #[test]
    fn jids_round_trip() {
        for s in [
            "14155550123@s.whatsapp.net",
            "123456789012345@lid",
            "120363025246125486@g.us",
            "120363144038483540@newsletter",
        ] {
            let wa = to_wa_jid(&jid(s));
            assert_eq!(wa.to_string(), s);
            assert_eq!(from_wa_jid(&wa), Some(jid(s)));
        }
        let device: whatsapp_rust::Jid = "14155550123:12@s.whatsapp.net".parse().unwrap();
        assert_eq!(
            from_wa_jid(&device),
            Some(jid("14155550123@s.whatsapp.net")),
            "device dropped"
        );
        let broadcast: whatsapp_rust::Jid = "status@broadcast".parse().unwrap();
        assert_eq!(from_wa_jid(&broadcast), None);
    }

    #[test]
    fn pairing_codes_are_dashed() {
        assert_eq!(format_pairing_code("abcd1234"), "ABCD-1234");
        assert_eq!(format_pairing_code("ABCD-1234"), "ABCD-1234");
        assert_eq!(format_pairing_code("ABC"), "ABC");
    }

    #[test]
    fn qr_and_pairing_events() {
        let qr = Event::PairingQrCode(
            ev::PairingQrCode::builder()
                .code("2@abc".into())
                .timeout(Duration::from_secs(60))
                .build(),
        );
        assert_eq!(
            observe(&qr),
            Some(Observed::Qr {
                code: "2@abc".into(),
                ttl: Duration::from_secs(60)
            })
        );
        let ok = Event::PairSuccess(
            ev::PairSuccess::builder()
                .id("15550001111@s.whatsapp.net".parse().unwrap())
                .lid("100000000000001@lid".parse().unwrap())
                .business_name(String::new())
                .platform("android".into())
                .build(),
        );
        assert_eq!(observe(&ok), Some(Observed::PairSuccess));
        assert_eq!(
            observe(&Event::Connected(ev::Connected::builder().build())),
            Some(Observed::Connected)
        );
        let exhausted = Event::PairingQrCodesExhausted(
            ev::PairingQrCodesExhausted::builder()
                .disconnected(true)
                .build(),
        );
        let Some(Observed::Ended(end)) = observe(&exhausted) else {
            panic!("exhausted QR codes end the attempt");
        };
        assert!(end.unlinked);
        assert_eq!(end.error.code, SessionErrorCode::PairingFailed);
        let pending = Event::PairingQrCodesExhausted(
            ev::PairingQrCodesExhausted::builder()
                .disconnected(false)
                .build(),
        );
        assert_eq!(observe(&pending), Some(Observed::QrExhaustedCodePending));
        let no_md =
            Event::QrScannedWithoutMultidevice(ev::QrScannedWithoutMultidevice::builder().build());
        assert!(matches!(
            observe(&no_md),
            Some(Observed::Ended(Ending { unlinked: true, error })) if error.code == SessionErrorCode::PairingFailed
        ));
        let pair_err = Event::PairError(
            ev::PairError::builder()
                .id(whatsapp_rust::Jid::default())
                .lid(whatsapp_rust::Jid::default())
                .business_name(String::new())
                .platform(String::new())
                .error("bad hmac".into())
                .build(),
        );
        let Some(Observed::Ended(end)) = observe(&pair_err) else {
            panic!("pair errors end the attempt");
        };
        assert!(end.error.message.contains("bad hmac"));
    }

    #[test]
    fn terminal_connection_events() {
        let logged_out = Event::LoggedOut(
            ev::LoggedOut::builder()
                .on_connect(false)
                .reason(ConnectFailureReason::LoggedOut)
                .build(),
        );
        let Some(Observed::Ended(end)) = observe(&logged_out) else {
            panic!("logged out ends");
        };
        assert_eq!(
            end.event(),
            SessionEventKind::LoggedOut {
                error: Some(last_error(
                    SessionErrorCode::LoggedOutByPhone,
                    "the phone unlinked this device"
                ))
            }
        );

        let ban = Event::TemporaryBan(
            ev::TemporaryBan::builder()
                .code(ev::TempBanReason::BlockedByUsers)
                .expire(whatsapp_rust::chrono::Duration::seconds(3600))
                .build(),
        );
        let Some(Observed::Ended(end)) = observe(&ban) else {
            panic!("bans end");
        };
        assert!(!end.unlinked, "a ban keeps the link");
        assert_eq!(end.error.code, SessionErrorCode::TemporaryBan);
        assert!(
            end.error.message.contains("60 min"),
            "{}",
            end.error.message
        );

        for (event, code) in [
            (
                Event::ClientOutdated(ev::ClientOutdated::builder().build()),
                SessionErrorCode::ClientOutdated,
            ),
            (
                Event::StreamReplaced(ev::StreamReplaced::builder().build()),
                SessionErrorCode::StreamReplaced,
            ),
            (
                Event::ConnectFailure(
                    ev::ConnectFailure::builder()
                        .reason(ConnectFailureReason::BadUserAgent)
                        .build(),
                ),
                SessionErrorCode::ConnectFailure,
            ),
        ] {
            let Some(Observed::Ended(end)) = observe(&event) else {
                panic!("{event:?} ends");
            };
            assert_eq!(end.error.code, code);
            assert!(matches!(
                end.event(),
                SessionEventKind::Disconnected { error: Some(_) }
            ));
        }

        let busy = Event::ConnectFailure(
            ev::ConnectFailure::builder()
                .reason(ConnectFailureReason::ServiceUnavailable)
                .build(),
        );
        assert!(matches!(
            observe(&busy),
            Some(Observed::Refused(LastError {
                code: SessionErrorCode::Unreachable,
                ..
            }))
        ));
    }

    #[test]
    fn transient_events() {
        let lost = Event::Disconnected(
            ev::Disconnected::builder()
                .reason(whatsapp_rust::wacore::net::DisconnectReason::StreamEnded)
                .build(),
        );
        assert_eq!(
            observe(&lost),
            Some(Observed::Lost("stream ended (EOF)".into()))
        );
        let slow = Event::StreamError(ev::StreamError::builder().code("429".into()).build());
        assert_eq!(observe(&slow), Some(Observed::RateLimited));
        let other = Event::StreamError(ev::StreamError::builder().code("503".into()).build());
        assert_eq!(observe(&other), None);
    }

    #[test]
    fn decisions_after_a_pass() {
        let url = "wss://web.whatsapp.com/ws/chat";
        // Could not even open the socket.
        let pass = Pass {
            transport_error: Some("Connection refused".into()),
            ..Pass::default()
        };
        let Next::Retry {
            attempt: Some(3),
            report: Some(e),
        } = next_after(&pass, 3, url)
        else {
            panic!("retry with a report");
        };
        assert_eq!(e.code, SessionErrorCode::Unreachable);
        assert!(e.message.contains("Connection refused") && e.message.contains(url));
        // Socket opened, handshake failed.
        let pass = Pass {
            transport_opened: true,
            ..Pass::default()
        };
        assert!(matches!(
            next_after(&pass, 0, url),
            Next::Retry {
                report: Some(LastError {
                    code: SessionErrorCode::Unreachable,
                    ..
                }),
                ..
            }
        ));
        // Just paired: log in at once.
        let pass = Pass {
            transport_opened: true,
            saw_pair_success: true,
            ..Pass::default()
        };
        assert_eq!(
            next_after(&pass, 4, url),
            Next::Retry {
                attempt: None,
                report: None
            }
        );
        // Lost after connecting: already reported.
        let pass = Pass {
            transport_opened: true,
            saw_connected: true,
            lost: true,
            ..Pass::default()
        };
        assert_eq!(
            next_after(&pass, 0, url),
            Next::Retry {
                attempt: Some(0),
                report: None
            }
        );
        // Rate limited costs extra steps.
        let pass = Pass {
            lost: true,
            rate_limited: true,
            ..Pass::default()
        };
        assert_eq!(
            next_after(&pass, 1, url),
            Next::Retry {
                attempt: Some(1 + RATE_LIMIT_PENALTY),
                report: None
            }
        );
        // Ended: stop.
        let pass = Pass {
            ending: Some(Ending::unlinked(SessionErrorCode::LoggedOutByPhone, "x")),
            lost: true,
            ..Pass::default()
        };
        assert_eq!(next_after(&pass, 0, url), Next::Stop);
    }

    #[test]
    fn iq_errors() {
        assert_eq!(iq_error(&IqError::Timeout), WhatsAppError::Timeout);
        assert_eq!(
            iq_error(&IqError::NotConnected),
            WhatsAppError::NotConnected
        );
        assert_eq!(
            iq_error(&IqError::ClientState(Box::new(ClientError::NotLoggedIn))),
            WhatsAppError::NotConnected
        );
        assert!(matches!(
            iq_error(&IqError::InternalChannelClosed),
            WhatsAppError::Unavailable(_)
        ));
        let server = |code| IqError::ServerError {
            code,
            text: "x".into(),
            error_type: None,
            backoff: None,
        };
        assert!(matches!(
            iq_error(&server(503)),
            WhatsAppError::Unavailable(_)
        ));
        assert!(matches!(
            iq_error(&server(429)),
            WhatsAppError::Unavailable(_)
        ));
        assert_eq!(iq_error(&server(408)), WhatsAppError::Timeout);
        // A 4xx is a refusal for good (a send fails at once, not retried).
        for code in [400, 403, 406, 479] {
            assert_eq!(
                iq_error(&server(code)),
                WhatsAppError::Refused(Refusal::Server(code))
            );
        }
        assert!(matches!(
            iq_error(&IqError::ParseError(whatsapp_rust::anyhow::anyhow!("bad"))),
            WhatsAppError::Internal(_)
        ));
        assert_eq!(
            picture_error(&server(404)),
            WhatsAppError::NotFound(Some(Absence::NotSet))
        );
        assert_eq!(
            picture_error(&server(401)),
            WhatsAppError::NotFound(Some(Absence::Hidden))
        );
        assert_eq!(picture_error(&IqError::Timeout), WhatsAppError::Timeout);
    }

    #[test]
    fn pictures() {
        let p = whatsapp_rust::ProfilePicture {
            id: "1712345678".into(),
            url: "https://pps.whatsapp.net/v/x.jpg".into(),
            direct_path: Some("/v/x.jpg".into()),
            hash: Some(String::new()),
        };
        let got = picture(p, PictureType::Preview).unwrap();
        assert_eq!(got.kind, PictureType::Preview);
        assert_eq!(got.direct_path.as_deref(), Some("/v/x.jpg"));
        assert_eq!(got.hash, None);
    }

    #[test]
    fn about_answers() {
        let queried: whatsapp_rust::Jid = "14155550123@s.whatsapp.net".parse().unwrap();
        // The usync result types are `#[non_exhaustive]`: build them through
        // serde, the shape they have in logs.
        let id = serde_json::to_value(&queried).unwrap();
        let lid: whatsapp_rust::Jid = "123456789012345@lid".parse().unwrap();
        let lid = serde_json::to_value(&lid).unwrap();
        let answer = |status: serde_json::Value| -> UsyncResponse {
            serde_json::from_value(serde_json::json!({
                "protocol_states": [],
                "users": [{
                    "id": id,
                    "protocols": [
                        { "type": "status", "data": status },
                        { "type": "lid", "data": { "type": "value", "data": lid } }
                    ]
                }]
            }))
            .unwrap()
        };
        let set = answer(serde_json::json!({
            "type": "value", "data": { "status": "Hey there!", "timestamp": 1_704_067_200 }
        }));
        let (about, lid) = about_from_usync(&set, &queried);
        let about = about.unwrap();
        assert_eq!(about.text, "Hey there!");
        assert_eq!(
            about.set_at.map(|t| t.unix_timestamp()),
            Some(1_704_067_200)
        );
        assert_eq!(
            lid.map(|l| l.to_string()).as_deref(),
            Some("123456789012345@lid")
        );

        let hidden = answer(serde_json::json!({
            "type": "error", "data": { "code": 401, "text": "not-authorized" }
        }));
        assert_eq!(
            about_from_usync(&hidden, &queried).0,
            Err(WhatsAppError::NotFound(Some(Absence::Hidden)))
        );
        let unset = answer(serde_json::json!({ "type": "error", "data": { "code": 404 } }));
        assert_eq!(
            about_from_usync(&unset, &queried).0,
            Err(WhatsAppError::NotFound(Some(Absence::NotSet)))
        );
        let empty = answer(serde_json::json!({ "type": "value", "data": {} }));
        assert_eq!(
            about_from_usync(&empty, &queried).0,
            Err(WhatsAppError::NotFound(Some(Absence::NotSet)))
        );
        let nobody: UsyncResponse =
            serde_json::from_value(serde_json::json!({ "protocol_states": [], "users": [] }))
                .unwrap();
        assert_eq!(
            about_from_usync(&nobody, &queried).0,
            Err(WhatsAppError::NotFound(None))
        );
    }
}
