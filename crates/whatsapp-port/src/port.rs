use async_trait::async_trait;
use wagate_domain::{
    About, BlocklistEntry, ChatState, Group, GroupJid, GroupSubject, InviteCode, Jid,
    MembershipRequest, MessageId, PairingCode, ParticipantAction, ParticipantOutcome, PhoneNumber,
    PictureType, ProfilePicture, QrCode, RequestAction, SessionId,
};

use crate::{GroupChange, MediaDownload, MediaRef, OutgoingMessage, WhatsAppError};

/// Everything wagate asks of WhatsApp, for many sessions at once.
///
/// Calls for different sessions never wait on each other; calls for one
/// session may run concurrently. Status changes an adapter observes on its
/// own are reported through the [`crate::SessionEventSink`] it was built
/// with; the return values here only say whether the call itself worked.
///
/// Common errors: every contact call gives [`WhatsAppError::NotConnected`]
/// when the session is not online, [`WhatsAppError::Timeout`] when WhatsApp
/// does not answer in the adapter's deadline, [`WhatsAppError::Unavailable`]
/// on a transient failure, [`WhatsAppError::Refused`] when WhatsApp refuses
/// the request for good (trying again cannot help) and
/// [`WhatsAppError::Internal`] on anything else.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait WhatsAppPort: Send + Sync + std::fmt::Debug {
    /// Starts connecting `session`. With `linked_as` (the account it was
    /// linked as before) it logs in with the stored device keys; without, it
    /// starts pairing and reports [`crate::SessionEventKind::Pairing`] once a
    /// QR code can be shown. Idempotent: connecting a session that is
    /// already connecting, pairing or connected starts nothing new, but
    /// publishes its current state again (`Connecting`, `Pairing` or
    /// `Connected`), so a gateway that missed an event can repair its record.
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::Internal`] when the connection cannot even be set up
    /// (e.g. the device store fails); network trouble is reported later as a
    /// `Disconnected` event with a `LastError`, not as an error here.
    async fn connect(
        &self,
        session: &SessionId,
        linked_as: Option<Jid>,
    ) -> Result<(), WhatsAppError>;

    /// Closes the session's connection and keeps its link. Idempotent.
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::Internal`] only.
    async fn disconnect(&self, session: &SessionId) -> Result<(), WhatsAppError>;

    /// Unlinks the device from the account (when linked) and erases its keys.
    /// Idempotent. No `LoggedOut` event is published for a logout asked for
    /// here.
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::Internal`] when the keys cannot be erased. Failing to
    /// tell WhatsApp (e.g. while offline) is not an error: the keys are gone.
    async fn logout(&self, session: &SessionId) -> Result<(), WhatsAppError>;

    /// [`WhatsAppPort::logout`] and forgets everything else the adapter
    /// keeps for the session (it is being deleted).
    ///
    /// # Errors
    ///
    /// As [`WhatsAppPort::logout`].
    async fn remove(&self, session: &SessionId) -> Result<(), WhatsAppError>;

    /// The QR code to show now, while the session is pairing.
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::NotPairing`] when the session is not waiting for a
    /// scan (or no code has arrived yet).
    async fn qr(&self, session: &SessionId) -> Result<QrCode, WhatsAppError>;

    /// Asks WhatsApp for a code that links the session to `phone` when typed
    /// on that phone.
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::NotPairing`] when the session is not pairing; the
    /// common errors.
    async fn pairing_code(
        &self,
        session: &SessionId,
        phone: &PhoneNumber,
    ) -> Result<PairingCode, WhatsAppError>;

    /// The contact's current profile picture. `jid` may be a person, a group
    /// or a channel.
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::NotFound`] (with the reason when WhatsApp gives it)
    /// when there is none or it is hidden; the common errors.
    async fn profile_picture(
        &self,
        session: &SessionId,
        jid: &Jid,
        kind: PictureType,
    ) -> Result<ProfilePicture, WhatsAppError>;

    /// The contact's about text. `jid` must be a person.
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::NotFound`] when there is none or it is hidden;
    /// [`WhatsAppError::InvalidTarget`] for a group or channel; the common
    /// errors.
    async fn about(&self, session: &SessionId, jid: &Jid) -> Result<About, WhatsAppError>;

    /// Blocks a person. Idempotent.
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::InvalidTarget`] for a group or channel; the common
    /// errors.
    async fn block(&self, session: &SessionId, jid: &Jid) -> Result<(), WhatsAppError>;

    /// Unblocks a person. Idempotent.
    ///
    /// # Errors
    ///
    /// As [`WhatsAppPort::block`].
    async fn unblock(&self, session: &SessionId, jid: &Jid) -> Result<(), WhatsAppError>;

    /// Everyone the account has blocked.
    ///
    /// # Errors
    ///
    /// The common errors.
    async fn blocklist(&self, session: &SessionId) -> Result<Vec<BlocklistEntry>, WhatsAppError>;

    /// Every group the account is in, with their members (for the
    /// gateway's group store, refreshed on connect).
    ///
    /// # Errors
    ///
    /// The common errors.
    async fn groups(&self, session: &SessionId) -> Result<Vec<Group>, WhatsAppError>;

    /// One group, as WhatsApp has it now.
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::NotFound`] when there is no such group or the
    /// account is not in it; the common errors.
    async fn group(&self, session: &SessionId, group: &GroupJid) -> Result<Group, WhatsAppError>;

    /// Creates a group with the account as its superadmin and adds
    /// `participants`; the group and each participant's outcome. A
    /// [`crate::SessionEventKind::Group`] `Joined` notice follows.
    ///
    /// # Errors
    ///
    /// The common errors.
    async fn create_group(
        &self,
        session: &SessionId,
        subject: &GroupSubject,
        participants: &[Jid],
    ) -> Result<(Group, Vec<ParticipantOutcome>), WhatsAppError>;

    /// Changes a group's subject, description and settings (what `change`
    /// names, in that order). An `Updated` notice follows.
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::NotFound`] as for [`WhatsAppPort::group`];
    /// [`WhatsAppError::NotPermitted`] when only admins may and the account
    /// is not one; the common errors.
    async fn update_group(
        &self,
        session: &SessionId,
        group: &GroupJid,
        change: &GroupChange,
    ) -> Result<(), WhatsAppError>;

    /// Adds, removes, promotes or demotes `participants`; each one's
    /// outcome. A `Participants` notice follows, naming those it was done
    /// for. ([`ParticipantAction::Join`] and
    /// [`ParticipantAction::Leave`] are not asked for this way.)
    ///
    /// # Errors
    ///
    /// As [`WhatsAppPort::update_group`]; [`WhatsAppError::InvalidTarget`]
    /// for `Join` or `Leave`.
    async fn change_participants(
        &self,
        session: &SessionId,
        group: &GroupJid,
        action: ParticipantAction,
        participants: &[Jid],
    ) -> Result<Vec<ParticipantOutcome>, WhatsAppError>;

    /// The group's invite code; with `revoke`, a new one (the old link
    /// stops working).
    ///
    /// # Errors
    ///
    /// As [`WhatsAppPort::update_group`].
    async fn invite_code(
        &self,
        session: &SessionId,
        group: &GroupJid,
        revoke: bool,
    ) -> Result<InviteCode, WhatsAppError>;

    /// Joins the group an invite code names; its JID (when the group needs
    /// approval, the account has asked to join and is not a member yet).
    /// A `Joined` notice follows once it is a member.
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::NotFound`] when the code is unknown or revoked; the
    /// common errors.
    async fn join_group(
        &self,
        session: &SessionId,
        code: &InviteCode,
    ) -> Result<GroupJid, WhatsAppError>;

    /// Leaves a group. A `Left` notice follows.
    ///
    /// # Errors
    ///
    /// As [`WhatsAppPort::group`].
    async fn leave_group(&self, session: &SessionId, group: &GroupJid)
    -> Result<(), WhatsAppError>;

    /// Who asks to join the group (approval on).
    ///
    /// # Errors
    ///
    /// As [`WhatsAppPort::update_group`].
    async fn membership_requests(
        &self,
        session: &SessionId,
        group: &GroupJid,
    ) -> Result<Vec<MembershipRequest>, WhatsAppError>;

    /// Approves or rejects requests to join; each one's outcome. Approved
    /// people are reported in a `Participants` notice (`Add`).
    ///
    /// # Errors
    ///
    /// As [`WhatsAppPort::update_group`].
    async fn answer_requests(
        &self,
        session: &SessionId,
        group: &GroupJid,
        action: RequestAction,
        participants: &[Jid],
    ) -> Result<Vec<ParticipantOutcome>, WhatsAppError>;

    /// Encrypts `message` and puts it on the wire under `message.id`. `Ok`
    /// means WhatsApp has been handed it; its server ack and the contact's
    /// receipts arrive later as [`crate::SessionEventKind::MessageStatus`].
    /// Sending the same id again (after a restart, a reconnect or a lost
    /// answer) never makes a second message for the contact. Media is
    /// encrypted and uploaded first.
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::InvalidTarget`] when `to` is not a person;
    /// [`WhatsAppError::NotOnWhatsApp`] when the number has no WhatsApp
    /// account; [`WhatsAppError::Refused`] when WhatsApp refuses it for
    /// good ([`crate::Refusal::Media`]: the media upload); the common errors
    /// ([`WhatsAppError::NotConnected`] while offline: the caller keeps the
    /// message and tries again later).
    async fn send_message(
        &self,
        session: &SessionId,
        message: &OutgoingMessage,
    ) -> Result<(), WhatsAppError>;

    /// Reacts to a message of `chat` (`emoji` empty: takes the reaction
    /// back). `target_author` is who wrote the target (its LID when known:
    /// a group names its members by LID), `None` when the account did.
    ///
    /// # Errors
    ///
    /// As [`WhatsAppPort::send_message`].
    async fn send_reaction(
        &self,
        session: &SessionId,
        chat: &Jid,
        target: &MessageId,
        target_author: Option<Jid>,
        emoji: &str,
    ) -> Result<(), WhatsAppError>;

    /// Edits the account's own message `target` of `chat`: its new text
    /// (the caption, for media). `Ok` means WhatsApp has been handed the
    /// edit.
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::InvalidTarget`] when `chat` is not a person;
    /// [`WhatsAppError::NotFound`] when the adapter knows `target` was
    /// never sent; [`WhatsAppError::Refused`] when WhatsApp refuses the
    /// edit (e.g. past its window); the common errors.
    async fn edit_message(
        &self,
        session: &SessionId,
        chat: &Jid,
        target: &MessageId,
        text: &str,
    ) -> Result<(), WhatsAppError>;

    /// Deletes the account's own message `target` of `chat` for everyone.
    /// `Ok` means WhatsApp has been handed the deletion.
    ///
    /// # Errors
    ///
    /// As [`WhatsAppPort::edit_message`].
    async fn revoke_message(
        &self,
        session: &SessionId,
        chat: &Jid,
        target: &MessageId,
    ) -> Result<(), WhatsAppError>;

    /// Shows `state` (typing, recording, paused) to the person of `chat`.
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::InvalidTarget`] when `chat` is not a person; the
    /// common errors.
    async fn send_chat_state(
        &self,
        session: &SessionId,
        chat: &Jid,
        state: ChatState,
    ) -> Result<(), WhatsAppError>;

    /// Shows the account online (`available`) or offline to its contacts.
    ///
    /// # Errors
    ///
    /// The common errors.
    async fn set_presence(&self, session: &SessionId, available: bool)
    -> Result<(), WhatsAppError>;

    /// Asks WhatsApp for `jid`'s presence: its changes arrive as
    /// [`crate::SessionEventKind::Presence`] events while the session stays
    /// connected (subscribe again after a reconnect). Idempotent.
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::InvalidTarget`] when `jid` is not a person; the
    /// common errors.
    async fn subscribe_presence(&self, session: &SessionId, jid: &Jid)
    -> Result<(), WhatsAppError>;

    /// Sends read receipts for messages `sender` wrote in `chat`.
    ///
    /// # Errors
    ///
    /// The common errors.
    async fn mark_read(
        &self,
        session: &SessionId,
        chat: &Jid,
        sender: &Jid,
        ids: &[MessageId],
    ) -> Result<(), WhatsAppError>;

    /// Starts downloading and decrypting a received message's media, and
    /// answers once it has started (its first bytes are there): the rest
    /// comes through the [`MediaDownload`] as it arrives, never more than
    /// `max_bytes` (past that the download fails), and stops when the
    /// download is dropped.
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::NotFound`] when WhatsApp no longer has it (or `media`
    /// is not this adapter's); the common errors.
    async fn download_media(
        &self,
        session: &SessionId,
        media: &MediaRef,
        max_bytes: u64,
    ) -> Result<MediaDownload, WhatsAppError>;
}
